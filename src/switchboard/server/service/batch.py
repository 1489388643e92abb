"""Batches: one message to many channels and tokens, many operations in one request.

Both are Switchboard's own (docs/batch.md). What makes them cheap is
:meth:`BatchOperations.send_messages`: the messages of a batch cost the store one
call for every channel's append and one for every token's existence (a script or a
pipeline each on Redis, one group commit on SQLite), and the broker one
``publish_many``; a thousand messages are not a thousand round trips.

Idempotency keys live in the store, so a retry reaching another node of the cluster
finds them: claimed before anything is done (a concurrent retry finds the key in
flight and gets ``in_progress``), answered after.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import msgspec

from switchboard.exceptions import APIError, InProgress, InternalError, InvalidRequest, NotFound
from switchboard.server import ids
from switchboard.server.broker import events as ev
from switchboard.server.history import INBOX_KEY, StreamPosition
from switchboard.server.models import Project
from switchboard.server.service.batch_ops import (
    IDEMPOTENCY_TTL_S,
    IN_FLIGHT_TTL_S,
    MAX_OPERATIONS,
    BatchOp,
    Direct,
    ItemKeys,
    Message,
    PatchState,
    Publish,
    RemoveToken,
    Result,
    SetState,
    SubscribeToken,
    broadcast_answer,
    channel_event,
    check_key,
    check_targets,
    direct_event,
    failed,
    in_bulk,
    message_of,
    op_name,
    position_data,
    succeeded,
)
from switchboard.server.service.channels import ChannelOperations
from switchboard.server.service.tokens import TokenOperations
from switchboard.server.store import IN_FLIGHT

log = logging.getLogger("switchboard.batch")

Permits = Callable[[str], APIError | None]
"""The caller's permission for an ``op`` name: None if its project token may, else the
error that item gets (the REST layer knows the token's flags)."""

_PARALLEL = 32
"""Operations of a parallel batch that run at once (messages go together anyway)."""

_encoder = msgspec.json.Encoder()


def _in_progress(key: str) -> InProgress:
    return InProgress(
        f"a request with idempotency key {key[:64]!r} is still being carried out; "
        "retry later for its answer"
    )


class BatchOperations(ChannelOperations, TokenOperations):
    """``POST /v1/broadcast`` and ``POST /v1/batch``."""

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
        messages = [Message(c, None, message.event, message.data) for c in channels]
        messages += [Message(None, t, message.event, message.data) for t in tokens]

        async def send() -> Result:
            return broadcast_answer(messages, await self.send_messages(project, messages, permits))

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
            raise _in_progress(idempotency_key)
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

    async def run_batch(
        self, project: Project, items: list[BatchOp | APIError], *, parallel: bool, permits: Permits
    ) -> Result:
        """Carry out each item (an APIError is an item that failed to decode) and answer
        one result each, in order; the envelope's ``data``."""
        if len(items) > MAX_OPERATIONS:
            raise InvalidRequest(
                f"a batch holds at most {MAX_OPERATIONS} operations; this one has {len(items)}"
            )
        results: list[Result | None] = [None] * len(items)
        todo: list[tuple[int, BatchOp]] = []
        for i, item in enumerate(items):
            if isinstance(item, APIError):
                results[i] = failed(item)
            elif (refusal := permits(op_name(item))) is not None:
                results[i] = failed(refusal)
            else:
                todo.append((i, item))
        keys = ItemKeys(todo)
        for i, error in keys.invalid.items():
            results[i] = failed(error)
        await self._claim(project, keys, results)
        claimed = [(i, op) for i, op in todo if results[i] is None and i not in keys.repeats]
        try:
            if parallel:
                await self._run_parallel(project, claimed, results, permits)
            else:
                await self._run_in_order(project, claimed, results, permits)
        finally:
            await self.store.finish_idempotency_keys(
                project.id, keys.answers(claimed, results), IDEMPOTENCY_TTL_S
            )
        for i, first in keys.repeats.items():
            earlier = results[first]
            assert earlier is not None
            results[i] = {**earlier, "duplicate": True} if earlier["success"] else earlier
        done: list[Result] = [r for r in results if r is not None]
        ok = sum(1 for r in done if r["success"])
        return {"results": done, "succeeded": ok, "failed": len(done) - ok}

    async def _claim(self, project: Project, keys: ItemKeys, results: list[Result | None]) -> None:
        """Claim the batch's keys in one store call; answer the items whose key was
        answered before (``duplicate``) or is in flight."""
        names = list(keys.first)
        kept = await self.store.claim_idempotency_keys(project.id, names, IN_FLIGHT_TTL_S)
        for name, answer in zip(names, kept, strict=True):
            i = keys.first[name]
            if answer == IN_FLIGHT:
                results[i] = failed(_in_progress(name))
            elif answer is not None:
                results[i] = {**msgspec.json.decode(answer), "duplicate": True}
            else:
                keys.claimed.add(i)

    async def _run_in_order(
        self,
        project: Project,
        todo: list[tuple[int, BatchOp]],
        results: list[Result | None],
        permits: Permits,
    ) -> None:
        """Item after item; a run of messages goes as one :meth:`send_messages`, whose
        order is the items' order."""
        run: list[tuple[int, Publish | Direct]] = []
        for i, op in todo:
            if isinstance(op, Publish | Direct):
                run.append((i, op))
                continue
            await self._send_run(project, run, results, permits)
            run = []
            results[i] = await self._apply(project, op)
        await self._send_run(project, run, results, permits)

    async def _send_run(
        self,
        project: Project,
        run: list[tuple[int, Publish | Direct]],
        results: list[Result | None],
        permits: Permits,
    ) -> None:
        if run:
            sent = await self.send_messages(project, [message_of(op) for _, op in run], permits)
            for (i, _), result in zip(run, sent, strict=True):
                results[i] = result

    async def _run_parallel(
        self,
        project: Project,
        todo: list[tuple[int, BatchOp]],
        results: list[Result | None],
        permits: Permits,
    ) -> None:
        """Every message as one run, beside the other operations, many at once."""
        messages: list[tuple[int, Publish | Direct]] = []
        others: list[tuple[int, BatchOp]] = []
        for i, op in todo:
            if isinstance(op, Publish | Direct):
                messages.append((i, op))
            else:
                others.append((i, op))
        gate = asyncio.Semaphore(_PARALLEL)

        async def one(i: int, op: BatchOp) -> None:
            async with gate:
                results[i] = await self._apply(project, op)

        await asyncio.gather(
            self._send_run(project, messages, results, permits),
            *(one(i, op) for i, op in others),
        )

    async def _apply(self, project: Project, op: BatchOp) -> Result:
        """One operation other than a message, through the single route's own method."""
        try:
            if isinstance(op, SetState | PatchState | SubscribeToken | RemoveToken):
                self.check_channel_id(op.channel)
            if isinstance(op, SetState):
                await self.set_state(project, op.channel, op.state)
            elif isinstance(op, PatchState):
                await self.patch_state(project, op.channel, op.state)
            elif isinstance(op, SubscribeToken):
                await self.subscribe_token(project, op.channel, op.token)
            elif isinstance(op, RemoveToken):
                await self.remove_token(project, op.channel, op.token)
            else:  # messages go through send_messages
                raise InternalError(f"{op_name(op)} is not applied alone")
        except APIError as exc:
            return failed(exc)
        except Exception:
            log.exception("batch operation failed", extra={"op": op_name(op)})
            return failed(InternalError("the operation failed; the error is in the log"))
        return succeeded()

    async def send_messages(
        self, project: Project, messages: list[Message], permits: Permits
    ) -> list[Result]:
        """Send each message (to a channel or a token), one result each, in order: a
        channel's messages reach its subscribers in this order."""
        results: list[Result | None] = [None] * len(messages)
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
        try:
            events = await self._events(project, messages, to_channels, to_tokens, results)
            await self.broker.publish_many(in_bulk([e for _, e in events]))
        except APIError as exc:  # the store or broker is away: none of them went
            return [failed(exc) if r is None or r["success"] else r for r in results]
        self._sent(project, events)
        return [r if r is not None else succeeded() for r in results]

    async def _events(
        self,
        project: Project,
        messages: list[Message],
        to_channels: list[int],
        to_tokens: list[int],
        results: list[Result | None],
    ) -> list[tuple[int, ev.ChannelMessage | ev.DirectMessage]]:
        """The store's part: appends (and the existence of each channel) in one call,
        the tokens' existence in another; the broker events, in the messages' order."""
        generation = self.no_history.generation
        positions = await self.store.append_messages(
            project.id,
            [(messages[i].channel or "", messages[i].event, messages[i].data) for i in to_channels],
        )
        known = await self.store.project_token_ids(
            project.id, list({messages[i].token or "": None for i in to_tokens})
        )
        events: list[tuple[int, ev.ChannelMessage | ev.DirectMessage]] = []
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
        sendable: list[int] = []
        for i in to_tokens:
            token = messages[i].token
            assert token is not None
            if token in known:
                sendable.append(i)
            else:
                results[i] = failed(_no_token(token))
        kept = await self._inbox_appends(project.id, [messages[i] for i in sendable])
        for i, position in zip(sendable, kept, strict=True):
            results[i] = succeeded(position_data(position))
            events.append((i, direct_event(project.id, messages[i], position)))
        if to_channels and to_tokens:
            events.sort(key=lambda pair: pair[0])  # the items' order, across both kinds
        return events

    async def _inbox_appends(
        self, project_id: str, messages: list[Message]
    ) -> list[StreamPosition | None]:
        """Keep the direct messages in their tokens' inboxes, as ``direct_message`` does
        (``_inbox_append``), in one store call: nothing for a project known to keep
        none; else its positions (all None if the project turned inboxes off)."""
        key = (project_id, INBOX_KEY)
        if not messages or key in self.no_history:
            return [None] * len(messages)
        generation = self.no_history.generation
        kept = await self.store.append_inboxes(
            project_id, [(m.token or "", m.event, m.data) for m in messages]
        )
        if all(position is None for position in kept):
            self.no_history.add(key, generation)
        return kept

    def _sent(
        self, project: Project, events: list[tuple[int, ev.ChannelMessage | ev.DirectMessage]]
    ) -> None:
        """Count what went out, and tell the webhooks of each channel message."""
        for _, event in events:
            if isinstance(event, ev.DirectMessage):
                self.rest_direct_messages += 1
                continue
            assert isinstance(event, ev.ChannelMessage)
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
