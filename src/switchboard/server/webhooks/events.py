"""One webhook event, as it waits in a queue and as its receiver gets it.

The body a receiver gets::

    {"id": "evt_…", "type": "token.online", "project_id": "project_…",
     "created_at": "2026-…Z", "data": {"token_id": "leap_token_…"}}

``id`` is the same for every attempt to deliver the event, so a receiver can drop
repeats (an event is delivered once, but a node that dies mid-delivery leaves it to
another node, which may send it again).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import msgspec

from switchboard.server.clock import format_iso
from switchboard.server.webhooks.config import EventType


class WebhookEvent(msgspec.Struct, frozen=True):
    id: str
    type: EventType
    project_id: str
    created_ms: int
    data: msgspec.Raw
    """The event's own fields, JSON (``{"token_id": …}``, ``{"channel_id": …}``, …)."""

    def body(self) -> bytes:
        created = format_iso(datetime.fromtimestamp(self.created_ms / 1000, UTC))
        return msgspec.json.encode(
            {
                "id": self.id,
                "type": self.type.value,
                "project_id": self.project_id,
                "created_at": created,
                "data": self.data,
            }
        )


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


def token_data(token_id: str) -> msgspec.Raw:
    return msgspec.Raw(msgspec.json.encode({"token_id": token_id}))


def channel_data(channel_id: str) -> msgspec.Raw:
    return msgspec.Raw(msgspec.json.encode({"channel_id": channel_id}))
