"""A real Redis master, its replica and three Sentinels, on free ports in a temp dir."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.cluster.slow_link import ThreadedLink, slow_link_in_a_thread
from tests.conftest import free_port

MASTER = "sbmaster"


@dataclass
class SentinelSet:
    master_port: int
    replica_ports: list[int]
    sentinel_ports: list[int]
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    replication: ThreadedLink | None = None

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def master_address(self) -> tuple[str, int] | None:
        """The master the Sentinels name now (asked of the first that answers)."""
        for port in self.sentinel_ports:
            try:
                with redis.Redis(port=port, socket_timeout=0.5) as client:
                    found = client.execute_command("SENTINEL", "get-master-addr-by-name", MASTER)
            except redis.RedisError:
                continue
            if found:
                return found[0].decode(), int(found[1])
        return None

    def kill_master(self) -> None:
        """``kill -9``; what the delayed replication link still held is lost with it."""
        self.procs[self.master_port].kill()
        if self.replication is not None:
            self.replication.cut()

    def freeze_master(self) -> None:
        """SIGSTOP: its sockets stay open and silent, as behind a network partition."""
        self.procs[self.master_port].send_signal(signal.SIGSTOP)


def _wait_up(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            with redis.Redis(port=port, socket_connect_timeout=0.2) as client:
                client.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"redis-server on {port} did not start") from None
            time.sleep(0.05)


def _redis(port: int, directory: Path, *extra: str) -> subprocess.Popen[bytes]:
    # A directory each: a replica's full sync writes its RDB file there.
    directory = directory / str(port)
    directory.mkdir()
    proc = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--dir", str(directory), *extra),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_up(port, proc)
    return proc


def _wait_synced(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    with redis.Redis(port=port) as client:
        while client.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the replica never synced")
            time.sleep(0.05)


@contextmanager
def sentinel_set(
    directory: Path, replicas: int = 1, replication_delay: float = 0.0
) -> Iterator[SentinelSet]:
    """Master, replicas and three Sentinels (quorum 2, down after 1 s), all stopped after.

    ``replication_delay``: the replicas reach the master through a link delayed this
    long each way, so a write reaches them that much after the master acknowledged it.
    """
    distinct: set[int] = set()
    while len(distinct) < 1 + replicas + 3:  # free_port may give a port twice in a row
        distinct.add(free_port())
    chosen = list(distinct)
    ports = SentinelSet(chosen[0], chosen[1 : 1 + replicas], chosen[1 + replicas :])
    with contextlib.ExitStack() as stack:
        yield from _started(ports, directory, replication_delay, stack)


def _started(
    ports: SentinelSet, directory: Path, delay: float, stack: contextlib.ExitStack
) -> Iterator[SentinelSet]:
    try:
        ports.procs[ports.master_port] = _redis(ports.master_port, directory)
        upstream = ports.master_port
        if delay:
            ports.replication = stack.enter_context(slow_link_in_a_thread(upstream, delay))
            upstream = ports.replication.port
        for port in ports.replica_ports:
            ports.procs[port] = _redis(port, directory, "--replicaof", "127.0.0.1", str(upstream))
            _wait_synced(port, ports.procs[port])
        for port in ports.sentinel_ports:
            conf = directory / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {ports.master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\n"
                f"sentinel failover-timeout {MASTER} 5000\n"
            )
            proc = subprocess.Popen(
                ["redis-server", str(conf), "--sentinel"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            ports.procs[port] = proc
            _wait_up(port, proc)
        deadline = time.monotonic() + 10
        while ports.master_address() != ("127.0.0.1", ports.master_port):
            assert time.monotonic() < deadline, "the Sentinels never named the master"
            time.sleep(0.1)
        yield ports
    finally:
        for proc in ports.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait()
