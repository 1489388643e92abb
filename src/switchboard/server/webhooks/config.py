"""A project's webhook configuration: where to send which events, and its secret.

Stored as the project setting ``webhooks`` (one JSON document). The secret signs every
request (``switchboard.webhooks``); it is shown once, when it is made, and afterwards
only by its hint, like a project token. Unlike a project token it cannot be kept as a
hash: the server needs it to sign.
"""

from __future__ import annotations

import enum
import secrets
from urllib.parse import urlsplit

import msgspec

from switchboard.exceptions import InvalidRequest

SETTING_KEY = "webhooks"
SECRET_PREFIX = "whsec_"
MAX_URL = 2048


class EventType(enum.StrEnum):
    """What a webhook can tell the app."""

    TOKEN_ONLINE = "token.online"
    """A token's first connection, anywhere in the cluster, identified."""
    TOKEN_OFFLINE = "token.offline"
    """A token's last connection closed (or its node died)."""
    CHANNEL_OCCUPIED = "channel.occupied"
    """A channel got its first subscriber (project-scope connections do not count)."""
    CHANNEL_VACATED = "channel.vacated"
    """A channel's last subscriber left."""
    MESSAGE_PUBLISHED = "message.published"
    """A message was published to a channel (REST or a client's MESSAGE). Off unless asked."""


OCCUPANCY_EVENTS = frozenset(
    {
        EventType.TOKEN_ONLINE,
        EventType.TOKEN_OFFLINE,
        EventType.CHANNEL_OCCUPIED,
        EventType.CHANNEL_VACATED,
    }
)
DEFAULT_EVENTS = sorted(OCCUPANCY_EVENTS)
"""What a configuration that names no events gets: everything but message.published,
which can be as frequent as the messages themselves."""


class WebhookConfig(msgspec.Struct, frozen=True, kw_only=True):
    url: str | None = None
    """Where events are POSTed; None sends none (only the authorization hook)."""
    events: list[EventType] = []
    authorize_url: str | None = None
    """Asked when a token SUBSCRIBEs to a private channel it was not granted."""
    secret: str
    created_at: str
    updated_at: str

    def wants(self, event: EventType) -> bool:
        return self.url is not None and event in self.events

    @property
    def wants_occupancy(self) -> bool:
        return self.url is not None and not OCCUPANCY_EVENTS.isdisjoint(self.events)

    def view(self) -> dict[str, object]:
        """What the REST API shows: everything but the secret, which only has its hint."""
        return {
            "url": self.url,
            "events": [str(e) for e in self.events],
            "authorize_url": self.authorize_url,
            "secret_hint": self.secret[: len(SECRET_PREFIX) + 4] + "…",
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def check_url(url: str | None, what: str) -> str | None:
    """``url`` if it is an absolute http(s) URL; raises InvalidRequest naming ``what``."""
    if url is None:
        return None
    if len(url) > MAX_URL:
        raise InvalidRequest(f"{what} is longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise InvalidRequest(f"{what} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"{what} must be an absolute http:// or https:// URL")
    return url


def check_events(names: list[str] | None) -> list[EventType]:
    """The named event types, deduplicated in a stable order; None gives the default."""
    if names is None:
        return [EventType(e) for e in DEFAULT_EVENTS]
    events: list[EventType] = []
    for name in names:
        try:
            event = EventType(name)
        except ValueError:
            known = ", ".join(e.value for e in EventType)
            raise InvalidRequest(f"unknown webhook event {name!r}; use any of {known}") from None
        if event not in events:
            events.append(event)
    return events
