"""Webhook outcomes on GET /metrics."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_node
from tests.e2e.leap import leap
from tests.webhooks.conftest import FAST, data
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.timeout(60)


def sample(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert found, name
    return float(found.group(1))


async def test_outcomes_are_counted(tmp_path: Path, hooks: Receiver) -> None:
    answers = iter([500, 200] + [500] * 10)
    hooks.answer = lambda r: next(answers) if r.path == "/hooks" else 200  # type: ignore[assignment]
    server = await start_node(tmp_path / "d", metrics=True, **FAST)
    assert server.node is not None
    try:
        async with httpx.AsyncClient(base_url=server.api, headers=server.headers) as api:
            await data(api.put("/webhooks", json={"url": hooks.url, "events": ["token.online"]}))
            # One event delivered on its second attempt, then one given up on.
            for outcome in ("delivered", "failed"):
                token = (await data(api.post("/channels/tokens", json={})))["token"]["id"]
                async with leap(server.ws_url, server.project_id, token):
                    pass
                async with asyncio.timeout(10):
                    while server.node.webhooks.stats()[outcome] < 1:
                        await asyncio.sleep(0.02)
            text = (await api.get(server.base_url + "/metrics")).text
    finally:
        await server.node.stop()
    assert sample(text, 'switchboard_webhook_attempts_total{outcome="delivered"}') == 1
    assert sample(text, 'switchboard_webhook_attempts_total{outcome="retried"}') == 3
    assert sample(text, 'switchboard_webhook_attempts_total{outcome="failed"}') == 1
    assert sample(text, "switchboard_webhook_events_dropped_total") == 0
    assert sample(text, 'switchboard_webhook_authorizations_total{decision="granted"}') == 0
