"""What a batch is made of: its operations, its messages, and each item's result.

The operations are the items of ``POST /v1/batch`` (docs/batch.md), one tagged struct
per ``op``; the REST layer decodes each item into :data:`BatchOp` by itself, so one
malformed item is that item's error. A result is the REST envelope's own shape, per
item: ``{"success": true, "data": {…}}`` or ``{"success": false, "error": {"code",
"message"}}``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from switchboard.exceptions import APIError, InvalidRequest, MissingPermission
from switchboard.server.broker import events as ev
from switchboard.server.history import StreamPosition

MAX_TARGETS = 1000
"""Channels, and tokens, one broadcast may name (each list)."""
MAX_OPERATIONS = 1000
"""Operations one batch may hold."""
IDEMPOTENCY_TTL_S = 300.0
"""How long a request's answer is kept under its idempotency key."""
IN_FLIGHT_TTL_S = 60.0
"""How long a key stays claimed by a request that never finishes (its node died)."""
MAX_KEY = 256
"""The longest idempotency key, in characters."""

NULL = msgspec.Raw(b"null")

_encoder = msgspec.json.Encoder()

IdempotencyKey = Annotated[
    str,
    msgspec.Meta(
        pattern=f"^[!-~]{{1,{MAX_KEY}}}$",
        description="A retry with the same key within 5 minutes is not carried out twice "
        "(docs/batch.md); 1 to 256 visible ASCII characters.",
    ),
]


class _Op(msgspec.Struct, tag_field="op", forbid_unknown_fields=True, kw_only=True):
    idempotency_key: IdempotencyKey | None = None


class Publish(_Op, tag="publish"):
    """``POST /v1/channels/:channel/messages``."""

    channel: str
    e: str
    d: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


class Direct(_Op, tag="direct"):
    """``POST /v1/channels/tokens/:token/messages``."""

    token: str
    e: str
    d: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


class SetState(_Op, tag="set_state"):
    """``PUT /v1/channels/:channel/state``."""

    channel: str
    state: Annotated[msgspec.Raw, msgspec.Meta(extra_json_schema={"type": "object"})]


class PatchState(_Op, tag="patch_state"):
    """``PATCH /v1/channels/:channel/state``."""

    channel: str
    state: Annotated[msgspec.Raw, msgspec.Meta(extra_json_schema={"type": "object"})]


class SubscribeToken(_Op, tag="subscribe_token"):
    """``PUT /v1/channels/:channel/subscribers/:token``."""

    channel: str
    token: str


class RemoveToken(_Op, tag="remove_token"):
    """``DELETE /v1/channels/:channel/subscribers/:token``."""

    channel: str
    token: str


BatchOp = Publish | Direct | SetState | PatchState | SubscribeToken | RemoveToken
OP_NAMES: tuple[str, ...] = (
    "publish",
    "direct",
    "set_state",
    "patch_state",
    "subscribe_token",
    "remove_token",
)


def op_name(op: BatchOp) -> str:
    """``publish`` for a :class:`Publish` …: the item's ``op``."""
    tag = type(op).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


class Message(msgspec.Struct, frozen=True, gc=False):
    """One message of a batch or broadcast: to a channel, or (``channel`` None) a token.

    A Struct, not a frozen dataclass: made in C, once per item of a batch (a frozen
    dataclass's ``__init__`` was 3 % of a batch's node CPU), and, holding no container,
    never tracked by the cyclic garbage collector."""

    channel: str | None
    token: str | None
    event: str
    data: msgspec.Raw


def message_of(op: Publish | Direct) -> Message:
    data = NULL if isinstance(op.d, msgspec.UnsetType) else op.d
    if isinstance(op, Publish):
        return Message(op.channel, None, op.e, data)
    return Message(None, op.token, op.e, data)


Result = dict[str, Any]


SENT: Result = {"success": True, "data": {}}
"""A success with nothing to say: one shared dict (results are never changed in place;
a broadcast of a thousand allocates none for them)."""


def succeeded(data: dict[str, Any] | None = None) -> Result:
    return SENT if data is None else {"success": True, "data": data}


def failed(exc: APIError) -> Result:
    """The error envelope's body for ``exc``, as one item's result."""
    error: dict[str, str] = {"code": exc.code, "message": exc.message}
    if isinstance(exc, MissingPermission) and exc.permission is not None:
        error["permission"] = exc.permission
    return {"success": False, "error": error}


