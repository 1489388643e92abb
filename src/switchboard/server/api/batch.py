"""``POST /v1/broadcast`` and ``POST /v1/batch`` (Switchboard's own: docs/batch.md).

A body that is not a batch (not JSON, a wrong field, over a cap) is one 400 envelope
and nothing is done. Inside a valid batch, each item is decoded by itself: a malformed
item, or one the project token lacks the permission for, is that item's error and the
others go ahead. The answer is 200 with one result per item.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from switchboard.exceptions import APIError, InvalidRequest
from switchboard.server.api import bodies
from switchboard.server.api.auth import SERVICE, authenticated, item_permits
from switchboard.server.api.envelope import ok
from switchboard.server.service.batch_ops import (
    MAX_OPERATIONS,
    MAX_TARGETS,
    BatchOp,
    IdempotencyKey,
    Message,
)

routes = web.RouteTableDef()

_Targets = Annotated[list[str], msgspec.Meta(max_length=MAX_TARGETS)]


class BroadcastBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/broadcast``: one message to up to 1,000 channels and 1,000 tokens."""

    e: bodies.EventName
    d: bodies.MessageData | msgspec.UnsetType = msgspec.UNSET
    channels: _Targets = []
    """Channel IDs: each gets the message as ``POST /v1/channels/:id/messages`` sends it."""
    tokens: _Targets = []
    """Token IDs: each gets it as a direct message (``POST .../tokens/:id/messages``)."""
    idempotency_key: IdempotencyKey | None = None

    @property
    def data(self) -> msgspec.Raw:
        return msgspec.Raw(bodies.NULL) if isinstance(self.d, msgspec.UnsetType) else self.d


class BatchBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/batch`` as the server reads it: each item is decoded on its own."""

    requests: list[msgspec.Raw]
    parallel: bool = False


class BatchDocument(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/batch``: up to 1,000 operations, each with its own result."""

    requests: Annotated[list[BatchOp], msgspec.Meta(max_length=MAX_OPERATIONS)]
    parallel: Annotated[
        bool,
        msgspec.Meta(
            description="false (the default): one after another, in order; true: at once."
        ),
    ] = False


_item: msgspec.json.Decoder[BatchOp] = msgspec.json.Decoder(BatchOp)


def decode_item(raw: msgspec.Raw) -> BatchOp | APIError:
    """One item of a batch, or the error that is its result."""
    try:
        return _item.decode(raw)
    except msgspec.ValidationError as exc:
        return InvalidRequest(f"invalid operation: {exc}")


@routes.post("/v1/broadcast")
async def broadcast(request: web.Request) -> web.Response:
    access = await authenticated(request)
    body = bodies.decode(await request.read(), BroadcastBody)
    data = await request.app[SERVICE].broadcast(
        access.project,
        Message(None, None, body.e, body.data),
        body.channels,
        body.tokens,
        permits=item_permits(access.permissions),
        idempotency_key=body.idempotency_key,
    )
    return ok(data)


@routes.post("/v1/batch")
async def batch(request: web.Request) -> web.Response:
    access = await authenticated(request)
    body = bodies.decode(await request.read(), BatchBody)
    if len(body.requests) > MAX_OPERATIONS:
        raise InvalidRequest(
            f"a batch holds at most {MAX_OPERATIONS} operations; this one has {len(body.requests)}"
        )
    data = await request.app[SERVICE].run_batch(
        access.project,
        [decode_item(raw) for raw in body.requests],
        parallel=body.parallel,
        permits=item_permits(access.permissions),
    )
    return ok(data)
