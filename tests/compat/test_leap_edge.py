"""@onehop/leap-edge-js (the socket layer of Hop's client SDKs) against a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.compat.conftest import JS
from tests.conftest import Server, start_node

pytestmark = pytest.mark.compat


def leap_channel(node: Server, id_: str, type_: str, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": id_,
        "project_id": node.project_id,
        "type": type_,
        "state": state,
        "capabilities": 0,
    }


def assert_dispatch(
    seen: dict[str, Any], event: str, channel: str | None, data: Any, *, unicast: bool | None = None
) -> None:
    """The SDK's serviceEvent, and the raw frame behind it with all four keys."""
    assert seen["eventType"] == event, seen
    assert seen["channelId"] == channel, seen
    assert seen["data"] == data, seen
    raw = seen["raw"]
    assert raw["op"] == 0 and set(raw["d"]) == {"c", "u", "e", "d"}, raw
    assert raw["d"]["c"] == channel and raw["d"]["e"] == event and raw["d"]["d"] == data, raw
    assert isinstance(raw["d"]["u"], bool), raw
    if unicast is not None:
        assert raw["d"]["u"] is unicast, raw


async def test_token_init(node: Server, js: JS) -> None:
    steps = await js.run("leap_edge.cjs", "token_init", node)
    assert steps["hello"] == {"op": 1, "d": {"heartbeat_interval": 30000}}
    assert steps["states"] == ["connecting", "authenticating", "connected"]
    assert steps["connection_state"] == "connected"
    init = steps["init"]
    data = init["data"]
    assert set(data) == {"cid", "connection_count", "metadata", "scope", "channels"}, data
    assert isinstance(data["cid"], str) and data["cid"]
    assert data["connection_count"] == 1
    assert data["metadata"] == {"userId": "alice", "name": "Alice"}
    assert data["scope"] == "token"
    assert sorted(data["channels"], key=lambda c: c["id"]) == [
        leap_channel(node, "game", "private", {"round": 1}),
        leap_channel(node, "news", "public", {"headline": "hello"}),
    ]
    assert_dispatch(init, "INIT", None, data, unicast=True)
    # A second connection of the same token.
    second = steps["second_init"]["data"]
    assert second["connection_count"] == 2
    assert second["cid"] != data["cid"]
    assert second["metadata"] == data["metadata"]
    assert second["channels"] == data["channels"]
    assert steps["is_online"] is True
    assert steps["token_is_online_field"] is True
    got = [{"e": "NOTIFY", "d": {"n": 1}}, {"e": "MOVE", "d": {"n": 2}}]
    assert steps["both_got"] == {"first": got, "second": got}
    assert steps["stats_two_connections"] == {"online_count": 2}
    assert steps["heartbeat_ack"] == 4


async def test_subscribe_available_and_unavailable(node: Server, js: JS) -> None:
    steps = await js.run("leap_edge.cjs", "subscribe", node)
    assert steps["init"]["data"]["channels"] == []
    assert steps["init"]["data"]["metadata"] == {"userId": "bob"}
    assert_dispatch(
        steps["subscribe_news"],
        "AVAILABLE",
        "news",
        {"channel": leap_channel(node, "news", "public", {"headline": "hello"})},
    )
    assert_dispatch(
        steps["subscribe_lobby"],
        "AVAILABLE",
        "lobby",
        {"channel": leap_channel(node, "lobby", "unprotected", {"open": True})},
    )
    assert_dispatch(
        steps["subscribe_vault"],
        "UNAVAILABLE",
        "vault",
        {"graceful": False, "error_code": "NOT_GRANTED"},
    )
    assert_dispatch(
        steps["subscribe_ghost"],
        "UNAVAILABLE",
        "ghost",
        {"graceful": False, "error_code": "UNKNOWN"},
    )
    assert steps["stats_news"] == {"online_count": 1}
    assert steps["stats_vault"] == {"online_count": 0}
    # A token's own SUBSCRIBE is a durable subscription the backend can see.
    assert steps["tokens_news"] == [steps["token"]]
    assert steps["tokens_vault"] == []


