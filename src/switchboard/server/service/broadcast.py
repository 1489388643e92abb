"""Sending a batch's messages: ``POST /v1/broadcast``, and the runs of ``publish`` and
``direct`` items of ``POST /v1/batch`` (``service/batch.py``).

What makes them cheap: the messages cost the store one call for every channel's append
and one for every token's existence (a script each on Redis, one group commit or query on
SQLite), and the broker one ``publish_many``, in which a broadcast's tokens are one
event (``DirectMessages``: docs/batch.md, "How a broadcast travels"). A broadcast's
tokens take a path of their own, with no object per token but its result.

Idempotency keys live in the store, so a retry reaching another node of the cluster
finds them: claimed before anything is done (a concurrent retry finds the key in
flight and gets ``in_progress``), answered after.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from operator import itemgetter

import msgspec

from switchboard.exceptions import APIError, InProgress, NotFound
from switchboard.server import ids
from switchboard.server.broker import events as ev
from switchboard.server.history import INBOX_KEY, StreamPosition
from switchboard.server.models import Project
from switchboard.server.service.batch_ops import (
    IDEMPOTENCY_TTL_S,
    IN_FLIGHT_TTL_S,
    Message,
    Result,
    channel_event,
    check_key,
    check_targets,
    direct_event,
    failed,
    in_bulk,
    position_data,
    succeeded,
)
from switchboard.server.service.channels import ChannelOperations
from switchboard.server.service.tokens import TokenOperations
from switchboard.server.store import IN_FLIGHT

Permits = Callable[[str], APIError | None]
"""The caller's permission for an ``op`` name: None if its project token may, else the
error that item gets (the REST layer knows the token's flags)."""

_encoder = msgspec.json.Encoder()

_success = itemgetter("success")

_NO_DATA: dict[str, object] = {}
"""A token's ``data`` without an inbox: one shared dict (never changed in place)."""


def in_progress(key: str) -> InProgress:
    return InProgress(
        f"a request with idempotency key {key[:64]!r} is still being carried out; "
        "retry later for its answer"
    )


class MessageSending(ChannelOperations, TokenOperations):
    """``POST /v1/broadcast``, and the messages of ``POST /v1/batch``."""

    async def broadcast(
        self,
        project: Project,
        message: Message,
        channels: list[str],
        tokens: list[str],
        *,
        permits: Permits,
        idempotency_key: str | None = None,
    ) -> Result:
        """Send ``message`` to every channel and token; the envelope's ``data``: one result
        per target (channels first), in the order given. Raises InvalidRequest (nothing
        sent) for a list over :data:`MAX_TARGETS`, a repeated target or a bad message,
        and InProgress while a request with the same key runs."""
        check_targets(channels, "channels")
        check_targets(tokens, "tokens")
        self._check_event(message.event)
        self._check_size(message.data, "message data")

        async def send() -> Result:
            return await self._broadcast(project, message, channels, tokens, permits)

        # Kept if anything was sent: a retry must not send it again. Nothing sent (every
        # target refused): the key is freed for a corrected retry.
        return await self.once(project, idempotency_key, send, keep=lambda a: a["succeeded"] > 0)

    async def once(
        self,
        project: Project,
        idempotency_key: str | None,
        run: Callable[[], Awaitable[Result]],
        *,
        keep: Callable[[Result], bool] = lambda answer: True,
    ) -> Result:
        """``run()``'s answer, carried out once per key (None: no key, just run it):
        a key answered within :data:`IDEMPOTENCY_TTL_S` gets that answer back with
        ``duplicate``; one still in flight raises InProgress. An answer ``keep`` refuses,
        or an exception, frees the key."""
        if idempotency_key is None:
            return await run()
        check_key(idempotency_key)
        [kept] = await self.store.claim_idempotency_keys(
            project.id, [idempotency_key], IN_FLIGHT_TTL_S
        )
        if kept == IN_FLIGHT:
            raise in_progress(idempotency_key)
        if kept is not None:
            return {**msgspec.json.decode(kept), "duplicate": True}
        answer: bytes | None = None
        try:
            result = await run()
            answer = _encoder.encode(result) if keep(result) else None
        finally:
            await self.store.finish_idempotency_keys(
                project.id, {idempotency_key: answer}, IDEMPOTENCY_TTL_S
            )
        return result

    async def _broadcast(
        self,
        project: Project,
        message: Message,
        channels: list[str],
        tokens: list[str],
        permits: Permits,
    ) -> Result:
        """The answer of a broadcast whose message and lists were checked: the channels
        as :meth:`send_messages` sends messages, the tokens as one event."""
        messages = [Message(c, None, message.event, message.data) for c in channels]
        results: list[Result | None] = [None] * len(messages)
        to_channels, _ = self._checked(messages, permits, results)
        answers: list[Result] = []
        refusal = permits("direct") if tokens else None
        try:
            events = await self._events(project, messages, to_channels, [], results)
            if refusal is None:
                answers, direct = await self._to_tokens(project, message, tokens)
                events += direct
            await self.broker.publish_many([e for _, e in events])
        except APIError as exc:  # the store or broker is away: none of them went
            results = [failed(exc) if r is None or r["success"] else r for r in results]
            answers = [
                {"token": t, **failed(exc)} if not answers or answers[i]["success"] else answers[i]
                for i, t in enumerate(tokens)
            ]
        else:
            self._sent(project, events)
        if refusal is not None:
            answers = [{"token": t, **failed(refusal)} for t in tokens]
        targets: list[Result] = [
            {"channel": c, **(r if r is not None else succeeded())}
            for c, r in zip(channels, results, strict=True)
        ]
        targets += answers
        ok = sum(map(_success, targets))
        return {"results": targets, "succeeded": ok, "failed": len(targets) - ok}

    async def _to_tokens(
        self, project: Project, message: Message, tokens: list[str]
    ) -> tuple[list[Result], list[tuple[int, ev.BrokerEvent]]]:
        """A broadcast's tokens (distinct): each one's result, and the one event for all
        that exist (a ``DirectMessage`` if only one does)."""
        known = await self.store.project_token_ids(project.id, tokens)
        sendable = tokens if len(known) == len(tokens) else [t for t in tokens if t in known]
        positions: list[StreamPosition | None] | None = None
        if sendable and (project.id, INBOX_KEY) not in self.no_history:
            kept = await self._inbox_appends(
                project.id, [(t, message.event, message.data) for t in sendable]
            )
            positions = None if all(p is None for p in kept) else kept
        answers: list[Result] = []
        if positions is None and len(known) == len(tokens):  # the usual case: all sent
            answers = [{"token": t, "success": True, "data": _NO_DATA} for t in tokens]
        elif positions is None:
            for t in tokens:
                if t in known:
                    answers.append({"token": t, "success": True, "data": _NO_DATA})
                else:
                    answers.append({"token": t, **failed(_no_token(t))})
        else:
            at = dict(zip(sendable, positions, strict=True))
            for t in tokens:
                if t in known:
                    answers.append({"token": t, **succeeded(position_data(at[t]))})
                else:
                    answers.append({"token": t, **failed(_no_token(t))})
        if len(sendable) == 1:
            position = positions[0] if positions is not None else None
            one = Message(None, sendable[0], message.event, message.data)
            return answers, [(0, direct_event(project.id, one, position))]
        if not sendable:
            return answers, []
        offsets = epochs = None
        if positions is not None:
            offsets = [p.offset if p is not None else 0 for p in positions]
            epochs = [p.epoch if p is not None else "" for p in positions]
        bulk = ev.DirectMessages(project.id, sendable, message.event, message.data, offsets, epochs)
        return answers, [(0, bulk)]

    async def send_messages(
        self, project: Project, messages: list[Message], permits: Permits
    ) -> list[Result]:
        """Send each message (to a channel or a token), one result each, in order: a
        channel's messages reach its subscribers in this order."""
        results: list[Result | None] = [None] * len(messages)
        to_channels, to_tokens = self._checked(messages, permits, results)
        try:
            events = await self._events(project, messages, to_channels, to_tokens, results)
            await self.broker.publish_many(in_bulk([e for _, e in events]))
        except APIError as exc:  # the store or broker is away: none of them went
            return [failed(exc) if r is None or r["success"] else r for r in results]
        self._sent(project, events)
        return [r if r is not None else succeeded() for r in results]

    def _checked(
        self, messages: list[Message], permits: Permits, results: list[Result | None]
    ) -> tuple[list[int], list[int]]:
        """The messages that may go, to channels and to tokens; the others' results."""
        to_channels: list[int] = []
        to_tokens: list[int] = []
        refusals = {True: permits("publish"), False: permits("direct")}
        checked: Message | None = None  # a broadcast's one message is checked once
        for i, m in enumerate(messages):
            try:
                refusal = refusals[m.channel is not None]
                if refusal is not None:
                    raise refusal
                if checked is None or m.data is not checked.data or m.event != checked.event:
                    self._check_event(m.event)
                    self._check_size(m.data, "message data")
                    checked = m
                if m.channel is not None:
                    self.check_channel_id(m.channel)
                    to_channels.append(i)
                else:
                    to_tokens.append(i)
            except APIError as exc:
                results[i] = failed(exc)
        return to_channels, to_tokens

    async def _events(
        self,
        project: Project,
        messages: list[Message],
        to_channels: list[int],
        to_tokens: list[int],
        results: list[Result | None],
    ) -> list[tuple[int, ev.BrokerEvent]]:
        """The store's part: appends (and the existence of each channel) in one call,
        the tokens' existence in another; the broker events, in the messages' order."""
        generation = self.no_history.generation
        positions = await self.store.append_messages(
            project.id,
            [(messages[i].channel or "", messages[i].event, messages[i].data) for i in to_channels],
        )
        events: list[tuple[int, ev.BrokerEvent]] = []
        for i, position in zip(to_channels, positions, strict=True):
            m = messages[i]
            assert m.channel is not None
            if isinstance(position, APIError):
                results[i] = failed(position)
                continue
            if position is None:
                self.no_history.add((project.id, m.channel), generation)
            results[i] = succeeded(position_data(position))
            events.append((i, channel_event(project.id, m, position)))
        if not to_tokens:
            return events
        known = await self.store.project_token_ids(
            project.id, list({messages[i].token or "": None for i in to_tokens})
        )
        sendable: list[int] = []
        for i in to_tokens:
            token = messages[i].token or ""
            if token in known:
                sendable.append(i)
            else:
                results[i] = failed(_no_token(token))
        kept: list[StreamPosition | None] = [None] * len(sendable)
        if sendable and (project.id, INBOX_KEY) not in self.no_history:
            kept = await self._inbox_appends(
                project.id,
                [(messages[i].token or "", messages[i].event, messages[i].data) for i in sendable],
            )
        for i, position in zip(sendable, kept, strict=True):
            results[i] = succeeded(position_data(position))
            events.append((i, direct_event(project.id, messages[i], position)))
        if to_channels:
            events.sort(key=lambda pair: pair[0])  # the items' order, across both kinds
        return events

    async def _inbox_appends(
        self, project_id: str, messages: list[tuple[str, str, msgspec.Raw]]
    ) -> list[StreamPosition | None]:
        """Keep the direct messages (token, event, data) in their tokens' inboxes, as
        ``direct_message`` does (``_inbox_append``), in one store call: nothing for a
        project known to keep none; else its positions (all None if the project turned
        inboxes off)."""
        key = (project_id, INBOX_KEY)
        if not messages or key in self.no_history:
            return [None] * len(messages)
        generation = self.no_history.generation
        kept = await self.store.append_inboxes(project_id, messages)
        if all(position is None for position in kept):
            self.no_history.add(key, generation)
        return kept

    def _sent(self, project: Project, events: list[tuple[int, ev.BrokerEvent]]) -> None:
        """Count what went out, and tell the webhooks of each channel message."""
        for _, event in events:
            if isinstance(event, ev.DirectMessages):
                self.rest_direct_messages += len(event.token_ids)
            elif isinstance(event, ev.DirectMessage):
                self.rest_direct_messages += 1
            elif isinstance(event, ev.ChannelMessage):
                self.rest_messages += 1
                if self.webhooks is not None:
                    self.webhooks.message_published(
                        project.id,
                        event.channel_id,
                        event.event,
                        event.data,
                        source="rest",
                        offset=event.offset,
                    )


def _no_token(token_id: str) -> NotFound:
    return NotFound(f"no token {ids.redact(token_id)!r} in this project")
