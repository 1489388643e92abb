"""@onehop/client, Hop's official browser SDK (`hop.init`), against a real server."""

from __future__ import annotations

import httpx
import pytest

from tests.compat.conftest import JS
from tests.conftest import Server

pytestmark = pytest.mark.compat

NOT_GRANTED = {
    "state": None,
    "subscription": "unavailable",
    "error": {"graceful": False, "error_code": "NOT_GRANTED"},
}
UNKNOWN = {
    "state": None,
    "subscription": "unavailable",
    "error": {"graceful": False, "error_code": "UNKNOWN"},
}
GONE = {"state": None, "subscription": "unavailable", "error": {"graceful": True}}


def available(state: dict[str, object]) -> dict[str, object]:
    return {"state": state, "subscription": "available", "error": None}


@pytest.mark.parametrize("inbox", [False, True], ids=["inboxes off", "inboxes on"])
async def test_token_client(node: Server, js: JS, inbox: bool) -> None:
    if inbox:
        # Token inboxes (docs/inbox.md) put offset and epoch on DIRECT_MESSAGE: the
        # SDK sees exactly the same (its listeners get d, its events e and d).
        async with httpx.AsyncClient(base_url=node.api, headers=node.headers) as http:
            on = await http.patch("/settings", json={"inbox": {"size": 10}})
            assert on.status_code == 200, on.text
    steps = await js.run("client_sdk.cjs", "token_client", node)
    assert steps["init_returns_instance"] is True
    # The Client subscribes to leap-edge-js after its first ("connecting") update.
    assert steps["states"] == ["authenticating", "connected"]
    assert steps["connection_state"] == "connected"
    # INIT: the channels the backend granted are in the state map, available, with state.
    assert steps["game_after_init"] == available({"round": 1})
    assert steps["map_after_init"] == {"game": available({"round": 1})}

    # Listeners fire.
    assert steps["listener_move"] == {"x": 1}
    assert steps["event_move"] == {
        "kind": "message",
        "event": "MOVE",
        "data": {"x": 1},
        "channel": "game",
    }
    assert steps["listener_dm"] == {"text": "hi"}
    assert steps["event_dm"] == {
        "kind": "message",
        "event": "NOTIFY",
        "data": {"text": "hi"},
        "channel": None,
    }
    assert steps["after_unsubscribe_listener"] == ["dm:NOTIFY"]

    # STATE_UPDATE after set and after patch (full state), and the map follows.
    assert steps["state_update_set"] == {
        "kind": "state_update",
        "channel": "game",
        "state": {"round": 2, "board": [1]},
    }
    assert steps["map_game_after_set"] == available({"round": 2, "board": [1]})
    merged = {"round": 2, "board": [1], "turn": "bob"}
    assert steps["state_update_patch"] == {
        "kind": "state_update",
        "channel": "game",
        "state": merged,
    }
    assert steps["map_game_after_patch"] == available(merged)

    # subscribeToChannel: pending, then AVAILABLE / UNAVAILABLE.
    assert steps["news_pending"] == {"subscription": "pending", "state": None, "error": None}
    assert steps["news_available"] == available({"headline": "hello"})
    assert steps["news_sent"] == [{"e": "SUBSCRIBE", "d": None, "c": "news"}]
    assert steps["vault_not_granted"] == NOT_GRANTED
    assert steps["ghost_unknown"] == UNKNOWN

    # The backend grants and then removes the private channel while the client is online.
    assert steps["vault_granted"] == available({"gold": 3})
    assert steps["vault_removed"] == GONE

    assert steps["is_online"] is True
    assert steps["bob_is_online"] is False
    assert steps["stats_game"] == {"online_count": 1}
    assert steps["stats_game_two"] == {"online_count": 2}

    # sendMessage reaches the other subscriber, not the sender.
    assert steps["chat_at_bob"] == {"e": "CHAT", "d": {"text": "hello bob"}}
    assert steps["chat_at_sender"] == ["NOTIFY"]

    refused = steps["set_channel_state_refused"]
    assert refused["channelId"] == "game"
    assert refused["data"]["code"] == "forbidden" and refused["data"]["message"]
    assert steps["state_after_refused"] == merged
    assert steps["connection_after_refused"] == "connected"

    assert steps["news_deleted"] == GONE
    assert steps["token_state_update"] == {
        "channelId": None,
        "data": {"state": {"userId": "alice", "level": 2}},
    }

    # unsubscribeFromChannel: the token's subscription is gone on the server too.
    assert steps["unsubscribe_sent"] == [{"e": "UNSUBSCRIBE", "d": None, "c": "game"}]
    assert steps["map_after_unsubscribe"] == ["ghost", "news", "vault"]
    assert steps["game_tokens_after_unsubscribe"] == [steps["bob"]]


async def test_tokenless_client(node: Server, js: JS) -> None:
    steps = await js.run("client_sdk.cjs", "tokenless_client", node)
    assert steps["states"] == ["authenticating", "connected"]
    assert steps["map_after_init"] == {}
    assert steps["lobby"] == available({"open": True})
    assert steps["listener_hello"] == {"who": "server"}
    assert steps["event_hello"] == {
        "kind": "message",
        "event": "HELLO",
        "data": {"who": "server"},
        "channel": "lobby",
    }
    assert steps["state_update"] == {
        "kind": "state_update",
        "channel": "lobby",
        "state": {"open": False},
    }
    assert steps["map_lobby"] == available({"open": False})
    assert steps["news"] == NOT_GRANTED
    assert steps["stats_lobby"] == {"online_count": 1}
    refused = steps["send_message_refused"]
    assert refused["channelId"] == "lobby"
    assert refused["data"]["code"] == "forbidden" and refused["data"]["message"]
    assert steps["connection_after_refused"] == "connected"


async def test_bad_token(node: Server, js: JS) -> None:
    steps = await js.run("client_sdk.cjs", "bad_token", node)
    assert steps["close"]["code"] == 4001
    assert steps["states"] == ["authenticating", "errored"]
    assert steps["connection_state"] == "errored"
    assert steps["reconnects"] == 0
    assert steps["services"] == []
