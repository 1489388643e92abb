"""Webhooks (beyond Hop): the app's URL told of tokens, channels and messages, signed.

::

    hub (attach/detach, join/leave) ──► Webhooks.occupancy_changed ─┐   (no await, no I/O)
    service (publish)               ──► Webhooks.message_published ─┤
                                                                     ▼
                              intake task: the project's configuration (cached 1 s)
                              decides what is wanted; occupancy goes through the queue's
                              counting (cluster-wide on Redis), messages straight in
                                                                     ▼
                 queue (LocalQueue in-process | RedisQueue: a stream, one consumer group)
                                                                     ▼
                 Sender: signed POSTs, retried with backoff, each attempt logged

- ``config``: what a project's configuration holds; ``settings``: reading and changing
  it; ``events``: the body a receiver gets; ``queue``: where events wait and how a
  cluster makes each one once; ``sender``: delivery and the subscribe hook.
- Nothing here runs on the fan-out path: the hooks append to a list and return.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec

from switchboard.server.aio import cancel_and_wait
from switchboard.server.models import Project, Token
from switchboard.server.webhooks.config import EventType, WebhookConfig
from switchboard.server.webhooks.events import WebhookEvent, new_event_id
from switchboard.server.webhooks.queue import Change, EventQueue, LocalQueue, now_ms
from switchboard.server.webhooks.sender import Sender, SenderOptions
from switchboard.server.webhooks.settings import WebhookSettings

__all__ = ["EventType", "SenderOptions", "WebhookConfig", "WebhookSettings", "Webhooks"]

log = logging.getLogger("switchboard.webhooks")

MAX_INTAKE = 100_000
"""Changes and messages waiting for the intake task; past it they are dropped and counted
(a store that stopped answering must not grow memory without bound)."""


class Webhooks:
    """See the module docstring."""

    def __init__(
        self, settings: WebhookSettings, queue: EventQueue, options: SenderOptions
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.sender = Sender(queue, settings, options)
        self._changes: list[Change] = []
        self._messages: list[WebhookEvent] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    @classmethod
    def local(cls, settings: WebhookSettings, options: SenderOptions) -> Webhooks:
        return cls(settings, LocalQueue(), options)

    def stats(self) -> dict[str, int]:
        dropped = self.dropped + getattr(self.queue, "dropped", 0)
        return {**self.sender.stats(), "dropped": dropped, "queued": self.queue.pending()}

    async def start(self) -> None:
        await self.queue.start()
        await self.sender.start()
        self._task = asyncio.create_task(self._intake())

    async def stop(self, grace: float) -> None:
        """Hand what the intake holds to the queue, let the sender send what this node
        queued or holds (the offline and vacated events of the sockets a shutdown just
        closed, first of all), both within ``grace``, then stop."""
        if self._task is not None:
            drained = asyncio.ensure_future(self._drained())
            await asyncio.wait([drained], timeout=grace)
            drained.cancel()
            await cancel_and_wait([self._task])
        await self.sender.stop()
        await self.queue.stop()

    async def _drained(self) -> None:
        while self._changes or self._messages or not self._idle.is_set():
            self._wake.set()
            await asyncio.sleep(0.01)
        # Polled: two objects' states, once, at shutdown (an event each would cost the
        # hot path a set() per change).
        while self.queue.pending() or self.sender.busy:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    # The hooks: called from the hub and the service, never awaiting.

    def occupancy_changed(self, project_id: str, kind: str, subject: str, delta: int) -> None:
        """A token's first (+1) or last (-1) connection on this node (``kind`` ``t``), or
        a channel's first or last subscriber here (``c``)."""
        known = self.settings.peek(project_id)
        if known is None or (isinstance(known, WebhookConfig) and not known.wants_occupancy):
            return
        if len(self._changes) >= MAX_INTAKE:
            self.dropped += 1
            return
        self._changes.append(Change(project_id, kind, subject, delta))
        self._wake.set()

    def message_published(
        self,
        project_id: str,
        channel_id: str,
        event: str,
        data: msgspec.Raw,
        *,
        source: str,
        token_id: str | None = None,
        offset: int | None = None,
    ) -> None:
        # The common case, a project that wants no message events, costs a dict lookup:
        # the event is built only when it may be wanted.
        known = self.settings.peek(project_id)
        if known is None or (
            isinstance(known, WebhookConfig) and not known.wants(EventType.MESSAGE_PUBLISHED)
        ):
            return
        if len(self._messages) >= MAX_INTAKE:
            self.dropped += 1
            return
        fields: dict[str, object] = {
            "channel_id": channel_id,
            "event": event,
            "data": data,
            "source": source,
        }
        if token_id is not None:
            fields["token_id"] = token_id
        if offset is not None:
            fields["offset"] = offset
        self._messages.append(
            WebhookEvent(
                new_event_id(),
                EventType.MESSAGE_PUBLISHED,
                project_id,
                now_ms(),
                msgspec.Raw(msgspec.json.encode(fields)),
            )
        )
        self._wake.set()

    async def _intake(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            changes, self._changes = self._changes, []
            messages, self._messages = self._messages, []
            if not changes and not messages:
                continue
            self._idle.clear()
            try:
                await self._take_in(changes, messages)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The store or Redis is down: these are lost (counted), later ones are not.
                self.dropped += len(changes) + len(messages)
                log.warning(
                    "webhook events dropped",
                    extra={"error": str(exc), "events": len(changes) + len(messages)},
                )
            finally:
                self._idle.set()

    async def _take_in(self, changes: list[Change], messages: list[WebhookEvent]) -> None:
        wanted: dict[str, WebhookConfig | None] = {}
        for project_id in {c.project_id for c in changes} | {m.project_id for m in messages}:
            wanted[project_id] = await self.settings.get(project_id)
        occupancy = [c for c in changes if (cfg := wanted[c.project_id]) and cfg.wants_occupancy]
        published = [m for m in messages if (cfg := wanted[m.project_id]) and cfg.wants(m.type)]
        if occupancy:
            await self.queue.apply(occupancy)
        if published:
            await self.queue.put(published)

    # The subscribe hook.

    async def authorize(
        self, project: Project, channel_id: str, token: Token, connection_id: str
    ) -> bool:
        """Ask the project's authorize_url whether ``token`` may subscribe to the private
        ``channel_id`` it was not granted; False when there is no hook or it says no."""
        config = await self.settings.get(project.id)
        if config is None or config.authorize_url is None:
            return False
        event_id = new_event_id()
        body = msgspec.json.encode(
            {
                "id": event_id,
                "type": "subscribe.authorize",
                "project_id": project.id,
                "data": {
                    "channel_id": channel_id,
                    "token_id": token.id,
                    "token_state": token.state,
                    "connection_id": connection_id,
                },
            }
        )
        return await self.sender.authorize(config, project.id, body, event_id)
