"""`Op`, the Leap opcodes, shared by the server and the realtime client (standard library only)."""

from __future__ import annotations

import enum

__all__ = ["Op"]


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
