"""A short soak: ~15 s of churn against real ``switchboard serve`` processes, then the verdict.

The same churn and verdict as ``scripts/soak`` (tests/soak/_soak.py), shorter and a
little slower, against one node on SQLite and a 2-node cluster on the session's Redis.
What is asserted is what a loaded machine does not blur: once the churn stops and the
sockets are gone (waited for, not slept for), descriptors and tasks are back to the
baseline within a few; RSS only within a generous bound; no error anywhere.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RedisServer, Server, launch, stop
from tests.soak import _soak

RATES = _soak.ChurnRates(connects_per_s=30, rest_publishes_per_s=10, tokens_per_s=2)
THRESHOLDS = _soak.Thresholds(rss_limit_bytes=64 * _soak.MiB, settle_timeout_s=30)


def _ref(name: str, server: Server) -> _soak.NodeRef:
    assert server.process is not None
    return _soak.NodeRef(name, server.base_url, server.process.pid)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        if server.process is not None and server.process.poll() is None:
            stop(server, signal.SIGKILL)


async def _judge(deployment: _soak.Deployment) -> None:
    report = await _soak.soak(
        deployment, warmup_s=3, seconds=12, rates=RATES, thresholds=THRESHOLDS
    )
    text = report.text(THRESHOLDS)
    print(text)
    tally = report.tally
    assert tally.identified > 0 and tally.subscribed > 0, text
    assert tally.messages_received > 0 and tally.rest_publishes > 0, text
    assert tally.tokens_deleted == tally.tokens_created > 0, text
    assert tally.error_count == 0, text
    failed = [c.line() for c in report.checks if not c.ok]
    assert not failed, text


@pytest.mark.timeout(120)
async def test_soak_one_node_on_sqlite(tmp_path: Path, servers: list[Server]) -> None:
    servers.append(launch(tmp_path / "data", "--log-level", "warning"))
    node = servers[0]
    await _judge(_soak.Deployment("one node, SQLite", [_ref("node", node)], *_credentials(node)))


@pytest.mark.timeout(120)
async def test_soak_two_nodes_on_redis(
    redis_server: RedisServer, redis_url: str, tmp_path: Path, servers: list[Server]
) -> None:
    servers.append(launch(tmp_path / "a", "--redis", redis_url, "--log-level", "warning"))
    creds = _credentials(servers[0])
    servers.append(
        launch(tmp_path / "b", "--redis", redis_url, "--log-level", "warning", credentials=creds)
    )
    refs = [_ref("node-a", servers[0]), _ref("node-b", servers[1])]
    await _judge(
        _soak.Deployment("2-node cluster on Redis", refs, *creds, redis_port=redis_server.port)
    )


def _credentials(server: Server) -> tuple[str, str]:
    return server.project_id, server.project_token