async def test_message_direct_message_and_state_updates(node: Server, js: JS) -> None:
    steps = await js.run("leap_edge.cjs", "delivery", node)
    assert_dispatch(steps["message"], "MESSAGE", "game", {"e": "MOVE", "d": {"x": 1, "y": [2, 3]}})
    assert_dispatch(steps["message_string"], "MESSAGE", "game", {"e": "TEXT", "d": "hello"})
    assert_dispatch(steps["message_null"], "MESSAGE", "game", {"e": "EMPTY", "d": None})
    # publishMessage(channel, event) with no data: the SDK sends {e} alone.
    assert_dispatch(steps["message_no_data"], "MESSAGE", "game", {"e": "NODATA", "d": None})
    assert_dispatch(
        steps["direct_message"], "DIRECT_MESSAGE", None, {"e": "NOTIFY", "d": {"text": "hi"}}
    )
    assert_dispatch(
        steps["state_set"], "STATE_UPDATE", "game", {"state": {"round": 2, "board": [1, 0]}}
    )
    # After a patch the full, merged state is sent.
    assert_dispatch(
        steps["state_patch"],
        "STATE_UPDATE",
        "game",
        {"state": {"round": 2, "board": [1, 0], "turn": "b"}},
    )
    assert_dispatch(steps["state_set_fn"], "STATE_UPDATE", "game", {"state": {"round": 3}})
    assert_dispatch(
        steps["state_patch_fn"], "STATE_UPDATE", "game", {"state": {"round": 30, "done": True}}
    )
    assert_dispatch(
        steps["token_state_update"],
        "TOKEN_STATE_UPDATE",
        None,
        {"state": {"userId": "alice", "level": 2}},
    )
    # A later connection of the token: INIT has the new token state and channel state.
    init = steps["init_after_updates"]["data"]
    assert init["connection_count"] == 2
    assert init["metadata"] == {"userId": "alice", "level": 2}
    assert init["channels"] == [leap_channel(node, "game", "private", {"round": 30, "done": True})]


async def test_direct_messages_with_token_inboxes_on(node: Server, js: JS) -> None:
    """With the project's token inboxes on (docs/inbox.md), DIRECT_MESSAGE's inner
    object has offset and epoch beside e and d; the SDK hands it on as it is."""
    async with httpx.AsyncClient(base_url=node.api, headers=node.headers) as http:
        assert (await http.patch("/settings", json={"inbox": {"size": 10}})).status_code == 200
    steps = await js.run("leap_edge.cjs", "delivery", node)
    seen = steps["direct_message"]
    data = dict(seen["data"])
    assert isinstance(data.pop("epoch"), str) and data.pop("offset") == 1
    assert data == {"e": "NOTIFY", "d": {"text": "hi"}}
    assert seen["eventType"] == "DIRECT_MESSAGE" and seen["channelId"] is None
    assert set(seen["raw"]["d"]) == {"c", "u", "e", "d"}


async def test_lifecycle(node: Server, js: JS) -> None:
    steps = await js.run("leap_edge.cjs", "lifecycle", node)
    assert steps["init"]["data"]["channels"] == []
    # subscribeToken while the token is online: AVAILABLE pushed, and messages flow.
    assert_dispatch(
        steps["pushed_available"],
        "AVAILABLE",
        "game",
        {"channel": leap_channel(node, "game", "private", {"round": 7})},
    )
    assert_dispatch(steps["message_after_grant"], "MESSAGE", "game", {"e": "AFTER_GRANT", "d": 1})
    # removeToken: UNAVAILABLE graceful; nothing more from the channel.
    assert_dispatch(steps["removed"], "UNAVAILABLE", "game", {"graceful": True})
    assert steps["events_after_remove"] == ["DIRECT_MESSAGE"]
    assert steps["tokens_after_remove"] == []
    # Channel deleted: UNAVAILABLE graceful, for a granted and for a client-made subscription.
    assert_dispatch(steps["deleted_game"], "UNAVAILABLE", "game", {"graceful": True})
    assert_dispatch(steps["deleted_news"], "UNAVAILABLE", "news", {"graceful": True})
    # Deleting dropped the subscriptions: a new channel with the same ID has none.
    assert steps["tokens_recreated"] == []
    assert_dispatch(
        steps["resubscribe_recreated"],
        "UNAVAILABLE",
        "game",
        {"graceful": False, "error_code": "NOT_GRANTED"},
    )
    # Token deleted: its socket is closed with 4001 and the SDK does not reconnect.
    assert steps["token_deleted_close"]["code"] == 4001
    assert steps["token_deleted_connect_calls"] == 1
    assert steps["token_deleted_state"] == "errored"