def check_key(key: str) -> None:
    """Raise InvalidRequest unless ``key`` is 1 to 256 visible ASCII characters."""
    if not 1 <= len(key) <= MAX_KEY or not all("!" <= ch <= "~" for ch in key):
        raise InvalidRequest(
            f"idempotency_key must be 1 to {MAX_KEY} visible ASCII characters (no spaces)"
        )


class ItemKeys:
    """A batch's idempotency keys: the first item of each key, the items repeating an
    earlier item's key (they answer as it does), and the keys that are invalid."""

    def __init__(self, todo: list[tuple[int, BatchOp]]) -> None:
        self.first: dict[str, int] = {}
        self.repeats: dict[int, int] = {}
        self.invalid: dict[int, APIError] = {}
        self.claimed: set[int] = set()
        """Items whose key this batch claimed (and must answer or free)."""
        for i, op in todo:
            key = op.idempotency_key
            if key is None:
                continue
            try:
                check_key(key)
            except APIError as exc:
                self.invalid[i] = exc
                continue
            if key in self.first:
                self.repeats[i] = self.first[key]
            else:
                self.first[key] = i

    def answers(
        self, todo: list[tuple[int, BatchOp]], results: list[Result | None]
    ) -> dict[str, bytes | None]:
        """What to keep under each claimed key: a success's result, or None (freed)."""
        kept: dict[str, bytes | None] = {}
        for i, op in todo:
            if i in self.claimed and op.idempotency_key is not None:
                result = results[i]
                ok = result is not None and result["success"]
                kept[op.idempotency_key] = _encoder.encode(result) if ok else None
        return kept


def check_targets(targets: list[str], what: str) -> None:
    if len(targets) > MAX_TARGETS:
        raise InvalidRequest(
            f"{what} names at most {MAX_TARGETS}; this broadcast names {len(targets)}"
        )
    if len(set(targets)) != len(targets):
        seen: set[str] = set()
        for target in targets:
            if target in seen:
                raise InvalidRequest(f"{what} names {target[:64]!r} twice")
            seen.add(target)


def position_data(position: StreamPosition | None) -> dict[str, object] | None:
    if position is None:
        return None
    return {"offset": position.offset, "epoch": position.epoch}


def direct_event(project_id: str, m: Message, position: StreamPosition | None) -> ev.DirectMessage:
    assert m.token is not None
    return ev.DirectMessage(
        project_id,
        m.token,
        m.event,
        m.data,
        offset=position.offset if position else None,
        epoch=position.epoch if position else None,
    )


def channel_event(
    project_id: str, m: Message, position: StreamPosition | None
) -> ev.ChannelMessage:
    assert m.channel is not None
    return ev.ChannelMessage(
        project_id,
        m.channel,
        m.event,
        m.data,
        offset=position.offset if position else None,
        epoch=position.epoch if position else None,
    )


def in_bulk(events: list[ev.BrokerEvent]) -> list[ev.BrokerEvent]:
    """``events`` with each run of two or more direct messages carrying one message (a
    broadcast's tokens, a batch's ``direct`` items alike) made one
    :class:`~switchboard.server.broker.events.DirectMessages`, in order."""
    out: list[ev.BrokerEvent] = []
    run: list[ev.DirectMessage] = []
    for event in events:
        if isinstance(event, ev.DirectMessage) and (not run or _same_message(run[0], event)):
            run.append(event)
            continue
        _flush(run, out)
        run = [event] if isinstance(event, ev.DirectMessage) else []
        if not isinstance(event, ev.DirectMessage):
            out.append(event)
    _flush(run, out)
    return out


def _same_message(first: ev.DirectMessage, other: ev.DirectMessage) -> bool:
    return (
        other.event == first.event
        and (other.offset is None) == (first.offset is None)
        and (other.data is first.data or other.data == first.data)
    )


def _flush(run: list[ev.DirectMessage], out: list[ev.BrokerEvent]) -> None:
    if len(run) == 1:
        out.append(run[0])
    elif run:
        first = run[0]
        positioned = first.offset is not None
        out.append(
            ev.DirectMessages(
                first.project_id,
                [e.token_id for e in run],
                first.event,
                first.data,
                offsets=[e.offset or 0 for e in run] if positioned else None,
                epochs=[e.epoch or "" for e in run] if positioned else None,
            )
        )
