"""Request bodies, decoded and type-checked in one step.

``msgspec.Raw`` fields keep user JSON (state, message data) as the bytes it came in
as: validated as JSON, never decoded, spliced into what goes out.

These Structs are also the source of the request-body schemas of ``GET /openapi.json``
(``api/openapi.py``): the ``Annotated`` metadata below only documents, it changes no
decoding. An absent optional field is ``UNSET`` (not a ``Raw`` default) because a
``Raw`` default cannot be written into a JSON Schema.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, TypeVar

import msgspec

from switchboard._channel_type import ChannelType
from switchboard.exceptions import InvalidRequest
from switchboard.server.service.batch_ops import IdempotencyKey

T = TypeVar("T")
NULL = b"null"

ChannelTypeName = Annotated[
    str, msgspec.Meta(extra_json_schema={"enum": [kind.value for kind in ChannelType]})
]
StateObject = Annotated[
    msgspec.Raw,
    msgspec.Meta(
        description="A JSON object (at most 64 KiB encoded by default).",
        extra_json_schema={"type": "object"},
    ),
]
"""Channel or token state: a JSON object. The service refuses anything else."""
OptionalState = Annotated[
    msgspec.Raw,
    msgspec.Meta(
        description="A JSON object, or null for {} (at most 64 KiB encoded by default).",
        extra_json_schema={"type": ["object", "null"]},
    ),
]
EventName = Annotated[
    str,
    msgspec.Meta(
        description="The event name: 1 to 128 characters (the default limit).",
        extra_json_schema={"minLength": 1, "maxLength": 128},
    ),
]
MessageData = Annotated[
    msgspec.Raw, msgspec.Meta(description="Any JSON value (at most 64 KiB encoded by default).")
]
Timestamp = Annotated[
    str, msgspec.Meta(description="ISO 8601", extra_json_schema={"format": "date-time"})
]


class HistoryBody(msgspec.Struct, forbid_unknown_fields=True):
    """A channel's history bounds (Switchboard's own; Hop has no history)."""

    size: Annotated[
        int,
        msgspec.Meta(
            ge=0, le=10_000, description="Messages kept, newest first; 0 keeps none (off)."
        ),
    ]
    ttl_s: Annotated[
        int, msgspec.Meta(ge=1, le=30 * 24 * 3600, description="Seconds a message is kept.")
    ] = 300


class ChannelBody(msgspec.Struct):
    """``POST /v1/channels`` and ``PUT /v1/channels/:id``."""

    type: ChannelTypeName
    state: OptionalState | msgspec.UnsetType = msgspec.UNSET
    history: HistoryBody | msgspec.UnsetType | None = msgspec.UNSET
    """Absent: the server's default (``--history-size``, off unless set); null: none."""


class ChannelUpdateBody(msgspec.Struct, forbid_unknown_fields=True):
    """``PATCH /v1/channels/:id``: only the fields present change (Switchboard's own)."""

    history: HistoryBody | msgspec.UnsetType | None = msgspec.UNSET
    """New bounds (the epoch and kept messages stay); null or ``size: 0``: none, which
    drops the kept messages, and turning it on again starts a new epoch."""


class MessageBody(msgspec.Struct):
    """A message to a channel or a token: event ``e``, data ``d`` (``null`` if absent)."""

    e: EventName
    d: MessageData | msgspec.UnsetType = msgspec.UNSET
    idempotency_key: IdempotencyKey | None = None
    """Switchboard's own: a retry with the same key within 5 minutes is answered
    ``{"duplicate": true}`` and not sent again (docs/batch.md)."""

    @property
    def data(self) -> msgspec.Raw:
        """``d`` as JSON bytes; ``null`` when the body had none."""
        return msgspec.Raw(NULL) if isinstance(self.d, msgspec.UnsetType) else self.d


class CreateTokenBody(msgspec.Struct):
    """``POST /v1/channels/tokens``; the body itself is optional."""

    state: OptionalState | msgspec.UnsetType = msgspec.UNSET
    expires_at: Timestamp | None = None
    expiresAt: Timestamp | None = None


class UpdateTokenBody(msgspec.Struct):
    """``PATCH /v1/channels/tokens/:token``: only the fields present change."""

    state: OptionalState | msgspec.UnsetType = msgspec.UNSET
    expires_at: Timestamp | msgspec.UnsetType | None = msgspec.UNSET
    expiresAt: Timestamp | msgspec.UnsetType | None = msgspec.UNSET


