"""Presence on one node, driven directly: the member events it emits for the broker,
the occupancy it reports, and the watches' join/leave dispatches (strings out)."""

from __future__ import annotations

import msgspec

from switchboard.server.broker import events as ev
from switchboard.server.broker.events import NodePresence
from switchboard.server.fanout import Hub
from switchboard.server.ids import member_id
from tests.fanout.sockets import Node, dispatches, next_turn

RAW = msgspec.Raw


def member_events(hub: Hub) -> list[tuple[str, str, str, str]]:
    return [
        (type(e).__name__, e.channel_id, e.token_id, e.node_id) for e in hub.changes.take_members()
    ]


def test_a_token_joins_once_per_node_and_leaves_with_its_last_socket() -> None:
    node = Node("n1")
    a1, _ = node.socket(token="leap_token_a")
    a2, _ = node.socket(token="leap_token_a")
    node.hub.join(a1, "room")
    node.hub.join(a2, "room")
    assert member_events(node.hub) == [("MemberJoined", "room", "leap_token_a", "n1")]
    node.hub.leave(a1, "room")
    assert member_events(node.hub) == []
    node.hub.detach(a2)
    assert member_events(node.hub) == [("MemberLeft", "room", "leap_token_a", "n1")]


def test_project_scope_sockets_are_never_present() -> None:
    node = Node()
    node.socket("room", scope="project")
    assert member_events(node.hub) == []
    assert node.hub.channel_share("p", "room") == NodePresence({}, 0)
    assert node.hub.channel_connections("p", "room") == 0


def test_the_local_share_counts_tokens_and_tokenless_sockets() -> None:
    node = Node()
    node.socket("room", token="leap_token_a")
    node.socket("room", token="leap_token_a")
    node.socket("room")
    assert node.hub.channel_share("p", "room") == NodePresence({"leap_token_a": 2}, 1)
    assert node.hub.presence_shares() == {("p", "room"): NodePresence({"leap_token_a": 2}, 1)}
    tokens, channels = node.hub.presence_counts()
    assert tokens == {"leap_token_a": 2} and channels == {("p", "room"): 3}


def test_occupancy_is_told_of_first_and_last_only() -> None:
    told: list[tuple[str, str, str, int]] = []
    node = Node(occupancy=lambda *change: told.append(change))
    hub = node.hub
    a, _ = node.socket("room", token="leap_token_a")
    b, _ = node.socket("room", token="leap_token_a")
    hub.detach(a)
    hub.detach(b)
    assert told == [
        ("p", "t", "leap_token_a", 1),
        ("p", "c", "room", 1),
        ("p", "c", "room", -1),
        ("p", "t", "leap_token_a", -1),
    ]


async def test_a_watch_seeded_from_the_cluster_tells_joins_and_leaves_once() -> None:
    node = Node("n1")
    watcher, out = node.socket("room", token="leap_token_w")
    key = ("p", "room")
    node.hub.presence.watch(key)
    # An event that arrives while the snapshot is read is applied on top of it.
    node.dispatch.handle(ev.MemberJoined("p", "room", "leap_token_y", RAW(b"2"), "n3"))
    node.hub.presence.seed(
        key, {"n2": NodePresence({"leap_token_x": 1}, 0)}, {"leap_token_x": RAW(b"1")}
    )
    members = node.hub.presence.add_watcher(watcher, key)
    assert members == [
        {"member_id": member_id("leap_token_x"), "state": RAW(b"1")},
        {"member_id": member_id("leap_token_y"), "state": RAW(b"2")},
    ]
    # The same token on a second node joins nobody anew; leaving one of two nodes
    # leaves nothing; leaving the last does.
    node.dispatch.handle(ev.MemberJoined("p", "room", "leap_token_x", RAW(b"1"), "n3"))
    node.dispatch.handle(ev.MemberLeft("p", "room", "leap_token_x", RAW(b"1"), "n2"))
    node.dispatch.handle(ev.MemberLeft("p", "room", "leap_token_x", RAW(b"1"), "n3"))
    await next_turn()
    assert [(d["e"], d["d"]["member_id"]) for d in dispatches(out)] == [
        ("PRESENCE_LEAVE", member_id("leap_token_x"))
    ]


async def test_a_dead_node_s_members_leave_the_watches() -> None:
    node = Node("n1")
    watcher, out = node.socket("room", token="leap_token_w")
    key = ("p", "room")
    node.hub.presence.watch(key)
    node.hub.presence.seed(key, {"n2": NodePresence({"leap_token_x": 1}, 0)}, {})
    node.hub.presence.add_watcher(watcher, key)
    assert node.hub.watched_nodes() == {"n2"}
    node.dispatch.node_gone("n2")
    await next_turn()
    assert [d["e"] for d in dispatches(out)] == ["PRESENCE_LEAVE"]
    assert node.hub.watched_nodes() == set()


def test_announcements_name_every_present_token_once() -> None:
    node = Node("n1")
    node.socket("room", "lobby", token="leap_token_a")
    node.socket("room", token="leap_token_a")
    node.socket("room")
    node.socket("room", token="leap_token_p", scope="project")
    assert sorted((e.channel_id, e.token_id, e.node_id) for e in node.hub.announcements()) == [
        ("lobby", "leap_token_a", "n1"),
        ("room", "leap_token_a", "n1"),
    ]
