"""``rediss://``: the broker's own subscription and the raw pipeline (redis_pool/wire.py)
over TLS to a real redis-server with a certificate made for the test, checked against it."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker.test_subscription import Publishers, listening_broker
from tests.conftest import free_port, wait_for_port
from tests.store.test_rawpipeline import Feed, open_store

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server that speaks TLS only; the URL, its CA the server's own certificate."""
    if shutil.which("openssl") is None or shutil.which("redis-server") is None:
        pytest.skip("openssl or redis-server is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file",
         str(cert), "--tls-auth-clients", "no", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port)
        yield f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"
    finally:
        proc.kill()
        proc.wait()


async def test_events_and_publish_scripts_over_tls(tls_redis: str) -> None:
    async with listening_broker(tls_redis, ["a"]) as (broker, recorder):
        publishers = Publishers(tls_redis, ["a"])
        publishers.start(count=50)
        await publishers.wait()
        while recorder.last("a") < 49:
            await asyncio.sleep(0.02)
        assert recorder.seen["a"] == list(range(50))
        assert broker.connected
    store = await open_store(tls_redis)
    try:
        feed = await Feed.make(store, tls_redis)
        positions = await asyncio.gather(*(feed.publish(n) for n in range(50)))
        assert sorted(p.offset for p in positions if p is not None) == list(range(1, 51))
    finally:
        await store.close()