def decode(body: bytes, kind: type[T], what: str = "body") -> T:
    """Decode a request body as ``kind``; a clear 400 if it is not."""
    if not body.strip():
        raise InvalidRequest(f"the request {what} is empty; send JSON")
    try:
        value = _typed(body, kind)
        _check_plain_json(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid {what}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"the request {what} is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise InvalidRequest(f"the request {what} is not UTF-8") from None
    except ValueError as exc:  # a JSON quirk msgspec let through and Python's parser did not
        raise InvalidRequest(f"the request {what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequest(f"the request {what} is nested too deeply") from None
    return value


def _typed(body: bytes, kind: type[T]) -> T:
    """``body`` as ``kind``; an integer field also takes an integral number such as ``5.0``.

    JSON has one number type, and JSON Schema (so ``/openapi.json``) counts ``1146.0`` as
    an integer; Python's ``json.dumps`` writes ``size / 2`` so. msgspec's strict decoding
    refuses it, and its lax mode also takes ``"12"`` or ``"null"`` as a number or null.
    So on a refused float only, the lax decoding is kept if it changed nothing but the
    spelling of numbers: the body's values, read back from it, equal the sent ones.
    ``5.5``, ``"5"`` and ``true`` stay 400s.
    """
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        if "got `float`" not in str(exc):
            raise
        try:
            value = msgspec.json.decode(body, type=kind, strict=False)
        except msgspec.ValidationError:
            raise exc from None
        taken = msgspec.json.decode(msgspec.json.encode(value))
        if not _same_values(msgspec.json.decode(body), taken):
            raise exc from None
        return value


def _same_values(sent: Any, taken: Any) -> bool:
    """Whether every value of ``sent`` that was decoded into ``taken`` is equal there.

    Numbers compare by value (``5.0`` is ``5``), anything else also by type. A key of
    ``sent`` missing from ``taken`` is one the Struct ignores; one only in ``taken`` is
    a default.
    """
    if isinstance(sent, dict):
        return isinstance(taken, dict) and all(
            _same_values(v, taken[k]) for k, v in sent.items() if k in taken
        )
    if isinstance(sent, list):
        return (
            isinstance(taken, list)
            and len(sent) == len(taken)
            and all(_same_values(a, b) for a, b in zip(sent, taken, strict=True))
        )
    numbers = (int, float)
    if isinstance(sent, numbers) and not isinstance(sent, bool):
        return isinstance(taken, numbers) and not isinstance(taken, bool) and sent == taken
    return type(sent) is type(taken) and bool(sent == taken)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise msgspec.ValidationError(f"the key {key[:40]!r} appears twice in one object")
            seen.add(key)
    return found


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise msgspec.ValidationError(f"the number {text[:20]} is out of range")
    return number


def _check_plain_json(body: bytes) -> None:
    """Refuse what msgspec lets through in a ``Raw`` but would break a reader later.

    A ``Raw`` is checked only for JSON syntax, and a ``Struct`` keeps the last of two
    equal keys, so without this a body could store invalid UTF-8, a number no decoder
    takes back (``1e400``), or keys that readers resolve differently, and a later
    ``PATCH`` of that state (which decodes it) would fail.

    The fast path, in C: if decoding the body to Python values and encoding them again
    gives the body back byte for byte (compacted), nothing was lost (two equal keys
    would have collapsed into one, a number out of range would not decode, strings were
    checked as UTF-8). Otherwise (escapes, ``1.50``, or a real problem) Python's own
    parser decides, and names the problem. The fast path is ~3x cheaper on a publish.
    """
    try:
        if msgspec.json.encode(msgspec.json.decode(body)) == msgspec.json.format(body, indent=-1):
            return
    except (msgspec.DecodeError, RecursionError, UnicodeError):
        pass
    json.loads(body.decode("utf-8"), object_pairs_hook=_unique_keys, parse_float=_finite)


def optional(raw: msgspec.Raw | msgspec.UnsetType) -> msgspec.Raw | None:
    """``None`` for a JSON ``null`` or an absent field."""
    if isinstance(raw, msgspec.UnsetType) or bytes(raw).strip() == NULL:
        return None
    return raw


def json_value(body: bytes) -> msgspec.Raw:
    """A body that is itself the JSON value (channel state)."""
    return decode(body, msgspec.Raw)


QUERY_INT_MAX = 2**31 - 1
"""The largest integer a query parameter takes: a page number past it would overflow SQL."""


def query_int(query: Any, name: str, default: int) -> int:
    """An integer query parameter, ``default`` if absent; a clear 400 if not an integer."""
    value = query.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer") from None
    if abs(number) > QUERY_INT_MAX:
        raise InvalidRequest(f"{name} must be at most {QUERY_INT_MAX}")
    return number
