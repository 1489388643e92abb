"""The dispatch of each broker event, on a hub of recording sockets: an event in, the
frames each socket is written out (as JSON), as ``tests/protocol`` does for the session.
"""

from __future__ import annotations

import json
import zlib

import msgspec

from switchboard.server.broker import events as ev
from switchboard.server.ids import member_id
from tests.fanout.sockets import Node, dispatches, next_turn, split_frames

RAW = msgspec.Raw


async def test_channel_message_reaches_the_channel_only_and_skips_its_sender() -> None:
    node = Node()
    sender, sender_out = node.socket("room")
    _, member_out = node.socket("room")
    _, other_out = node.socket("lobby")
    node.dispatch.handle(
        ev.ChannelMessage("p", "room", "move", RAW(b"[1]"), exclude_cid=sender.cid)
    )
    await next_turn()
    assert dispatches(member_out) == [
        {"c": "room", "u": False, "e": "MESSAGE", "d": {"e": "move", "d": [1]}}
    ]
    assert dispatches(sender_out) == [] and dispatches(other_out) == []
    assert node.hub.messages_published == 1 and node.hub.deliveries == 1


async def test_channel_message_with_history_carries_offset_and_epoch() -> None:
    node = Node()
    _, out = node.socket("room")
    node.dispatch.handle(ev.ChannelMessage("p", "room", "m", RAW(b"1"), offset=7, epoch="e1"))
    await next_turn()
    assert dispatches(out)[0]["d"] == {"e": "m", "d": 1, "offset": 7, "epoch": "e1"}


async def test_a_channel_of_another_project_with_the_same_id_gets_nothing() -> None:
    node = Node()
    _, out = node.socket("room", project="q")
    node.dispatch.handle(ev.ChannelMessage("p", "room", "m", RAW(b"1")))
    await next_turn()
    assert dispatches(out) == []


async def test_direct_message_reaches_every_socket_of_the_token_and_no_one_else() -> None:
    node = Node()
    _, a = node.socket(token="leap_token_a")
    _, a2 = node.socket(token="leap_token_a")
    _, b = node.socket(token="leap_token_b")
    node.dispatch.handle(ev.DirectMessage("p", "leap_token_a", "hi", RAW(b'{"x":1}')))
    await next_turn()
    expected = [{"c": None, "u": False, "e": "DIRECT_MESSAGE", "d": {"e": "hi", "d": {"x": 1}}}]
    assert dispatches(a) == expected and dispatches(a2) == expected
    assert dispatches(b) == []
    assert node.hub.direct_messages == 1 and node.hub.deliveries == 2


async def test_direct_messages_reach_each_named_token_of_the_project_in_order() -> None:
    """One event for many tokens: each token's sockets get the one frame, in the
    event's order; a token not named, one of another project, or none here, nothing."""
    node = Node()
    _, a = node.socket(token="leap_token_a")
    _, a2 = node.socket(token="leap_token_a")
    _, b = node.socket(token="leap_token_b")
    _, c = node.socket(token="leap_token_c")
    _, q = node.socket(token="leap_token_q", project="q")
    tokens = ["leap_token_b", "leap_token_a", "leap_token_q", "leap_token_x"]
    node.dispatch.handle(ev.DirectMessages("p", tokens, "hi", RAW(b"1")))
    node.dispatch.handle(ev.DirectMessages("p", tokens[:2], "hi", RAW(b"2")))
    await next_turn()
    expected = [
        {"c": None, "u": False, "e": "DIRECT_MESSAGE", "d": {"e": "hi", "d": n}} for n in (1, 2)
    ]
    assert dispatches(a) == expected and dispatches(a2) == expected
    assert dispatches(b) == expected
    assert dispatches(c) == [] and dispatches(q) == []
    assert node.hub.direct_messages == 6 and node.hub.deliveries == 6


async def test_direct_messages_to_compressed_slow_and_closing_sockets() -> None:
    """The bulk path's inline queueing keeps every socket's rules: a compressed socket
    gets the zlib frame, one over the unsent-bytes cap is closed with 4000 while the
    others still get theirs, a closing one gets nothing."""
    node = Node()
    node.hub.writer.max_buffered_bytes = 1000
    zipped, z = node.socket(token="leap_token_z")
    zipped.compressed = True
    slow, s = node.socket(token="leap_token_s")
    s.buffered = 5000
    gone, g = node.socket(token="leap_token_g")
    gone.closing = True
    _, ok = node.socket(token="leap_token_ok")
    tokens = ["leap_token_z", "leap_token_s", "leap_token_g", "leap_token_ok"]
    node.dispatch.handle(ev.DirectMessages("p", tokens, "hi", RAW(b"1")))
    await next_turn()
    expected = {"c": None, "u": False, "e": "DIRECT_MESSAGE", "d": {"e": "hi", "d": 1}}
    [written] = z.writes
    assert written[0] == 0x82  # one binary frame: zlib
    assert json.loads(zlib.decompress(split_frames(written)[0]))["d"] == expected
    assert slow.closed_with is not None and slow.closed_with[0] == 4000
    assert node.hub.writer.closed_slow == 1 and len(s.writes) == 1
    assert g.writes == []
    assert dispatches(ok) == [expected]


async def test_direct_messages_with_inboxes_carry_each_token_s_offset() -> None:
    node = Node()
    _, a = node.socket(token="leap_token_a")
    _, b = node.socket(token="leap_token_b")
    event = ev.DirectMessages(
        "p", ["leap_token_a", "leap_token_b"], "hi", RAW(b"1"), offsets=[7, 3], epochs=["e", "e"]
    )
    node.dispatch.handle(event)
    await next_turn()
    assert dispatches(a)[0]["d"] == {"e": "hi", "d": 1, "offset": 7, "epoch": "e"}
    assert dispatches(b)[0]["d"] == {"e": "hi", "d": 1, "offset": 3, "epoch": "e"}


