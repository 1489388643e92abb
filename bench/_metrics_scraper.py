"""A Prometheus stand-in: scrapes a node's ``/metrics`` every second and times it (issue 11).

The ``switchboard-metrics`` target (``_targets.py``) is a node started with ``--metrics``;
starting it starts a ``Scraper`` here, and ``fanout.py`` reports on every scraper at the end
(``SCRAPERS``) and stops them (``stop_scraping``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from _procs import cpu_seconds
from _servers import HOST

SCRAPE_INTERVAL_S = 1.0


@dataclass
class Scraper:
    """GETs ``/metrics`` every :data:`SCRAPE_INTERVAL_S`, as Prometheus would, and times it."""

    port: int
    seconds: list[float] = field(default_factory=list)
    failed: int = 0
    body_bytes: int = 0
    cpu_per_scrape: dict[int, float] = field(default_factory=dict)
    """Server CPU seconds per scrape with N sockets connected and no traffic, by N."""

    async def scrape(self) -> None:
        request = f"GET /metrics HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
        t0 = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection(HOST, self.port)
            writer.write(request.encode())
            answer = await reader.read()  # to the server's close
            writer.close()
        except OSError:
            self.failed += 1
            return
        if answer.startswith(b"HTTP/1.1 200"):
            self.seconds.append(time.perf_counter() - t0)
            self.body_bytes = len(answer)
        else:
            self.failed += 1

    async def run(self) -> None:
        while True:
            await asyncio.sleep(SCRAPE_INTERVAL_S)
            await self.scrape()

    async def measure_cpu(self, n: int, pids: list[int], count: int = 100) -> None:
        """The server's CPU per scrape, back to back, with its N sockets idle."""
        cpu0 = cpu_seconds(pids)
        for _ in range(count):
            await self.scrape()
        self.cpu_per_scrape[n] = (cpu_seconds(pids) - cpu0) / count


SCRAPERS: list[Scraper] = []
_SCRAPE_TASKS: list[asyncio.Task[None]] = []


def start_scraping(port: int) -> Scraper:
    """A scraper of the node on ``port``, scraping from now on until ``stop_scraping``."""
    scraper = Scraper(port)
    SCRAPERS.append(scraper)
    _SCRAPE_TASKS.append(asyncio.create_task(scraper.run()))
    return scraper


def stop_scraping() -> None:
    for task in _SCRAPE_TASKS:
        task.cancel()
