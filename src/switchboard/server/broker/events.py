"""What the service tells every node: the events the broker carries.

Each is a msgspec Struct with a tag, so the Redis broker can send them as JSON and the
in-process broker can hand them over as they are.
"""

from __future__ import annotations

import msgspec


class ChannelMessage(msgspec.Struct, tag=True, frozen=True):
    """A message published to a channel: MESSAGE to its subscribers."""

    project_id: str
    channel_id: str
    event: str
    data: msgspec.Raw
    exclude_cid: str | None = None
    """The connection that published it from a client, which does not get it back."""
    offset: int | None = None
    """Its offset in the channel's history (None: the channel keeps no history)."""
    epoch: str | None = None
    """The history's epoch, with ``offset``."""


class HistoryChanged(msgspec.Struct, tag=True, frozen=True):
    """A channel's history policy changed: nodes forget that it kept none. With
    ``channel_id`` ``history.INBOX_KEY``: the project's inbox setting changed."""

    project_id: str
    channel_id: str


class DirectMessage(msgspec.Struct, tag=True, frozen=True):
    """DIRECT_MESSAGE to every connection of a token."""

    project_id: str
    token_id: str
    event: str
    data: msgspec.Raw
    offset: int | None = None
    """Its offset in the token's inbox (None: the project keeps no inboxes)."""
    epoch: str | None = None
    """The inbox's epoch, with ``offset``."""


class DirectMessages(msgspec.Struct, tag=True, frozen=True):
    """One message as DIRECT_MESSAGE to every connection of many tokens, in their order:
    a broadcast's (or a batch's run of ``direct`` items with one message) in one event
    rather than one per token (docs/batch.md, "How a broadcast travels")."""

    project_id: str
    token_ids: list[str]
    event: str
    data: msgspec.Raw
    offsets: list[int] | None = None
    """Each token's offset in its inbox, in ``token_ids``' order (None: no inboxes)."""
    epochs: list[str] | None = None
    """The inbox epoch of each, with ``offsets``."""


class ChannelStateChanged(msgspec.Struct, tag=True, frozen=True):
    """STATE_UPDATE with the full new state to a channel's subscribers."""

    project_id: str
    channel_id: str
    state: msgspec.Raw


class ChannelDeleted(msgspec.Struct, tag=True, frozen=True):
    """UNAVAILABLE {graceful: true} to the channel's subscribers, who are dropped."""

    project_id: str
    channel_id: str


class TokenSubscribed(msgspec.Struct, tag=True, frozen=True):
    """A token was granted a channel: its live connections join it and get AVAILABLE."""

    project_id: str
    token_id: str
    channel_id: str
    channel_type: str
    state: msgspec.Raw
    origin_cid: str | None = None
    """The connection whose SUBSCRIBE made it, which has had its AVAILABLE already."""
    ack: str | None = None
    """``{node}:{request}``: each node that joins the token's sockets to the channel
    tells that node so (``GrantJoined``), so the backend's call returns after it."""


class GrantJoined(msgspec.Struct, tag=True, frozen=True):
    """A node joined a token's sockets to a channel a ``TokenSubscribed`` granted (its
    ``ack``): sent to the granting node alone, on its own topic."""

    request: str
    node_id: str


class Heartbeat(msgspec.Struct, tag=True, frozen=True):
    """A node's beat on its own topic: hearing it back proves its subscription is alive."""

    node_id: str


class TokenUnsubscribed(msgspec.Struct, tag=True, frozen=True):
    """A token lost a channel: its live connections leave it and get UNAVAILABLE."""

    project_id: str
    token_id: str
    channel_id: str
    origin_cid: str | None = None
    """The connection whose UNSUBSCRIBE made it, which needs no answer."""


class TokenUpdated(msgspec.Struct, tag=True, frozen=True):
    """TOKEN_STATE_UPDATE to the token's connections; their expiry moves."""

    project_id: str
    token_id: str
    state: msgspec.Raw
    expires_at: str | None
    state_changed: bool = True


class TokenDeleted(msgspec.Struct, tag=True, frozen=True):
    """The token's connections are closed with 4001."""

    project_id: str
    token_id: str


class NodePresence(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """One node's share of a channel's presence (also its JSON in Redis)."""

    tokens: dict[str, int] = {}
    """Token ID → that token's connections on the node subscribed to the channel."""
    tokenless: int = 0
    """Connections without a token subscribed to the channel on the node."""


class MemberJoined(msgspec.Struct, tag=True, frozen=True):
    """A token's first connection on ``node_id`` subscribed to a channel (presence)."""

    project_id: str
    channel_id: str
    token_id: str
    state: msgspec.Raw
    """The token's state, which ``PRESENCE_JOIN`` carries."""
    node_id: str


class MemberLeft(msgspec.Struct, tag=True, frozen=True):
    """A token's last connection on ``node_id`` left a channel (presence)."""

    project_id: str
    channel_id: str
    token_id: str
    state: msgspec.Raw
    node_id: str


BrokerEvent = (
    ChannelMessage
    | DirectMessage
    | DirectMessages
    | ChannelStateChanged
    | ChannelDeleted
    | TokenSubscribed
    | TokenUnsubscribed
    | TokenUpdated
    | TokenDeleted
    | MemberJoined
    | MemberLeft
    | HistoryChanged
    | GrantJoined
    | Heartbeat
)
