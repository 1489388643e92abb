"""`Op` and `CloseCode`, the Leap opcodes and close codes, shared by the server and the
realtime client (standard library only)."""

from __future__ import annotations

import enum

__all__ = ["CloseCode", "Op"]


class Op(enum.IntEnum):
    """A Leap frame's ``op`` (SPEC §3; the table in ``docs/protocol.md``)."""

    DISPATCH = 0
    """Both ways: an event, ``d`` is ``{c, u, e, d}``."""
    HELLO = 1
    """Server → client, first: ``{heartbeat_interval}`` in ms."""
    IDENTIFY = 2
    """Client → server: ``{project_id, token?}``."""
    HEARTBEAT = 3
    """Both ways: the client's beat, or the server's probe with ``{tag}`` (echoed back)."""
    HEARTBEAT_ACK = 4
    """Server → client: the answer to a beat or to a probe's echo."""


class CloseCode(enum.IntEnum):
    """WebSocket close codes of Leap, and what the official clients do on each.

    The server's gateway sends them all. The realtime client acts on ``INVALID_AUTH``
    (stop) and ``BAD_ROUTE`` (follow), sends ``INVALID_PAYLOAD`` itself, and takes every
    other code as "reconnect".
    """

    GOING_AWAY = 1001
    """Server shutting down: clients reconnect."""
    UNKNOWN_ERROR = 4000
    """Slow consumer, too many connections, or an unexpected failure: clients reconnect."""
    INVALID_AUTH = 4001
    """Bad project, bad/expired/deleted token: clients stop."""
    IDENTIFY_TIMEOUT = 4002
    NOT_AUTHENTICATED = 4003
    """A dispatch before IDENTIFY."""
    UNKNOWN_OPCODE = 4004
    INVALID_PAYLOAD = 4005
    """Not JSON, or not the right shape (either way: the client sends it too)."""
    BAD_ROUTE = 4006
    """The close reason is the socket URL to use instead."""
    OUT_OF_SYNC = 4007
    """No heartbeat in time."""
    FLOODING = 4008
    """Switchboard's own: the client kept sending past its rate limits. Hop's clients
    do not know the code and reconnect, with their usual backoff."""
