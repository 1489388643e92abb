"""The official client across a server restart: back `connected`, channels from INIT.

A real `switchboard serve` process is stopped and started again on the same port and data
dir while @onehop/client is connected. With a token the client does not subscribe again
(it relies on the server's durable subscriptions listed in INIT); without one it does.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from tests.compat.conftest import JS
from tests.conftest import Server, stop

pytestmark = pytest.mark.compat


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_client_reconnects_after_restart(
    spawn_server: Callable[..., Server], js: JS, sig: int
) -> None:
    server = spawn_server()
    driver = await js.start("reconnect.cjs", "restart", server)
    ready = (await driver.expect("ready"))["value"]
    assert ready["map"] == {
        "game": {"state": {"round": 1}, "subscription": "available", "error": None},
        "news": {"state": {"headline": "before"}, "subscription": "available", "error": None},
    }
    assert ready["anon"] == {
        "lobby": {"state": {"open": True}, "subscription": "available", "error": None},
    }

    # The server goes away and comes back on the same port with the same data.
    stop(server, sig)
    port = urlsplit(server.base_url).port
    spawn_server(server.data_dir, port=port, credentials=(server.project_id, server.project_token))

    back = (await driver.expect("token_reconnected", timeout=40))["value"]
    assert back["states"][0] == "errored"
    assert back["states"][-1] == "connected"
    expected_close = 1001 if sig == signal.SIGTERM else 1006
    assert back["closes"][0] == expected_close, back["closes"]
    init = back["init"]
    assert init["scope"] == "token"
    assert init["metadata"] == {"userId": "alice"}
    assert sorted(c["id"] for c in init["channels"]) == ["game", "news"]
    assert back["game"] == {"state": {"round": 1}, "subscription": "available", "error": None}
    assert back["news"] == {
        "state": {"headline": "before"},
        "subscription": "available",
        "error": None,
    }
    # With a token, nothing was sent again: INIT restored the subscriptions.
    assert back["sent"] == []
    assert back["pending"] == {"channels": [], "rooms": []}

    # Without a token, the client subscribes again by itself and gets the channel back.
    anon = (await driver.expect("anon_reconnected", timeout=40))["value"]
    assert anon["lobby"] == {"state": {"open": True}, "subscription": "available", "error": None}
    # (Once per failed attempt while the server was down: the SDK queues a resubscribe for
    # every "errored" update, so the server sees the same SUBSCRIBE repeated; harmless.)
    assert anon["sent"], anon
    assert all(p == {"e": "SUBSCRIBE", "d": None, "c": "lobby"} for p in anon["sent"]), anon

    steps = await driver.finish()
    assert steps["token_message_after"] == {"n": 1}
    assert steps["token_state_after"] == {"headline": "after"}
    assert steps["anon_message_after"] == {"n": 2}
    assert steps["is_online_after"] is True
