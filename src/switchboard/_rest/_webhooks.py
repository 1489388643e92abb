"""Webhooks in the server SDK: the ``/v1/webhooks`` calls and their results.

Switchboard's own (Hop has no webhooks); they need a project token with every
permission. Verifying a received webhook is :func:`switchboard.webhooks.verify`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from switchboard._rest._calls import Call, check_str, encode_json

__all__ = [
    "WebhookConfig",
    "WebhookDelivery",
    "delete_webhooks",
    "get_webhooks",
    "rotate_webhook_secret",
    "set_webhooks",
    "webhook_deliveries",
]


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """A project's webhook configuration."""

    url: str | None
    """Where events are POSTed (None: events are not sent)."""
    events: list[str]
    """``token.online``, ``token.offline``, ``channel.occupied``, ``channel.vacated``,
    ``message.published``."""
    authorize_url: str | None
    """The subscribe hook, asked when a token SUBSCRIBEs to a private channel it was
    not granted (a 2xx grants it for that connection)."""
    secret_hint: str
    created_at: str
    updated_at: str
    secret: str | None = None
    """The signing secret: only in the answer that made it (the first :meth:`set`)."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, value: dict[str, Any], secret: str | None = None) -> WebhookConfig:
        return cls(
            url=value.get("url"),
            events=[str(e) for e in value["events"]],
            authorize_url=value.get("authorize_url"),
            secret_hint=str(value["secret_hint"]),
            created_at=str(value["created_at"]),
            updated_at=str(value["updated_at"]),
            secret=secret,
            raw=value,
        )


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One attempt to send a webhook (or to ask the subscribe hook)."""

    event_id: str
    type: str
    url: str | None
    attempt: int
    status: str
    """``delivered``, ``retrying`` or ``failed``; ``granted`` or ``refused`` for
    ``subscribe.authorize``."""
    response_status: int | None
    error: str | None
    duration_ms: float
    at: str

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> WebhookDelivery:
        status = value.get("response_status")
        return cls(
            event_id=str(value["event_id"]),
            type=str(value["type"]),
            url=value.get("url"),
            attempt=int(value["attempt"]),
            status=str(value["status"]),
            response_status=None if status is None else int(status),
            error=value.get("error"),
            duration_ms=float(value["duration_ms"]),
            at=str(value["at"]),
        )


def _config(data: dict[str, Any]) -> WebhookConfig | None:
    config = data.get("webhooks")
    return None if config is None else WebhookConfig.from_json(config, data.get("secret"))


def _set_config(data: dict[str, Any]) -> WebhookConfig:
    config = _config(data)
    if config is None:
        raise ValueError("no webhooks in the answer")
    return config


def get_webhooks() -> Call[WebhookConfig | None]:
    return Call("GET", "/webhooks", _config, idempotent=True)


def set_webhooks(
    url: str | None, events: Iterable[str] | None, authorize_url: str | None
) -> Call[WebhookConfig]:
    body: dict[str, Any] = {
        "url": None if url is None else check_str(url, "url"),
        "authorize_url": None
        if authorize_url is None
        else check_str(authorize_url, "authorize_url"),
    }
    if events is not None:
        if isinstance(events, str):
            raise TypeError("events must be a list of event names, not a string")
        body["events"] = [check_str(e, "event") for e in events]
    return Call("PUT", "/webhooks", _set_config, encode_json(body, "webhooks"), idempotent=True)


def delete_webhooks() -> Call[None]:
    return Call("DELETE", "/webhooks", lambda data: None, idempotent=True)


def rotate_webhook_secret() -> Call[str]:
    return Call("POST", "/webhooks/secret", lambda data: str(data["secret"]))


def webhook_deliveries(limit: int) -> Call[list[WebhookDelivery]]:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError("limit must be a positive int")
    return Call(
        "GET",
        "/webhooks/deliveries",
        lambda data: [WebhookDelivery.from_json(d) for d in data["deliveries"]],
        params=(("limit", str(limit)),),
        idempotent=True,
    )
