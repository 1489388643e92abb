"""Timeouts and retries, against a scripted HTTP peer (the real server never fails on
demand): what is retried, how often, and what is raised in the end."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from switchboard import (
    APIError,
    AsyncSwitchboard,
    RateLimited,
    Switchboard,
    Unavailable,
)
from tests.conftest import free_port
from tests.sdk.scripted import HANG, Reply, ScriptedHTTP

CHANNEL = {
    "id": "game",
    "project": {"id": "project_1", "name": "default"},
    "state": {},
    "type": "private",
    "capabilities": 0,
    "created_at": "2024-01-01T00:00:00.000Z",
}
OK_CHANNEL = Reply(body={"success": True, "data": {"channel": CHANNEL}})
FAST = 0.001
"""retry_backoff for these tests."""


async def test_idempotent_call_retried_after_503() -> None:
    async with (
        ScriptedHTTP([Reply(503), Reply(502), OK_CHANNEL]) as peer,
        AsyncSwitchboard("ptk_x", peer.url, max_retries=2, retry_backoff=FAST) as sb,
    ):
        channel = await sb.channels.get("game")
    assert channel.id == "game"
    assert [r.path for r in peer.requests] == ["/v1/channels/game"] * 3
    first = peer.requests[0]
    assert first.headers["authorization"] == "ptk_x"
    assert first.headers["user-agent"].startswith("switchboard-python/")


async def test_retries_run_out() -> None:
    envelope = {"success": False, "error": {"code": "unavailable", "message": "store down"}}
    async with (
        ScriptedHTTP([Reply(503, envelope)] * 3) as peer,
        AsyncSwitchboard("ptk_x", peer.url, max_retries=1, retry_backoff=FAST) as sb,
    ):
        with pytest.raises(Unavailable) as caught:
            await sb.channels.get_state("game")
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        503,
        "unavailable",
        "store down",
    )
    assert len(peer.requests) == 2


async def test_publish_is_not_retried_after_503() -> None:
    async with (
        ScriptedHTTP([Reply(503), Reply()]) as peer,
        AsyncSwitchboard("ptk_x", peer.url, max_retries=3, retry_backoff=FAST) as sb,
    ):
        with pytest.raises(Unavailable):
            await sb.channels.publish_message("game", "E", {"x": 1})
    assert len(peer.requests) == 1
    assert json.loads(peer.requests[0].body) == {"e": "E", "d": {"x": 1}}
    assert peer.requests[0].headers["content-type"] == "application/json"


async def test_429_is_retried_for_any_call_and_honours_retry_after() -> None:
    limited = {"success": False, "error": {"code": "rate_limited", "message": "slow down"}}
    script: list[Reply | str] = [Reply(429, limited, {"Retry-After": "0"}), Reply()]
    async with (
        ScriptedHTTP(script) as peer,
        AsyncSwitchboard("ptk_x", peer.url, retry_backoff=60) as sb,
    ):
        # retry_backoff=60 would time the test out: Retry-After: 0 wins.
        await sb.channels.tokens.publish_direct_message("leap_token_x", "E")
    assert len(peer.requests) == 2

    async with (
        ScriptedHTTP([Reply(429, limited)]) as peer,
        AsyncSwitchboard("ptk_x", peer.url, max_retries=0) as sb,
    ):
        with pytest.raises(RateLimited) as caught:
            await sb.channels.tokens.get_all()
    assert caught.value.message == "slow down"


async def test_timeout_then_retry_for_idempotent_calls_only() -> None:
    async with (
        ScriptedHTTP([HANG, OK_CHANNEL]) as peer,
        AsyncSwitchboard("ptk_x", peer.url, timeout=0.2, max_retries=1, retry_backoff=FAST) as sb,
    ):
        assert (await sb.channels.get("game")).id == "game"
    assert len(peer.requests) == 2

    async with (
        ScriptedHTTP([HANG, Reply()]) as peer,
        AsyncSwitchboard("ptk_x", peer.url, timeout=0.2, max_retries=3, retry_backoff=FAST) as sb,
    ):
        with pytest.raises(Unavailable) as caught:
            await sb.channels.create("private")  # POST: the server may have made it
    assert caught.value.code == "unreachable"
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert len(peer.requests) == 1


async def test_connection_refused_is_retried_for_any_call() -> None:
    attempts: list[httpx.Request] = []

    async def count(request: httpx.Request) -> None:
        attempts.append(request)

    async with httpx.AsyncClient(event_hooks={"request": [count]}) as http:
        sb = AsyncSwitchboard(
            "ptk_x",
            f"http://127.0.0.1:{free_port()}",
            max_retries=2,
            http_client=http,
            retry_backoff=FAST,
        )
        with pytest.raises(Unavailable) as caught:
            await sb.channels.tokens.create()
        await sb.aclose()
        assert not http.is_closed  # a client passed in belongs to the caller
    assert len(attempts) == 3
    assert "POST" in caught.value.message


async def test_non_json_error_page() -> None:
    async with (
        ScriptedHTTP([Reply(502, b"<html>Bad gateway</html>")]) as peer,
        AsyncSwitchboard("ptk_x", peer.url, max_retries=0) as sb,
    ):
        with pytest.raises(APIError) as caught:
            await sb.channels.get("game")
    assert (caught.value.status, caught.value.code) == (502, "http_error")
    assert "Bad gateway" in caught.value.message


async def test_malformed_success_is_an_invalid_response() -> None:
    async with (
        ScriptedHTTP([Reply(body={"success": True, "data": {"channel": {"id": 1}}})]) as peer,
        AsyncSwitchboard("ptk_x", peer.url) as sb,
    ):
        with pytest.raises(APIError) as caught:
            await sb.channels.get("game")
    assert caught.value.code == "invalid_response"


async def test_empty_204_answers_are_fine() -> None:
    async with (
        ScriptedHTTP([Reply(204, b"")]) as peer,
        AsyncSwitchboard("ptk_x", peer.url) as sb,
    ):
        await sb.channels.delete("game")


async def test_sync_client_retries_and_times_out_the_same_way() -> None:
    async with ScriptedHTTP([HANG, Reply(503), OK_CHANNEL]) as peer:

        def run() -> str:
            with Switchboard(
                "ptk_x", peer.url, timeout=0.2, max_retries=2, retry_backoff=FAST
            ) as sb:
                return sb.channels.get("game").id

        assert await asyncio.to_thread(run) == "game"
    assert len(peer.requests) == 3
