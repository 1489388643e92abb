"""Sending webhooks: signed POSTs, retried with backoff up to a bound, each attempt logged.

A sender never runs on the fan-out path: it takes events from the queue in its own
task and sends up to ``concurrency`` at once, so a slow or dead receiver delays only
other webhooks. An event is retried on any answer but 2xx and on any network error or
timeout, ``retries`` times, waiting ``retry_base_s`` times 2 to the n (with jitter, at most 60 s)
in between; then it is given up on. Every attempt goes to the project's delivery log.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass

import aiohttp

from switchboard import __version__
from switchboard.server.aio import cancel_and_wait
from switchboard.server.clock import now_iso
from switchboard.server.webhooks.config import WebhookConfig
from switchboard.server.webhooks.queue import EventQueue, Queued
from switchboard.server.webhooks.settings import WebhookSettings
from switchboard.webhooks import SIGNATURE_HEADER, signature_header

log = logging.getLogger("switchboard.webhooks")


@dataclass(frozen=True, slots=True)
class SenderOptions:
    timeout_s: float = 5.0
    """Per attempt: connect, send, and the whole answer."""
    retries: int = 5
    retry_base_s: float = 1.0
    concurrency: int = 16
    authorize_timeout_s: float = 3.0
    """The subscribe hook's bound: the SUBSCRIBE waits for it."""

    @property
    def worst_case_s(self) -> float:
        """The longest one event can take, every attempt timing out."""
        waits = sum(min(60.0, self.retry_base_s * 2.0**n) * 1.25 for n in range(self.retries))
        return (self.retries + 1) * self.timeout_s + waits


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int | None
    error: str | None
    duration_ms: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Sender:
    """See the module docstring."""

    def __init__(
        self, queue: EventQueue, settings: WebhookSettings, options: SenderOptions
    ) -> None:
        self.queue = queue
        self.settings = settings
        self.options = options
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(options.concurrency)
        self.delivered = 0
        self.failed = 0
        self.retried = 0
        self.skipped = 0
        self.authorized = 0
        self.refused = 0

    def stats(self) -> dict[str, int]:
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "retried": self.retried,
            "in_flight": len(self._running),
            "authorize_granted": self.authorized,
            "authorize_refused": self.refused,
        }

    @property
    def busy(self) -> bool:
        """Sending or waiting to retry something."""
        return bool(self._running)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": f"Switchboard-Webhooks/{__version__}"},
            timeout=aiohttp.ClientTimeout(total=self.options.timeout_s),
        )
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop taking events; what is being sent is abandoned (in a cluster another
        node claims it later; on one node it is lost, and the log says so)."""
        tasks = [self._task] if self._task is not None else []
        await cancel_and_wait(tasks + list(self._running))
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            try:
                items = await self.queue.take()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("webhook queue unavailable", extra={"error": str(exc)})
                await asyncio.sleep(1.0)
                continue
            for item in items:
                await self._slots.acquire()
                task = asyncio.create_task(self._deliver(item))
                self._running.add(task)
                task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slots.release()

    async def _deliver(self, item: Queued) -> None:
        event = item.event
        try:
            config = await self.settings.get(event.project_id)
            if config is None or not config.wants(event.type):
                self.skipped += 1
            else:
                await self._send_with_retries(config, item)
            await self.queue.done(item)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook delivery failed", extra={"event": event.id})

    async def _send_with_retries(self, config: WebhookConfig, item: Queued) -> None:
        event = item.event
        body = event.body()
        attempts = self.options.retries + 1
        for attempt in range(1, attempts + 1):
            # The configuration may have changed (or gone) while this event waited.
            if attempt > 1:
                fresh = await self.settings.get(event.project_id)
                if fresh is None or not fresh.wants(event.type) or fresh.url is None:
                    return
                config = fresh
            assert config.url is not None
            outcome = await self.post(
                config.url,
                config.secret,
                body,
                {"X-Switchboard-Event": event.type.value, "X-Switchboard-Event-Id": event.id},
                attempt,
            )
            last = attempt == attempts
            status = "delivered" if outcome.ok else ("failed" if last else "retrying")
            await self._log(
                config, event.project_id, event.id, event.type.value, attempt, outcome, status
            )
            if outcome.ok:
                self.delivered += 1
                return
            if last:
                self.failed += 1
                log.warning(
                    "webhook given up",
                    extra={"event": event.id, "attempts": attempt, "error": outcome.error},
                )
                return
            self.retried += 1
            wait = min(60.0, self.options.retry_base_s * 2 ** (attempt - 1))
            await asyncio.sleep(wait * random.uniform(1.0, 1.25))

    async def post(
        self, url: str, secret: str, body: bytes, headers: dict[str, str], attempt: int
    ) -> Outcome:
        """One signed POST; never raises for the receiver's faults."""
        assert self._session is not None
        started = time.perf_counter()
        all_headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(secret, body),
            "X-Switchboard-Attempt": str(attempt),
            **headers,
        }
        status: int | None = None
        error: str | None = None
        try:
            async with self._session.post(
                url, data=body, headers=all_headers, allow_redirects=False
            ) as response:
                await response.read()
                status = response.status
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
        except TimeoutError:
            error = f"no answer within {self.options.timeout_s:g} s"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        return Outcome(status, error, round((time.perf_counter() - started) * 1000, 1))

    async def _log(
        self,
        config: WebhookConfig,
        project_id: str,
        event_id: str,
        event_type: str,
        attempt: int,
        outcome: Outcome,
        status: str,
    ) -> None:
        entry: dict[str, object] = {
            "event_id": event_id,
            "type": event_type,
            "url": config.authorize_url if event_type == "subscribe.authorize" else config.url,
            "attempt": attempt,
            "status": status,
            "response_status": outcome.status,
            "error": outcome.error,
            "duration_ms": outcome.duration_ms,
            "at": now_iso(),
        }
        try:
            await self.settings.record(project_id, entry)
        except Exception as exc:  # the log is best effort: never lose the event for it
            log.warning("webhook log unavailable", extra={"error": str(exc)})

    async def authorize(
        self, config: WebhookConfig, project_id: str, body: bytes, event_id: str
    ) -> bool:
        """Ask ``config.authorize_url``; True on a 2xx within the hook's bound."""
        assert config.authorize_url is not None
        try:
            outcome = await asyncio.wait_for(
                self.post(
                    config.authorize_url,
                    config.secret,
                    body,
                    {
                        "X-Switchboard-Event": "subscribe.authorize",
                        "X-Switchboard-Event-Id": event_id,
                    },
                    1,
                ),
                self.options.authorize_timeout_s,
            )
        except TimeoutError:
            outcome = Outcome(
                None,
                f"no answer within {self.options.authorize_timeout_s:g} s",
                self.options.authorize_timeout_s * 1000,
            )
        granted = outcome.ok
        if granted:
            self.authorized += 1
        else:
            self.refused += 1
        await self._log(
            config,
            project_id,
            event_id,
            "subscribe.authorize",
            1,
            outcome,
            "granted" if granted else "refused",
        )
        return granted
