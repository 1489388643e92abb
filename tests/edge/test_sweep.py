"""The gateway's sweep over real sockets: each socket closed at its deadline, probed once
per interval, or kept open, with many sockets of mixed behaviour at once; and the
deadline wheel (edge/deadlines.py) left empty by sockets that closed."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import websockets
from websockets.asyncio.client import ClientConnection

from switchboard.server.edge.gateway import Gateway
from tests.conftest import Server, running_node

INTERVAL_S = 1.0
IDENTIFY_TIMEOUT_S = 2.0
GIVE_UP_S = INTERVAL_S * 1.5 + 5  # docs/protocol.md: no frame for this long closes 4007
GRANULARITY_S = 1.0  # the sweep wakes once a second
SLACK_S = 1.5  # a loaded shared machine (others run benchmarks)
EARLY_S = 0.05  # the client's clock reading vs the server's


@dataclass
class Client:
    kind: str
    ws: ClientConnection
    opened_at: float
    sent: list[float] = field(default_factory=list)
    """When this client sent each frame (after the handshake)."""
    probes: list[float] = field(default_factory=list)
    answers: list[float] = field(default_factory=list)
    closed_at: float | None = None
    code: int | None = None
    answer_probes: bool = False

    async def send(self, frame: dict[str, object]) -> None:
        self.sent.append(time.monotonic())
        await self.ws.send(json.dumps(frame))

    async def read(self) -> None:
        """Every frame until the close: probes noted (and answered if asked), the close code."""
        try:
            async for data in self.ws:
                frame = json.loads(data)
                if frame["op"] == 3:
                    self.probes.append(time.monotonic())
                    if self.answer_probes:
                        await self.send({"op": 3, "d": {"tag": frame["d"]["tag"]}})
                        self.answers.append(self.sent[-1])
        except websockets.ConnectionClosed:
            pass
        self.closed_at = time.monotonic()
        rcvd = self.ws.protocol.close_rcvd
        self.code = rcvd.code if rcvd is not None else None


async def behave(client: Client, project_id: str, rng: random.Random) -> None:
    kind = client.kind
    if kind == "mute":  # never identifies
        return
    await client.send({"op": 2, "d": {"project_id": project_id}})
    if kind in ("silent", "answering"):
        return
    if kind == "chatty":  # always well within the interval: never probed
        while client.closed_at is None:
            await asyncio.sleep(rng.uniform(0.1, 0.5))
            await client.send({"op": 3})
    elif kind == "irregular":  # gaps past the interval, never past the give-up time
        while client.closed_at is None:
            await asyncio.sleep(rng.uniform(0.2, 3.5))
            await client.send({"op": 3})
    elif kind == "goes_quiet":  # frames for a while, then silence
        until = time.monotonic() + rng.uniform(1.0, 4.0)
        while time.monotonic() < until:
            await asyncio.sleep(rng.uniform(0.1, 0.8))
            await client.send({"op": 3})
    elif kind == "quits":  # closes by itself while the others run
        await asyncio.sleep(rng.uniform(0.5, 5.0))
        await client.ws.close()


def check_probes_on_time(client: Client) -> None:
    """No probe before the interval of silence, none much after it."""
    for probe in client.probes:
        last = max(t for t in client.sent if t <= probe)
        assert probe - last >= INTERVAL_S - EARLY_S, (client.kind, probe - last)


def check(client: Client) -> None:
    kind = client.kind
    check_probes_on_time(client)
    if kind == "mute":
        assert client.code == 4002, client
        assert client.closed_at is not None
        waited = client.closed_at - client.opened_at
        assert (
            IDENTIFY_TIMEOUT_S - EARLY_S <= waited <= IDENTIFY_TIMEOUT_S + GRANULARITY_S + SLACK_S
        )
        assert client.probes == []
    elif kind in ("silent", "goes_quiet"):
        assert client.code == 4007, client
        assert client.closed_at is not None
        waited = client.closed_at - client.sent[-1]
        assert GIVE_UP_S - EARLY_S <= waited <= GIVE_UP_S + GRANULARITY_S + SLACK_S, waited
        # One probe, an interval into the silence; unanswered, it is not sent again.
        assert len(client.probes) == 1, client.probes
        assert client.probes[0] - client.sent[-1] <= INTERVAL_S + GRANULARITY_S + SLACK_S
    elif kind == "answering":
        assert client.closed_at is None, client
        # A probe per interval: the next one an interval after each answer.
        assert len(client.probes) >= 3, client.probes
        for answer, probe in zip(client.answers, client.probes[1:], strict=False):
            assert INTERVAL_S - EARLY_S <= probe - answer <= INTERVAL_S + GRANULARITY_S + SLACK_S
    elif kind == "chatty":
        assert client.closed_at is None and client.probes == [], client
    elif kind == "irregular":
        assert client.closed_at is None, client
    elif kind == "quits":
        assert client.code == 1000, client


def wheel_of(server: Server) -> Gateway:
    assert server.node is not None
    return server.node.gateway


async def open_client(server: Server, kind: str) -> Client:
    ws = await websockets.connect(server.ws_url, ping_interval=None, max_size=None)
    client = Client(kind, ws, time.monotonic(), answer_probes=kind == "answering")
    return client


async def test_mixed_sockets_each_closed_at_its_deadline_or_kept(tmp_path: Path) -> None:
    kinds = ["mute", "silent", "answering", "chatty", "irregular", "goes_quiet", "quits"]
    rng = random.Random(21)
    async with running_node(
        tmp_path / "d",
        heartbeat_interval_ms=int(INTERVAL_S * 1000),
        identify_timeout_s=IDENTIFY_TIMEOUT_S,
    ) as server:
        gateway = wheel_of(server)
        clients = [await open_client(server, kind) for kind in kinds * 6]
        readers = [asyncio.create_task(c.read()) for c in clients]
        behaviours = [
            asyncio.create_task(behave(c, server.project_id, random.Random(rng.random())))
            for c in clients
        ]
        # Long enough for every deadline: the last goes_quiet falls silent 4 s in.
        await asyncio.sleep(4.0 + GIVE_UP_S + GRANULARITY_S + SLACK_S)
        for c in clients:
            check(c)
        kept = [c for c in clients if c.closed_at is None]
        assert len(kept) == 3 * 6
        # The closed sockets left the wheel; the kept ones are all in it.
        for _ in range(50):
            if gateway.stats()["sockets"] == len(kept):
                break
            await asyncio.sleep(0.1)
        assert gateway.stats()["sockets"] == len(kept)
        assert gateway._live is not None and len(list(gateway._live)) == len(kept)
        assert server.node is not None
        await server.node.stop()
        await asyncio.wait_for(asyncio.gather(*readers), 10)
        assert {c.code for c in kept} == {1001}  # shutdown closes every socket
        for task in behaviours:
            task.cancel()
        await asyncio.gather(*behaviours, return_exceptions=True)


async def _open_and_close(server: Server, i: int) -> None:
    """A raw socket: handshake, then (some) IDENTIFY, then gone, cleanly or not."""
    port = int(server.base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await reader.readuntil(b"\r\n\r\n")
    if i % 3:
        payload = json.dumps({"op": 2, "d": {"project_id": server.project_id}}).encode()
        # A client frame is masked; a zero mask leaves the payload as it is.
        writer.write(bytes((0x81, 0x80 | len(payload), 0, 0, 0, 0)) + payload)
        await reader.read(1)  # HELLO at least
    if i % 2:
        writer.write(b"\x88\x82\x00\x00\x00\x00\x03\xe8")  # a close frame, 1000
    writer.close()
    await writer.wait_closed()


async def test_ten_thousand_sockets_opened_and_closed_leave_the_wheel_empty(
    tmp_path: Path,
) -> None:
    async with running_node(tmp_path / "d") as server:
        gateway = wheel_of(server)
        for start in range(0, 10_000, 250):
            await asyncio.gather(*(_open_and_close(server, i) for i in range(start, start + 250)))
        for _ in range(100):
            if gateway.stats()["sockets"] == 0:
                break
            await asyncio.sleep(0.1)
        assert gateway.stats()["sockets"] == 0
        assert gateway._live is not None and list(gateway._live) == []
        assert gateway.stats()["sockets_accepted"] == 10_000
