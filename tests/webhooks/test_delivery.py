"""Retries, giving up, the delivery log, and the configuration routes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from switchboard.server.permissions import ALL, Permission
from tests.conftest import Server
from tests.e2e.leap import leap
from tests.webhooks.conftest import data
from tests.webhooks.receiver import Received, Receiver

pytestmark = pytest.mark.timeout(60)


def failing(times: int, status: int = 503) -> object:
    """Answer ``status`` to the first ``times`` requests, then 200."""
    seen = {"n": 0}

    def answer(_: Received) -> int:
        seen["n"] += 1
        return status if seen["n"] <= times else 200

    return answer


async def wait_log(
    api: httpx.AsyncClient, done: Callable[[list[dict[str, Any]]], bool], limit: int = 50
) -> list[dict[str, Any]]:
    """The delivery log once ``done`` holds for it (it is written after each answer)."""
    async with asyncio.timeout(10):
        while True:
            got = await data(api.get("/webhooks/deliveries", params={"limit": limit}))
            log: list[dict[str, Any]] = got["deliveries"]
            if done(log):
                return log
            await asyncio.sleep(0.02)


async def online_event(wnode: Server, api: httpx.AsyncClient) -> str:
    token = (await data(api.post("/channels/tokens", json={})))["token"]["id"]
    async with leap(wnode.ws_url, wnode.project_id, token):
        pass
    return str(token)


async def test_a_failed_delivery_is_retried_with_the_same_id(
    wnode: Server, api: httpx.AsyncClient, hooks: Receiver
) -> None:
    hooks.answer = failing(2)  # type: ignore[assignment]
    secret = (
        await data(api.put("/webhooks", json={"url": hooks.url, "events": ["token.online"]}))
    )["secret"]
    await online_event(wnode, api)
    attempts = await hooks.wait_types("token.online", count=3)
    assert len({a.json["id"] for a in attempts}) == 1
    assert [a.headers["X-Switchboard-Attempt"] for a in attempts] == ["1", "2", "3"]
    assert all(a.signed_by(secret) for a in attempts)

    log = await wait_log(api, lambda log: len(log) == 3)
    assert [(e["attempt"], e["status"], e["response_status"]) for e in log] == [
        (3, "delivered", 200),
        (2, "retrying", 503),
        (1, "retrying", 503),
    ]
    assert {e["event_id"] for e in log} == {attempts[0].json["id"]}
    assert log[0]["url"] == hooks.url and log[0]["type"] == "token.online"
    assert log[1]["error"] == "HTTP 503"


async def test_a_delivery_is_given_up_after_its_retries(
    wnode: Server, api: httpx.AsyncClient, hooks: Receiver
) -> None:
    hooks.answer = lambda _: 500  # type: ignore[assignment]
    await data(api.put("/webhooks", json={"url": hooks.url, "events": ["token.online"]}))
    await online_event(wnode, api)
    await hooks.wait_types("token.online", count=3)  # the first and 2 retries (FAST)

    log = await wait_log(api, lambda log: bool(log) and log[0]["status"] == "failed")
    assert [e["status"] for e in log] == ["failed", "retrying", "retrying"]
    assert len(hooks.of_type("token.online")) == 3
    assert wnode.node is not None
    stats = wnode.node.webhooks.stats()
    assert stats["failed"] == 1 and stats["retried"] == 2


async def test_an_unreachable_receiver_is_logged_and_nothing_else_suffers(
    wnode: Server, api: httpx.AsyncClient
) -> None:
    await data(api.put("/webhooks", json={"url": "http://127.0.0.1:9/nobody"}))
    token = await online_event(wnode, api)
    await data(api.put("/channels/room", json={"type": "public"}))
    async with leap(wnode.ws_url, wnode.project_id, token) as client:
        await client.subscribe("room")
        await data(api.post("/channels/room/messages", json={"e": "m", "d": 1}))
        assert (await client.dispatch("MESSAGE"))["d"] == {"e": "m", "d": 1}
    log = await wait_log(api, lambda log: len(log) >= 1)
    assert log[-1]["response_status"] is None and log[-1]["error"]


async def test_the_configuration_routes(api: httpx.AsyncClient, hooks: Receiver) -> None:
    assert await data(api.get("/webhooks")) == {"webhooks": None}
    made = await data(api.put("/webhooks", json={"url": hooks.url}))
    secret = made["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    view = made["webhooks"]
    assert view["events"] == [
        "channel.occupied",
        "channel.vacated",
        "token.offline",
        "token.online",
    ]
    assert view["secret_hint"] == secret[:10] + "…"
    assert view["authorize_url"] is None
    shown = await data(api.get("/webhooks"))
    assert shown == {"webhooks": view}
    assert secret not in str(shown)

    # A second PUT replaces the configuration and keeps (does not show) the secret.
    again = await data(
        api.put("/webhooks", json={"url": hooks.url, "events": ["message.published"]})
    )
    assert "secret" not in again
    assert again["webhooks"]["events"] == ["message.published"]
    assert again["webhooks"]["created_at"] == view["created_at"]

    rotated = (await data(api.post("/webhooks/secret")))["secret"]
    assert rotated != secret and rotated.startswith("whsec_")
    assert (await data(api.get("/webhooks")))["webhooks"]["secret_hint"] == rotated[:10] + "…"

    assert await data(api.delete("/webhooks")) == {}
    assert await data(api.get("/webhooks")) == {"webhooks": None}
    gone = await api.delete("/webhooks")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    assert (await api.post("/webhooks/secret")).status_code == 404


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"url": "ftp://x/"}, "http"),
        ({"url": "/relative"}, "http"),
        ({"url": "http://x/", "events": ["token.maybe"]}, "token.maybe"),
        ({"url": "http://x/", "events": []}, "at least one"),
        ({}, "url"),
        ({"url": "http://x/", "extra": 1}, "extra"),
        ({"url": 5}, "url"),
        ({"url": "http://" + "x" * 2100}, "2048"),
    ],
)
async def test_a_bad_configuration_is_refused_and_changes_nothing(
    api: httpx.AsyncClient, body: dict[str, object], fragment: str
) -> None:
    await data(api.put("/webhooks", json={"url": "http://kept.example/"}))
    response = await api.put("/webhooks", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and fragment in error["message"], error
    assert (await data(api.get("/webhooks")))["webhooks"]["url"] == "http://kept.example/"


async def test_webhook_routes_need_a_token_with_every_permission(
    wnode: Server, hooks: Receiver
) -> None:
    assert wnode.node is not None
    service = wnode.node.service
    almost = await service.create_project_token(wnode.project_id, ALL & ~Permission.MESSAGE_TOKEN)
    full = await service.create_project_token(wnode.project_id, ALL)
    async with httpx.AsyncClient(base_url=wnode.api, headers={"Authorization": almost}) as c:
        for method, path in [
            ("GET", "/webhooks"),
            ("PUT", "/webhooks"),
            ("DELETE", "/webhooks"),
            ("POST", "/webhooks/secret"),
            ("GET", "/webhooks/deliveries"),
        ]:
            response = await c.request(method, path, json={"url": hooks.url})
            assert response.status_code == 403, (method, path, response.text)
            error = response.json()["error"]
            assert error["code"] == "missing_permission" and error["permission"] == "all"
    async with httpx.AsyncClient(base_url=wnode.api, headers={"Authorization": full}) as c:
        assert (await c.put("/webhooks", json={"url": hooks.url})).status_code == 200


async def test_the_log_keeps_its_bound_and_pages_by_limit(
    wnode: Server, api: httpx.AsyncClient, hooks: Receiver
) -> None:
    await data(api.put("/webhooks", json={"url": hooks.url, "events": ["token.online"]}))
    for _ in range(3):
        await online_event(wnode, api)
    await hooks.wait_types("token.online", count=3)
    await wait_log(api, lambda log: len(log) == 3)
    log = await wait_log(api, lambda log: True, limit=2)
    assert len(log) == 2
    bad = await api.get("/webhooks/deliveries", params={"limit": 0})
    assert bad.status_code == 400
    too_many = await api.get("/webhooks/deliveries", params={"limit": 101})
    assert too_many.status_code == 400
