"""Reading and changing a project's webhook configuration, with a short cache.

Every node reads a project's configuration at most once per ``cache_s`` (1 s): the
intake of events and the subscribe hook ask for it often, and a change made through
any node applies everywhere within that second (at once on the node that made it).
"""

from __future__ import annotations

import enum
import time

import msgspec

from switchboard.exceptions import InvalidRequest, NotFound
from switchboard.server.clock import now_iso
from switchboard.server.store import Store
from switchboard.server.webhooks.config import (
    SETTING_KEY,
    WebhookConfig,
    check_events,
    check_url,
    new_secret,
)

_decoder = msgspec.json.Decoder(WebhookConfig)


class Unknown(enum.Enum):
    UNKNOWN = "unknown"


UNKNOWN = Unknown.UNKNOWN


class WebhookSettings:
    """See the module docstring."""

    def __init__(self, store: Store, *, cache_s: float = 1.0, log_size: int = 100) -> None:
        self.store = store
        self.cache_s = cache_s
        self.log_size = log_size
        self._cache: dict[str, tuple[float, WebhookConfig | None]] = {}

    async def get(self, project_id: str) -> WebhookConfig | None:
        """The project's configuration, read at most ``cache_s`` ago."""
        now = time.monotonic()
        cached = self._cache.get(project_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        raw = await self.store.get_project_setting(project_id, SETTING_KEY)
        config = None if raw is None else _decoder.decode(raw)
        self._cache[project_id] = (now + self.cache_s, config)
        return config

    def peek(self, project_id: str) -> WebhookConfig | Unknown | None:
        """The cached configuration without a read: UNKNOWN when the cache cannot say
        (never read, or read more than ``cache_s`` ago)."""
        cached = self._cache.get(project_id)
        if cached is None or cached[0] <= time.monotonic():
            return UNKNOWN
        return cached[1]

    async def _write(self, project_id: str, config: WebhookConfig | None) -> None:
        value = None if config is None else msgspec.Raw(msgspec.json.encode(config))
        await self.store.set_project_setting(project_id, SETTING_KEY, value)
        self._cache[project_id] = (time.monotonic() + self.cache_s, config)

    async def put(
        self,
        project_id: str,
        *,
        url: str | None,
        events: list[str] | None,
        authorize_url: str | None,
    ) -> tuple[WebhookConfig, str | None]:
        """Replace the configuration; return it, and its secret if one was made now
        (the first configuration of the project). A later PUT keeps the secret."""
        url = check_url(url, "url")
        authorize_url = check_url(authorize_url, "authorize_url")
        if url is None and authorize_url is None:
            raise InvalidRequest("give a url for events, an authorize_url, or both")
        checked = check_events(events)
        if url is not None and not checked:
            raise InvalidRequest("events must name at least one event when url is set")
        current = await self.store.get_project_setting(project_id, SETTING_KEY)
        previous = None if current is None else _decoder.decode(current)
        now = now_iso()
        secret = previous.secret if previous is not None else new_secret()
        config = WebhookConfig(
            url=url,
            events=checked if url is not None else [],
            authorize_url=authorize_url,
            secret=secret,
            created_at=previous.created_at if previous is not None else now,
            updated_at=now,
        )
        await self._write(project_id, config)
        return config, (secret if previous is None else None)

    async def delete(self, project_id: str) -> None:
        if await self.get_fresh(project_id) is None:
            raise NotFound("this project has no webhooks")
        await self._write(project_id, None)

    async def rotate_secret(self, project_id: str) -> str:
        """A new secret for the configuration; the old one stops signing at once."""
        config = await self.get_fresh(project_id)
        if config is None:
            raise NotFound("this project has no webhooks")
        secret = new_secret()
        await self._write(
            project_id, msgspec.structs.replace(config, secret=secret, updated_at=now_iso())
        )
        return secret

    async def get_fresh(self, project_id: str) -> WebhookConfig | None:
        """The configuration as stored now, bypassing the cache."""
        self._cache.pop(project_id, None)
        return await self.get(project_id)

    async def record(self, project_id: str, entry: dict[str, object]) -> None:
        await self.store.add_webhook_delivery(project_id, msgspec.json.encode(entry), self.log_size)

    async def deliveries(self, project_id: str, limit: int) -> list[msgspec.Raw]:
        if not 1 <= limit <= self.log_size:
            raise InvalidRequest(f"limit must be 1 to {self.log_size}")
        return await self.store.webhook_deliveries(project_id, limit)
