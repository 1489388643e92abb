"""``switchboard serve --workers N``: N worker processes on one port, supervised.

One Python process uses one core. With ``--workers N`` the command becomes a supervisor:
it prepares the store (the first start's ``default`` project, whose token it prints
once, with the banner), then starts N ``switchboard serve`` processes with the same
options, each a node of the same cluster on the same Redis, each listening on the same
port with ``SO_REUSEPORT`` so that the kernel deals the connections out among them.

The supervisor restarts a worker that dies (logged with its exit code; one that dies
within a second of its start is restarted after a second, so a crash loop does not
spin), and on SIGTERM or SIGINT sends SIGTERM to every worker, waits for their drains
(up to twice ``--shutdown-grace`` and a few seconds), and exits 0. ``N > 1`` needs
``--redis``: a worker is a node of a cluster, and the embedded SQLite store belongs to
one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time

from switchboard import __version__
from switchboard.exceptions import Conflict
from switchboard.server.config import Settings
from switchboard.server.node import offline_service, open_store

log = logging.getLogger("switchboard.workers")

_QUICK_DEATH_S = 1.0
"""A worker that dies this soon after its start is restarted only after this long."""


def worker_count(value: str) -> int:
    """``--workers``: a number of processes, or ``auto`` for one per core."""
    if value == "auto":
        return os.cpu_count() or 1
    count = int(value)
    if count < 1:
        raise ValueError("--workers must be at least 1, or auto")
    return count


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


async def _bootstrap(settings: Settings) -> list[str]:
    """Make the ``default`` project on an empty store, as a single node's first start
    does; the banner's lines about it (none if the store had projects)."""
    store = open_store(settings)
    await store.open()
    try:
        if await store.list_projects():
            return []
        try:
            project, secret = await offline_service(store, settings).create_project("default")
        except Conflict:
            return []  # another supervisor of the cluster made it first, and printed it
        return [
            "",
            'First start on an empty store: created the project "default".',
            f"  Project ID:     {project.id}",
            f"  Project token:  {secret}",
            "  The project token is shown once. Keep it secret; it is stored only as a hash.",
        ]
    finally:
        await store.close()


def banner(settings: Settings, workers: int, store: str, first_start: list[str]) -> str:
    url = settings.base_url
    lines = [
        f"Switchboard {__version__} is running with {workers} workers.",
        f"  REST API:   {url}/v1",
        f"  WebSocket:  {url.replace('http', 'ws', 1)}/ws",
        f"  Console:    {url}/console",
        f"  Store:      {store}",
    ]
    return "\n".join(lines + first_start)


class Supervisor:
    """Starts, restarts and stops the workers (see the module docstring)."""

    def __init__(self, argv: list[str], workers: int, grace_s: float) -> None:
        self.argv = argv
        """The worker's command line: ``serve`` with this one's options."""
        self.workers = workers
        self.grace_s = grace_s
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.started_at: dict[int, float] = {}
        self.stopping = False

    def spawn(self, number: int, *, watch_start: bool = False) -> None:
        """Start worker ``number``; ``watch_start``: read its "ready" line (see :meth:`start`)."""
        out = subprocess.PIPE if watch_start else subprocess.DEVNULL
        self.procs[number] = subprocess.Popen([*self.argv, "--worker", str(number)], stdout=out)
        self.started_at[number] = time.monotonic()
        log.info("worker started", extra={"worker": number, "pid": self.procs[number].pid})

    def start(self) -> bool:
        """Start every worker and wait until each listens (its one line on stdout)."""
        for number in range(1, self.workers + 1):
            self.spawn(number, watch_start=True)
        for number, proc in self.procs.items():
            assert proc.stdout is not None
            if not proc.stdout.readline():
                log.error("worker failed to start", extra={"worker": number, "code": proc.wait()})
                self._drain()
                return False
        return True

    def run(self) -> int:
        """Supervise until SIGTERM or SIGINT; return the exit code (0 after a drain)."""
        while not self.stopping:
            self._restart_the_dead()
            time.sleep(0.1)
        return self._drain()

    def _restart_the_dead(self) -> None:
        for number, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None or self.stopping:
                continue
            lived = time.monotonic() - self.started_at[number]
            log.warning("worker exited; restarting", extra={"worker": number, "code": code})
            if lived < _QUICK_DEATH_S:
                time.sleep(_QUICK_DEATH_S)
            if not self.stopping:
                self.spawn(number)

    def stop(self, signum: int, frame: object) -> None:
        """The signal handler: the supervising loop drains and returns."""
        self.stopping = True

    def _drain(self) -> int:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 2 * self.grace_s + 5
        for number, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker did not stop in time; killed", extra={"worker": number})
                proc.kill()
                proc.wait()
        log.info("stopped", extra={"workers": len(self.procs)})
        return 0


def supervise(settings: Settings, workers: int) -> int:
    """Prepare the store, print the banner, and run ``workers`` copies of this command
    (its own options, on ``settings.port``, chosen already if it was 0)."""
    first_start = asyncio.run(_bootstrap(settings))
    store = repr(open_store(settings))
    # The last --port given wins: each worker gets the port the banner shows.
    command = [sys.executable, "-m", "switchboard.server.cli", *sys.argv[1:]]
    command += ["--port", str(settings.port)]
    supervisor = Supervisor(command, workers, settings.shutdown_grace_s)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, supervisor.stop)
    if not supervisor.start():
        return 1
    print(banner(settings, workers, store, first_start), flush=True)
    return supervisor.run()
