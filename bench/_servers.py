"""Server processes of a run: started on a free port of 127.0.0.1, always stopped.

``ServerProc`` is one server (its argv, port, log, temporary directory, and the extra processes
whose CPU counts as its own); ``Servers`` stops every server a run started, on success, on error
and on Ctrl-C/SIGTERM; ``die_with_parent`` covers a benchmark that is killed outright.
``start_redis`` gives a run its own ``redis-server`` that keeps nothing on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _procs import BENCH_DIR, cpu_seconds, die_with_parent, process_tree

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProc:
    """One server process of a benchmark run; ``stop()`` always kills it."""

    name: str
    argv: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = BENCH_DIR
    ready_text: str | None = None
    """Text the server prints to stdout once it listens (else: wait for the port)."""
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    tmpdir: Path | None = None
    extra_pids: list[int] = field(default_factory=list)
    """Processes whose CPU counts as this server's (its own Redis, for instance)."""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        return [*process_tree(self.pid), *(p for e in self.extra_pids for p in process_tree(e))]

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def output(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def spawn(self) -> None:
        """Start the process (not waiting for it to listen)."""
        if self.tmpdir is None:
            self.tmpdir = Path(tempfile.mkdtemp(prefix="sb-bench-"))
        self.log_path = self.tmpdir / "server.log"
        env = {**os.environ, **self.env}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
                start_new_session=True,
            )

    async def start(self, timeout: float = 30.0) -> None:
        self.spawn()
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.output()[-3000:]}"
                )
            if self.ready_text is not None:
                if self.ready_text in self.output():
                    return
            elif await _port_open(self.port):
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(
            f"{self.name} did not start in {timeout:.0f} s:\n{self.output()[-3000:]}"
        )

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class Servers:
    """Every server started in a run, stopped together (``with Servers() as servers``)."""

    def __init__(self) -> None:
        self.started: list[ServerProc] = []

    def __enter__(self) -> Servers:
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    async def start(self, server: ServerProc) -> ServerProc:
        self.started.append(server)
        await server.start()
        return server

    def stop_all(self) -> None:
        for server in reversed(self.started):
            server.stop()
        self.started.clear()


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


async def start_redis(
    servers: Servers, binary: str = "redis-server", extra: tuple[str, ...] = ()
) -> ServerProc:
    """A fresh ``redis-server`` on a free port of 127.0.0.1, keeping nothing on disk;
    ``extra``: more of its options."""
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="sb-bench-redis-"))
    server = ServerProc(
        "redis-server",
        [
            binary,
            "--port",
            str(port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
            *extra,
        ],
        port,
        tmpdir=tmp,
    )
    return await servers.start(server)