async def test_bad_auth_closes_4001_without_reconnect(node: Server, js: JS) -> None:
    assert node.node is not None
    other, _secret = await node.node.service.create_project("other")
    foreign = await node.node.service.create_token(other, state=None, expires_at=None)
    steps = await js.run("leap_edge.cjs", "bad_auth", node, SB_FOREIGN_TOKEN=foreign.id)
    for case in ("unknown_token", "not_a_token", "wrong_project", "foreign_token"):
        seen = steps[case]
        assert seen["close"]["code"] == 4001, (case, seen)
        assert seen["states"] == ["connecting", "authenticating", "errored"], (case, seen)
        assert seen["events"] == [], (case, seen)  # no INIT
        assert seen["connectCalls"] == 1, (case, seen)  # never tried again
        assert seen["socket"] is None, (case, seen)
    assert steps["is_online_after"] is False


async def test_tokenless_client_on_unprotected_channel(node: Server, js: JS) -> None:
    steps = await js.run("leap_edge.cjs", "tokenless", node)
    # leap-edge-js sends IDENTIFY without a token key when it has none.
    assert steps["identify"] == {"op": 2, "d": {"project_id": node.project_id}}
    init = steps["init"]["data"]
    assert init["scope"] == "noauth"
    assert init["metadata"] is None
    assert init["channels"] == []
    assert init["connection_count"] == 1
    assert_dispatch(
        steps["subscribe_lobby"],
        "AVAILABLE",
        "lobby",
        {"channel": leap_channel(node, "lobby", "unprotected", {"open": True})},
    )
    not_granted = {"graceful": False, "error_code": "NOT_GRANTED"}
    assert_dispatch(steps["subscribe_news"], "UNAVAILABLE", "news", not_granted)
    assert_dispatch(steps["subscribe_vault"], "UNAVAILABLE", "vault", not_granted)
    assert_dispatch(
        steps["subscribe_ghost"],
        "UNAVAILABLE",
        "ghost",
        {"graceful": False, "error_code": "UNKNOWN"},
    )
    assert steps["stats_lobby"] == {"online_count": 1}
    assert steps["tokens_lobby"] == []
    assert_dispatch(steps["message"], "MESSAGE", "lobby", {"e": "HELLO", "d": {"who": "server"}})
    assert_dispatch(
        steps["state_patch"], "STATE_UPDATE", "lobby", {"state": {"open": True, "visitors": 1}}
    )
    assert_dispatch(steps["deleted"], "UNAVAILABLE", "lobby", {"graceful": True})


async def test_docs_socket_url(node: Server, js: JS) -> None:
    steps = await js.run("leap_edge.cjs", "socket_urls", node)
    assert steps["url"].endswith("/1.0/ws?encoding=json")
    assert steps["init"]["data"]["scope"] == "token"
    assert steps["init"]["data"]["metadata"] == {"userId": "alice"}
    assert steps["offline_after_close"] is False


async def test_channel_ids_with_punctuation(node: Server, js: JS) -> None:
    channel = "chat:room@1.x-y_Z"
    steps = await js.run("leap_edge.cjs", "odd_ids", node)
    assert steps["create"]["id"] == channel
    assert steps["get"] == channel
    assert steps.undefined("patch_state")
    assert steps.undefined("subscribe_token")
    assert len(steps["tokens"]) == 1
    assert steps["init_channels"] == [[channel, {"n": 1, "m": 2}]]
    assert_dispatch(steps["message"], "MESSAGE", channel, {"e": "PING", "d": 1})
    assert steps["stats"] == {"online_count": 1}
    assert steps.undefined("delete")


async def test_heartbeats_and_server_probes(tmp_path: Path, js: JS) -> None:
    server = await start_node(tmp_path / "data", heartbeat_interval_ms=1000)
    try:
        steps = await js.run("leap_edge.cjs", "heartbeats", server)
    finally:
        assert server.node is not None
        await server.node.stop()
    assert steps["hello"] == {"op": 1, "d": {"heartbeat_interval": 1000}}
    for exchange in steps["beats"]:
        assert exchange["beat"] == {"op": 3}
        assert exchange["ack"]["op"] == 4
    probe = steps["probe"]
    tag = probe["probe"]["d"]["tag"]
    assert probe["probe"] == {"op": 3, "d": {"tag": tag}} and isinstance(tag, str)
    assert probe["echo"] == {"op": 3, "d": {"tag": tag}}
    assert probe["ack"]["op"] == 4
    assert probe["ack"]["d"]["tag"] == tag
    assert isinstance(probe["ack"]["d"]["latency"], int)
    assert steps["state"] == "connected"
    assert steps["closes"] == []
    assert steps["is_online"] is True
    # leap-edge-js warns when an ack is late; it never had to.
    assert "didn't respond to heartbeat" not in steps.stderr
