"""`Dispatch`: carries out each broker event on this node, one small function per event.

The broker hands every event here (:class:`~switchboard.server.broker.base.EventHandler`);
each function builds the dispatch once (``protocol/frames.py``) and hands it to the
hub's fan-out. Nothing awaits, so events are carried out in the order they came.

The one piece of state outside the hub is the service's :class:`NoHistoryCache`, which
the ``HistoryChanged`` and ``ChannelDeleted`` events, and a broker that lost events,
keep right on every node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from switchboard.server.broker import events as ev
from switchboard.server.broker.events import BrokerEvent
from switchboard.server.broker.topics import channel_topic
from switchboard.server.fanout.connection import Connection, Outgoing
from switchboard.server.fanout.holds import inbox_key
from switchboard.server.fanout.hub import Hub
from switchboard.server.history import NoHistoryCache
from switchboard.server.protocol import frames
from switchboard.server.protocol.frames import CloseCode


def channel_message(hub: Hub, event: ev.ChannelMessage) -> None:
    hub.messages_published += 1
    hub.activity.count(event.project_id)
    payload = frames.message(event.channel_id, event.event, event.data, event.offset, event.epoch)
    hub.broadcast(event.project_id, event.channel_id, payload, event.exclude_cid)
    if hub.holds:  # once per publish, never per recipient
        key = (event.project_id, event.channel_id)
        hub.holds.broadcast(key, payload, event.offset, event.epoch, event.exclude_cid)


def direct_message(hub: Hub, event: ev.DirectMessage) -> None:
    hub.activity.count(event.project_id)
    hub.direct_messages += 1
    payload = frames.direct_message(event.event, event.data, event.offset, event.epoch)
    members = hub.token_members(event.project_id, event.token_id)
    if members:
        _to_token(
            hub,
            event.project_id,
            event.token_id,
            members,
            payload,
            Outgoing(payload),
            event.offset,
            event.epoch,
        )


def direct_messages(hub: Hub, event: ev.DirectMessages) -> None:
    """One message to many tokens: the frame is built once (once per token when each
    carries its inbox offset); a token with no connection here costs one dict lookup."""
    project_id = event.project_id
    tokens = event.token_ids
    hub.activity.count(project_id, len(tokens))
    hub.direct_messages += len(tokens)
    offsets, epochs = event.offsets, event.epochs
    sockets = hub.token_sockets
    if offsets is None and not hub.holds:
        _one_frame_to_tokens(hub, event)
        return
    payload = b""
    frame: Outgoing | None = None
    for i, token_id in enumerate(tokens):
        conns = sockets.get(token_id)
        if not conns:
            continue  # held connections stay among the token's: none here, no hold either
        members = [conn for conn in conns if conn.project_id == project_id]
        if not members:
            continue
        offset = epoch = None
        if offsets is not None and epochs is not None:
            offset, epoch = offsets[i], epochs[i]
            payload = frames.direct_message(event.event, event.data, offset, epoch)
            frame = Outgoing(payload)
        elif frame is None:
            payload = frames.direct_message(event.event, event.data, None, None)
            frame = Outgoing(payload)
        _to_token(hub, project_id, token_id, members, payload, frame, offset, epoch)


def _one_frame_to_tokens(hub: Hub, event: ev.DirectMessages) -> None:
    """The common case (no inbox offsets, no recovery under way): one frame, and no call
    per token."""
    frame = Outgoing(frames.direct_message(event.event, event.data, None, None))
    sent = hub.writer.send_to_tokens(hub.token_sockets, event.token_ids, event.project_id, frame)
    hub.deliveries += sent


def _to_token(
    hub: Hub,
    project_id: str,
    token_id: str,
    members: list[Connection],
    payload: bytes,
    frame: Outgoing,
    offset: int | None,
    epoch: str | None,
) -> None:
    """Send a direct message's frame to the token's connections here, but those whose
    inbox recovery holds it (``fanout/holds.py``): their holds keep it instead."""
    if hub.holds:
        key = inbox_key(project_id, token_id)
        held = hub.holds.held(key)
        if held:
            members = [conn for conn in members if conn not in held]
            hub.holds.broadcast(key, payload, offset, epoch)
    for conn in members:
        conn.send(frame)
    hub.deliveries += len(members)


def channel_state_changed(hub: Hub, event: ev.ChannelStateChanged) -> None:
    payload = frames.state_update(event.channel_id, event.state)
    hub.broadcast(event.project_id, event.channel_id, payload)
    if hub.holds:
        hub.holds.broadcast((event.project_id, event.channel_id), payload)


def channel_deleted(hub: Hub, event: ev.ChannelDeleted) -> None:
    key = (event.project_id, event.channel_id)
    frame = Outgoing(frames.unavailable(event.channel_id))
    hub.presence.drop_channel(key)
    for hold in hub.holds.of(key):
        # Its replay and held frames are of the channel now deleted: dropped.
        hold.ended = True
        hub.leave(hold.conn, event.channel_id)
        hold.conn.send(frame)
    for conn in hub.channel_members(event.project_id, event.channel_id):
        hub.leave(conn, event.channel_id)
        conn.send(frame)


def token_subscribed(hub: Hub, event: ev.TokenSubscribed) -> None:
    payload = frames.available(
        event.project_id, event.channel_id, event.channel_type, event.state, unicast=False
    )
    frame = Outgoing(payload)
    heard = hub.topics.is_heard(channel_topic(event.project_id, event.channel_id))
    later = []
    for conn in hub.token_members(event.project_id, event.token_id):
        if conn.cid == event.origin_cid:
            continue  # that one had its AVAILABLE already
        if heard or event.channel_id in conn.channels:
            hub.join(conn, event.channel_id)
            conn.send(frame)
        else:
            later.append(conn)
    if later:
        # This node does not hear the channel yet: the AVAILABLE waits until it does.
        hub.join_when_heard(later, event.channel_id, frame, event.ack)
    elif event.ack is not None and hub.token_connections(event.token_id):
        hub.changes.grant_joined(event.ack, hub.node_id)


def token_unsubscribed(hub: Hub, event: ev.TokenUnsubscribed) -> None:
    frame = Outgoing(frames.unavailable(event.channel_id))
    for conn in hub.token_members(event.project_id, event.token_id):
        hub.revoke_grant(conn, event.channel_id)
        if hub.leave(conn, event.channel_id) and conn.cid != event.origin_cid:
            conn.send(frame)


def token_updated(hub: Hub, event: ev.TokenUpdated) -> None:
    frame = Outgoing(frames.token_state_update(event.state))
    for conn in hub.token_members(event.project_id, event.token_id):
        if event.state_changed:
            conn.metadata = event.state
            conn.send(frame)
        conn.expiry_changed(event.expires_at)
    if event.state_changed:
        hub.presence.token_state(event.token_id, event.state)


def token_deleted(hub: Hub, event: ev.TokenDeleted) -> None:
    for conn in hub.token_members(event.project_id, event.token_id):
        conn.close(CloseCode.INVALID_AUTH, "token deleted")
    # Token IDs are unique across projects, so no project check is needed here.
    for conn in hub.identifying(event.token_id):
        conn.close(CloseCode.INVALID_AUTH, "token deleted")


def member_changed(hub: Hub, event: ev.MemberJoined | ev.MemberLeft) -> None:
    hub.presence.handle(event)


_ON_HUB: dict[type[Any], Callable[[Hub, Any], None]] = {
    ev.ChannelMessage: channel_message,
    ev.DirectMessage: direct_message,
    ev.DirectMessages: direct_messages,
    ev.ChannelStateChanged: channel_state_changed,
    ev.ChannelDeleted: channel_deleted,
    ev.TokenSubscribed: token_subscribed,
    ev.TokenUnsubscribed: token_unsubscribed,
    ev.TokenUpdated: token_updated,
    ev.TokenDeleted: token_deleted,
    ev.MemberJoined: member_changed,
    ev.MemberLeft: member_changed,
}
"""Every event the hub carries out, by its type (``HistoryChanged`` concerns no socket)."""


class Dispatch:
    """The node's :class:`~switchboard.server.broker.base.EventHandler`: the hub, and the
    service's no-history cache."""

    __slots__ = ("hub", "no_history")

    def __init__(self, hub: Hub, no_history: NoHistoryCache) -> None:
        self.hub = hub
        self.no_history = no_history

    def handle(self, event: BrokerEvent) -> None:
        """Carry out one broker event on this node."""
        on_hub = _ON_HUB.get(type(event))
        if on_hub is not None:
            on_hub(self.hub, event)
        if isinstance(event, ev.HistoryChanged | ev.ChannelDeleted):
            self.no_history.forget((event.project_id, event.channel_id))

    def events_missed(self) -> None:
        # Policy changes published meanwhile may be among them (docs/history.md).
        self.no_history.clear()

    def node_gone(self, node_id: str) -> None:
        self.hub.presence.node_gone(node_id)
