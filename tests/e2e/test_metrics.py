"""``GET /metrics`` (``--metrics``) against real nodes: the text parses with
prometheus_client's own parser, the counters move with real traffic, the Redis gauges
follow a real Redis going away, and no label names a project, channel or token."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator
from prometheus_client.parser import text_string_to_metric_families

from switchboard.server.api import openapi
from switchboard.server.config import Limits
from tests.conftest import ROOT, RedisServer, Server, start_node
from tests.e2e.leap import leap, stalled_subscriber

pytestmark = pytest.mark.timeout(30)

Key = tuple[str, frozenset[tuple[str, str]]]

CHANNEL = "chan-not-a-label-7f3a"


def parse(text: str) -> dict[Key, float]:
    """Every sample of an exposition, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[Key, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(http: httpx.AsyncClient) -> tuple[str, dict[Key, float]]:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text, parse(response.text)


@pytest.fixture
async def metered(tmp_path: Path) -> AsyncIterator[Server]:
    server = await start_node(tmp_path / "data", metrics=True)
    try:
        yield server
    finally:
        assert server.node is not None
        await server.node.stop()


async def ok(response: httpx.Response) -> object:
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_metrics_are_off_by_default(node: Server) -> None:
    async with httpx.AsyncClient(base_url=node.base_url) as http:
        assert (await http.get("/metrics")).status_code == 404


async def test_the_counters_follow_real_traffic_and_no_label_names_a_project(
    metered: Server,
) -> None:
    async with (
        httpx.AsyncClient(base_url=metered.base_url) as http,
        httpx.AsyncClient(base_url=metered.api, headers=metered.headers) as api,
    ):
        _, before = await scrape(http)
        await ok(await api.put(f"/channels/{CHANNEL}", json={"type": "unprotected"}))
        created = await ok(await api.post("/channels/tokens", json={"state": {}}))
        assert isinstance(created, dict)
        token = created["token"]["id"]
        await ok(await api.put(f"/channels/{CHANNEL}/subscribers/{token}"))
        async with (
            leap(metered.ws_url, metered.project_id, token) as alice,
            leap(metered.ws_url, metered.project_id, token) as bob,
        ):
            _, connected = await scrape(http)
            assert value(connected, "switchboard_connections", scope="token") == 2
            assert value(connected, "switchboard_connections", scope="project") == 0
            assert value(connected, "switchboard_sockets") == 2
            assert value(connected, "switchboard_tokens_online") == 1
            assert value(connected, "switchboard_subscriptions") == 2
            assert value(connected, "switchboard_channels_active") == 1
            accepted = value(connected, "switchboard_sockets_accepted_total")
            assert accepted - value(before, "switchboard_sockets_accepted_total") == 2

            await alice.publish(CHANNEL, "from-a-client", {"n": 1})
            assert (await bob.dispatch("MESSAGE"))["d"]["e"] == "from-a-client"
            body = {"e": "from-rest", "d": {"n": 2}}
            await ok(await api.post(f"/channels/{CHANNEL}/messages", json=body))
            await ok(await api.post(f"/channels/tokens/{token}/messages", json=body))
            for client in (alice, bob):
                assert (await client.dispatch("MESSAGE"))["d"]["e"] == "from-rest"
                assert (await client.dispatch("DIRECT_MESSAGE"))["d"]["e"] == "from-rest"
            assert (await api.get("/no/such/route")).status_code == 404

            text, after = await scrape(http)

            def moved(name: str, **labels: str) -> float:
                return value(after, name, **labels) - value(before, name, **labels)

            assert moved("switchboard_messages_in_total", source="client", kind="channel") == 1
            assert moved("switchboard_messages_in_total", source="rest", kind="channel") == 1
            assert moved("switchboard_messages_in_total", source="rest", kind="direct") == 1
            assert moved("switchboard_messages_out_total", kind="channel") == 2
            assert moved("switchboard_messages_out_total", kind="direct") == 1
            # The client's message reached bob only (never its sender); the REST ones both.
            assert moved("switchboard_deliveries_total") == 1 + 2 + 2
            assert moved("switchboard_bytes_written_total") > 5 * len(b'{"n":2}')
            publish = {"method": "POST", "route": "/v1/channels/{channel_id}/messages"}
            assert moved("switchboard_http_requests_total", **publish, status="200") == 1
            assert moved("switchboard_http_request_duration_seconds_count", **publish) == 1
            assert moved("switchboard_http_request_duration_seconds_sum", **publish) > 0
            assert (
                moved(
                    "switchboard_http_requests_total", method="GET", route="unmatched", status="404"
                )
                == 1
            )
            # The gateway's sockets are not REST requests: no series for /ws.
            assert '"/ws"' not in text

            # Deleting the token closes both of its sockets with 4001, counted by code.
            await ok(await api.delete(f"/channels/tokens/{token}"))
            assert (await alice.closed())[0] == 4001
            assert (await bob.closed())[0] == 4001

        _, closed = await scrape(http)
        assert value(closed, "switchboard_closes_total", code="4001") == 2
        assert value(closed, "switchboard_connections", scope="token") == 0
        assert value(closed, "switchboard_tokens_online") == 0

        # Nothing of a project's own is in the exposition: no IDs, no secrets, no paths.
        text = (await http.get("/metrics")).text
        for secret in (metered.project_id, metered.project_token, token, CHANNEL, "/no/such"):
            assert secret not in text
        routes = {
            label_value
            for (name, labels) in parse(text)
            if name.startswith("switchboard_http_")
            for key, label_value in labels
            if key == "route"
        }
        assert "/v1/channels/{channel_id}/messages" in routes
        assert routes <= {"unmatched", "/metrics"} | {r for _, r in openapi.OPERATIONS}


async def test_an_unknown_method_is_one_label_value(metered: Server) -> None:
    """A client picks the method: each one the HTTP parser lets through (it refuses
    made-up ones with 400 before routing) must not become a series of its own."""
    async with httpx.AsyncClient(base_url=metered.base_url) as http:
        for method in ("PROPFIND", "MKCOL", "LOCK"):
            assert (await http.request(method, "/healthz")).status_code == 405
        _, samples = await scrape(http)
    labels = [labels for (name, labels) in samples if name == "switchboard_http_requests_total"]
    methods = {v for pairs in labels for k, v in pairs if k == "method"}
    assert methods == {"OTHER"}
    assert (
        value(
            samples,
            "switchboard_http_requests_total",
            method="OTHER",
            route="unmatched",
            status="405",
        )
        == 3
    )


async def test_a_slow_consumer_close_is_counted(tmp_path: Path) -> None:
    server = await start_node(
        tmp_path / "d", metrics=True, limits=Limits(max_buffered_bytes=256 * 1024)
    )
    assert server.node is not None
    try:
        async with (
            httpx.AsyncClient(base_url=server.base_url) as http,
            httpx.AsyncClient(base_url=server.api, headers=server.headers) as api,
        ):
            await ok(await api.put("/channels/firehose", json={"type": "unprotected"}))
            # A raw socket that completes the handshake and subscribes, then never reads.
            _, writer = await stalled_subscriber(server.node.port, server.project_id, "firehose")
            while server.node.hub.channel_connections(server.project_id, "firehose") < 1:
                await asyncio.sleep(0.01)
            blob = "x" * 60_000
            for _ in range(200):
                await ok(await api.post("/channels/firehose/messages", json={"e": "b", "d": blob}))
                _, samples = await scrape(http)
                if value(samples, "switchboard_slow_consumer_closes_total"):
                    break
            assert value(samples, "switchboard_slow_consumer_closes_total") == 1
            assert value(samples, "switchboard_closes_total", code="4000") == 1
            writer.close()
    finally:
        await server.node.stop()


async def test_closes_aiohttp_makes_for_refused_frames_are_counted(metered: Server) -> None:
    """A frame over the limit (1009), invalid UTF-8 in a text frame (1007) and a protocol
    error (1002) are refused by aiohttp's reader, not by the connection: each is counted
    under its code all the same (before, switchboard_closes_total left them out)."""
    limit = Limits().max_frame_bytes
    bad_frames = {
        "1009": ("text", "x" * (limit + 1)),
        "1007": ("raw", b"\x81\x82\x00\x00\x00\x00\xff\xfe"),  # text frame, bad UTF-8
        "1002": ("raw", b"\x83\x80\x00\x00\x00\x00"),  # reserved opcode 3
    }
    async with httpx.AsyncClient(base_url=metered.base_url) as http:
        _, before = await scrape(http)
        for code, (kind, frame) in bad_frames.items():
            async with leap(metered.ws_url) as client:
                assert (await client.recv())["op"] == 1
                if kind == "text":
                    await client.ws.send(frame)
                else:
                    # Below the websockets library, which would refuse to send these.
                    client.ws.transport.write(frame)
                assert str((await client.closed())[0]) == code
        _, after = await scrape(http)
        for code in bad_frames:
            moved = value(after, "switchboard_closes_total", code=code) - value(
                before, "switchboard_closes_total", code=code
            )
            assert moved == 1, code


async def test_the_openapi_document_lists_metrics_when_it_is_on(metered: Server) -> None:
    assert metered.node is not None
    async with httpx.AsyncClient(base_url=metered.base_url) as http:
        spec = (await http.get("/openapi.json")).json()
    OpenAPIV31SpecValidator(spec).validate()
    assert spec["paths"]["/metrics"]["get"]["security"] == []
    documented = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    assert set(openapi.routes_of(metered.node.app)) == documented


async def test_redis_health_follows_a_real_redis(tmp_path: Path, own_redis: RedisServer) -> None:
    server = await start_node(tmp_path / "d", redis_url=own_redis.url, metrics=True)
    assert server.node is not None
    try:
        async with (
            httpx.AsyncClient(base_url=server.base_url) as http,
            httpx.AsyncClient(base_url=server.api, headers=server.headers) as api,
        ):
            _, up = await scrape(http)
            assert value(up, "switchboard_redis_up") == 1
            assert 0 < value(up, "switchboard_redis_ping_seconds") < 0.5
            assert value(up, "switchboard_broker_connected") == 1
            await ok(await api.put("/channels/c", json={"type": "unprotected"}))
            await ok(await api.post("/channels/c/messages", json={"e": "x"}))
            await ok(await api.delete("/channels/c"))
            # The broker hears its own publish back from Redis, a moment later: not the
            # message (no socket here is on the channel, so the node does not hear its
            # topic), but the deletion, which goes on the topic every node hears.
            deadline = time.monotonic() + 5
            while True:
                _, heard = await scrape(http)
                events = "switchboard_broker_events_received_total"
                if value(heard, events) > value(up, events) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert value(heard, events) > value(up, events)
            assert value(heard, "switchboard_broker_topics") == 0  # no socket, no topic

            own_redis.stop()
            started = time.monotonic()
            _, down = await scrape(http)
            assert time.monotonic() - started < 3  # bounded, however Redis fails
            assert value(down, "switchboard_redis_up") == 0
            assert ("switchboard_redis_ping_seconds", frozenset()) not in down

            own_redis.start()
            deadline = time.monotonic() + 10
            while True:
                _, back = await scrape(http)
                healthy = value(back, "switchboard_redis_up") == 1
                if healthy and value(back, "switchboard_broker_connected") == 1:
                    break
                assert time.monotonic() < deadline, "Redis did not come back in the metrics"
                await asyncio.sleep(0.1)
            assert value(back, "switchboard_broker_reconnects_total") >= 1
    finally:
        await server.node.stop()


async def test_a_sqlite_node_has_no_redis_series(metered: Server) -> None:
    async with httpx.AsyncClient(base_url=metered.base_url) as http:
        text, _ = await scrape(http)
    assert "switchboard_redis_" not in text and "switchboard_broker_" not in text
    assert "process_resident_memory_bytes" in text


def test_the_command_line_serves_metrics(spawn_server: object) -> None:
    assert callable(spawn_server)
    server = spawn_server(None, "--metrics")
    with httpx.Client(base_url=server.base_url) as http:
        response = http.get("/metrics")
    assert response.status_code == 200
    assert "switchboard_connections" in response.text


async def test_the_dashboard_uses_only_metrics_a_node_serves(
    tmp_path: Path, redis_url: str
) -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"\b(?:switchboard|process)_\w+", expr)}
    server = await start_node(tmp_path / "d", redis_url=redis_url, metrics=True)
    assert server.node is not None
    try:
        async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers) as http:
            # One REST call first, so the request series exist.
            assert (await http.get("/v1/channels")).status_code == 200
            text, _ = await scrape(http)
    finally:
        await server.node.stop()
    # By name, samples or not: a node that closed no socket yet has no close codes.
    missing = [n for n in used if not re.search(rf"^(# HELP )?{n}\b", text, re.MULTILINE)]
    assert used and not missing, missing
    documented = (ROOT / "docs" / "metrics.md").read_text()
    families = {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in used}
    for family in families:
        assert f"`{family}" in documented, family