async def test_state_change_is_a_state_update_to_the_channel() -> None:
    node = Node()
    _, out = node.socket("room")
    node.dispatch.handle(ev.ChannelStateChanged("p", "room", RAW(b'{"round":2}')))
    await next_turn()
    assert dispatches(out) == [
        {"c": "room", "u": False, "e": "STATE_UPDATE", "d": {"state": {"round": 2}}}
    ]


async def test_channel_deleted_is_unavailable_and_drops_the_subscribers() -> None:
    node = Node()
    conn, out = node.socket("room", "lobby")
    node.no_history.add(("p", "room"), node.no_history.generation)
    node.dispatch.handle(ev.ChannelDeleted("p", "room"))
    node.dispatch.handle(ev.ChannelMessage("p", "room", "m", RAW(b"1")))
    await next_turn()
    assert dispatches(out) == [
        {"c": "room", "u": False, "e": "UNAVAILABLE", "d": {"graceful": True}}
    ]
    assert conn.channels == {"lobby"}
    assert ("p", "room") not in node.no_history


async def test_token_subscribed_joins_the_token_sockets_with_available() -> None:
    node = Node()
    origin, origin_out = node.socket(token="leap_token_a")
    other, other_out = node.socket(token="leap_token_a")
    node.dispatch.handle(
        ev.TokenSubscribed(
            "p", "leap_token_a", "game", "private", RAW(b'{"n":1}'), origin_cid=origin.cid
        )
    )
    node.dispatch.handle(ev.ChannelMessage("p", "game", "m", RAW(b"1")))
    await next_turn()
    assert [d["e"] for d in dispatches(other_out)] == ["AVAILABLE", "MESSAGE"]
    assert dispatches(other_out)[0]["d"] == {
        "channel": {
            "id": "game",
            "project_id": "p",
            "type": "private",
            "state": {"n": 1},
            "capabilities": 0,
        }
    }
    # The socket whose SUBSCRIBE made the grant had its AVAILABLE already, and joined then.
    assert dispatches(origin_out) == [] and "game" in other.channels


async def test_token_unsubscribed_leaves_with_unavailable_but_not_to_its_origin() -> None:
    node = Node()
    origin, origin_out = node.socket("game", token="leap_token_a")
    other, other_out = node.socket("game", token="leap_token_a")
    node.dispatch.handle(ev.TokenUnsubscribed("p", "leap_token_a", "game", origin_cid=origin.cid))
    await next_turn()
    assert dispatches(other_out) == [
        {"c": "game", "u": False, "e": "UNAVAILABLE", "d": {"graceful": True}}
    ]
    assert dispatches(origin_out) == []
    assert not origin.channels and not other.channels


async def test_token_updated_sends_the_state_and_moves_the_expiry() -> None:
    node = Node()
    conn, out = node.socket(token="leap_token_a")
    node.dispatch.handle(
        ev.TokenUpdated("p", "leap_token_a", RAW(b'{"name":"x"}'), "2030-01-01T00:00:00Z")
    )
    node.dispatch.handle(
        ev.TokenUpdated("p", "leap_token_a", RAW(b"{}"), None, state_changed=False)
    )
    await next_turn()
    assert dispatches(out) == [
        {"c": None, "u": False, "e": "TOKEN_STATE_UPDATE", "d": {"state": {"name": "x"}}}
    ]
    assert conn.expiries == ["2030-01-01T00:00:00Z", None]
    assert conn.metadata == RAW(b'{"name":"x"}')


async def test_token_deleted_closes_its_sockets_and_those_identifying_with_it() -> None:
    node = Node()
    conn, _ = node.socket(token="leap_token_a")
    bystander, _ = node.socket(token="leap_token_b")
    identifying, _ = node.socket()
    node.hub.watch_token(identifying, "leap_token_a")
    node.dispatch.handle(ev.TokenDeleted("p", "leap_token_a"))
    assert conn.closed_with == (4001, "token deleted")
    assert identifying.closed_with == (4001, "token deleted")
    assert bystander.closed_with is None


async def test_member_events_reach_the_watchers_of_the_channel() -> None:
    node = Node()
    watcher, out = node.socket("room", token="leap_token_w")
    _, is_new = node.hub.presence.watch(("p", "room"))
    assert is_new
    node.hub.presence.seed(("p", "room"), {}, {})
    node.hub.presence.add_watcher(watcher, ("p", "room"))
    node.dispatch.handle(ev.MemberJoined("p", "room", "leap_token_x", RAW(b'{"n":1}'), "n2"))
    node.dispatch.handle(ev.MemberLeft("p", "room", "leap_token_x", RAW(b'{"n":1}'), "n2"))
    await next_turn()
    member = {"member_id": member_id("leap_token_x"), "state": {"n": 1}}
    assert dispatches(out) == [
        {"c": "room", "u": False, "e": "PRESENCE_JOIN", "d": member},
        {"c": "room", "u": False, "e": "PRESENCE_LEAVE", "d": member},
    ]


async def test_history_changed_and_missed_events_forget_what_was_known() -> None:
    node = Node()
    node.no_history.add(("p", "a"), node.no_history.generation)
    node.no_history.add(("p", "b"), node.no_history.generation)
    node.dispatch.handle(ev.HistoryChanged("p", "a"))
    assert ("p", "a") not in node.no_history and ("p", "b") in node.no_history
    node.dispatch.events_missed()
    assert len(node.no_history) == 0
