"""``POST /v1/batch``: many operations in one request (Switchboard's own: docs/batch.md).

Each item is carried out as its single route does it, with its own result; the runs
of messages go through :meth:`MessageSending.send_messages` (``service/broadcast.py``),
so a thousand messages are a few store calls and one broker call, not a thousand
round trips. Items' idempotency keys are claimed in one store call, answered in one.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec

from switchboard.exceptions import APIError, InternalError, InvalidRequest
from switchboard.server.models import Project
from switchboard.server.service.batch_ops import (
    IDEMPOTENCY_TTL_S,
    IN_FLIGHT_TTL_S,
    MAX_OPERATIONS,
    BatchOp,
    Direct,
    ItemKeys,
    PatchState,
    Publish,
    RemoveToken,
    Result,
    SetState,
    SubscribeToken,
    failed,
    message_of,
    op_name,
    succeeded,
)
from switchboard.server.service.broadcast import MessageSending, Permits, in_progress
from switchboard.server.store import IN_FLIGHT

log = logging.getLogger("switchboard.batch")

_PARALLEL = 32
"""Operations of a parallel batch that run at once (messages go together anyway)."""


class BatchOperations(MessageSending):
    """``POST /v1/broadcast`` (:class:`MessageSending`) and ``POST /v1/batch``."""

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
                results[i] = failed(in_progress(name))
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
