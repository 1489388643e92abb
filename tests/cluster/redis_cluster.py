"""A real Redis Cluster: six ``redis-server --cluster-enabled yes`` (three masters, a
replica each) on free ports in a temp dir, made with ``redis-cli --cluster create``.

Helpers for the faults: kill -9 (or freeze) a master, wait for its replica's promotion, move slots
(``redis-cli --cluster reshard``), empty every master between tests.
"""

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

from tests.conftest import free_port

NODE_TIMEOUT_MS = 1000
"""How long a master may be silent before its replica takes over (Redis's default: 15 s)."""


@dataclass
class ClusterNodeInfo:
    node_id: str
    port: int
    master: bool
    alive: bool
    slots: int


@dataclass
class RedisClusterSet:
    ports: list[int]
    directory: Path
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    frozen: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return f"redis+cluster://{hosts}"

    def live_ports(self) -> list[int]:
        return [p for p, proc in self.procs.items() if proc.poll() is None and p not in self.frozen]

    def nodes(self) -> list[ClusterNodeInfo]:
        """``CLUSTER NODES`` as seen by the first live node."""
        for port in self.live_ports():
            try:
                with redis.Redis(port=port, socket_timeout=1) as client:
                    text = client.execute_command("CLUSTER", "NODES")
            except redis.RedisError:
                continue
            if isinstance(text, bytes):
                text = text.decode()
            return [_node(line) for line in str(text).splitlines() if line.strip()]
        raise RuntimeError("no cluster node answers")

    def masters(self) -> list[ClusterNodeInfo]:
        return sorted(
            (n for n in self.nodes() if n.master and n.alive and n.slots),
            key=lambda n: n.port,
        )

    def kill_master(self, port: int | None = None) -> int:
        """``kill -9`` a master (the first by port if none is named); returns its port."""
        victim = port if port is not None else self.masters()[0].port
        self.procs[victim].kill()
        self.procs[victim].wait()
        return victim

    def freeze_master(self, port: int) -> None:
        """SIGSTOP: its sockets stay open and silent, as behind a network partition."""
        self.procs[port].send_signal(signal.SIGSTOP)
        self.frozen.add(port)

    def wait_promoted(self, old_master: int, timeout: float = 20.0) -> float:
        """Wait until a live master serves every slot again (the dead one's replica was
        promoted) and every live node says ``cluster_state:ok``; return when (monotonic)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            masters = self.masters()
            covered = sum(m.slots for m in masters)
            if old_master not in {m.port for m in masters} and covered == 16384 and self._ok():
                return time.monotonic()
            time.sleep(0.05)
        raise RuntimeError("no replica was promoted in time")

    def reshard(self, slots: int, source: int | None = None, target: int | None = None) -> None:
        """Move ``slots`` slots between two masters (``redis-cli --cluster reshard``)."""
        masters = self.masters()
        src = next(m for m in masters if source is None or m.port == source)
        dst = next(m for m in masters if m is not src and (target is None or m.port == target))
        subprocess.run(
            [
                *("redis-cli", "--cluster", "reshard", f"127.0.0.1:{src.port}"),
                *("--cluster-from", src.node_id, "--cluster-to", dst.node_id),
                *("--cluster-slots", str(slots), "--cluster-yes"),
                *("--cluster-pipeline", "100"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )

    def flush(self) -> None:
        """Empty every master (their replicas follow)."""
        for master in self.masters():
            with redis.Redis(port=master.port) as client:
                client.flushall()

    def _ok(self) -> bool:
        """Every live node says ok, and every live replica is in sync with its master."""
        for port in self.live_ports():
            try:
                with redis.Redis(port=port, socket_timeout=1) as client:
                    info = client.execute_command("CLUSTER", "INFO")
                    replication = client.info("replication")
            except redis.RedisError:
                return False
            text = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_state:ok" not in text:
                return False
            if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                return False
        return True

    def wait_ok(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not (self._ok() and sum(m.slots for m in self.masters()) == 16384):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster never said ok")
            time.sleep(0.05)


def _node(line: str) -> ClusterNodeInfo:
    parts = line.split()
    port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
    flags = parts[2].split(",")
    slots = 0
    for spec in parts[8:]:
        if spec.startswith("["):
            continue  # a slot being migrated
        first, _, last = spec.partition("-")
        slots += int(last or first) - int(first) + 1
    alive = "fail" not in flags and "fail?" not in flags and parts[7] == "connected"
    return ClusterNodeInfo(parts[0], port, "master" in flags, alive, slots)


def _start_node(port: int, bus_port: int, directory: Path) -> subprocess.Popen[bytes]:
    node_dir = directory / str(port)
    node_dir.mkdir(parents=True)
    proc = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
            *("--cluster-enabled", "yes", "--cluster-port", str(bus_port)),
            *("--cluster-config-file", f"nodes-{port}.conf"),
            *("--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
            # A replica syncs at once (default: after 5 s), so a master killed right
            # after the cluster starts has a replica able to take over.
            *("--repl-diskless-sync-delay", "0"),
            *("--save", "", "--appendonly", "no", "--dir", str(node_dir)),
            *("--logfile", str(node_dir / "redis.log")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with redis.Redis(port=port, socket_connect_timeout=0.2) as client:
                client.ping()
            return proc
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"redis-server on {port} did not start") from None
            time.sleep(0.05)


@contextmanager
def redis_cluster(directory: Path, masters: int = 3) -> Iterator[RedisClusterSet]:
    """``masters`` masters with a replica each, all stopped after."""
    distinct: set[int] = set()
    while len(distinct) < masters * 4:  # a client port and a bus port per node
        distinct.add(free_port())
    chosen = list(distinct)
    ports, buses = chosen[: masters * 2], chosen[masters * 2 :]
    cluster = RedisClusterSet(ports, directory)
    try:
        for port, bus in zip(ports, buses, strict=True):
            cluster.procs[port] = _start_node(port, bus, directory)
        subprocess.run(
            [
                *("redis-cli", "--cluster", "create"),
                *(f"127.0.0.1:{p}" for p in ports),
                *("--cluster-replicas", "1", "--cluster-yes"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        cluster.wait_ok()
        yield cluster
    finally:
        for proc in cluster.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
