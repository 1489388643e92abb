"""Project settings the API can change: the project's default history policy, and its
token inboxes (``InboxSetting``, docs/inbox.md).

Stored as the project setting ``history``: ``{"size": N, "ttl_s": S}``, size 0 meaning
"none" (which overrides a server default). Without it, a channel created without a
``history`` of its own takes the server's default (``--history-size``); with it, the
project's. A channel's policy is fixed when it is created; changing a default later
changes no existing channel (``PATCH /v1/channels/:id`` does).
"""

from __future__ import annotations

import msgspec

from switchboard.server.broker import events as ev
from switchboard.server.history import (
    INBOX,
    INBOX_KEY,
    HistoryPolicy,
    InboxSetting,
    check_policy,
    inbox_setting_decoder,
    new_epoch,
)
from switchboard.server.models import Project, Unchanged
from switchboard.server.service._base import ServiceBase

HISTORY_KEY = "history"


class StoredHistoryDefault(msgspec.Struct, frozen=True):
    size: int
    """0: channels created without a policy keep none."""
    ttl_s: int


_decoder = msgspec.json.Decoder(StoredHistoryDefault)


class SettingsOperations(ServiceBase):
    """``GET``/``PATCH /v1/settings``, and the default a new channel takes."""

    def server_history_default(self) -> HistoryPolicy | None:
        return check_policy(self.limits.history_size, self.limits.history_ttl_s)

    async def history_settings(
        self, project: Project
    ) -> tuple[StoredHistoryDefault | None, HistoryPolicy | None]:
        """The project's own default as stored (None: not set), and what a channel
        created now without a policy of its own gets."""
        raw = await self.store.get_project_setting(project.id, HISTORY_KEY)
        if raw is None:
            return None, self.server_history_default()
        own = _decoder.decode(raw)
        return own, (HistoryPolicy(own.size, own.ttl_s) if own.size else None)

    async def new_channel_history(
        self, project: Project, history: HistoryPolicy | Unchanged | None
    ) -> HistoryPolicy | None:
        """The policy a channel created with ``history`` gets: UNCHANGED is the
        project's default, or else the server's, at this moment."""
        if not isinstance(history, Unchanged):
            return history
        return (await self.history_settings(project))[1]

    async def set_project_history_default(
        self, project: Project, size: int | None, ttl_s: int = 300
    ) -> None:
        """Set the project's default (``size`` 0: none), or with None remove it (the
        server's default applies again). Raises InvalidRequest for bounds out of range."""
        if size is None:
            await self.store.set_project_setting(project.id, HISTORY_KEY, None)
            return
        check_policy(size, ttl_s)
        stored = StoredHistoryDefault(size, ttl_s)
        await self.store.set_project_setting(
            project.id, HISTORY_KEY, msgspec.Raw(msgspec.json.encode(stored))
        )

    async def inbox_setting(self, project: Project) -> InboxSetting | None:
        """The project's token inboxes, None when off (the default)."""
        raw = await self.store.get_project_setting(project.id, INBOX)
        return None if raw is None else inbox_setting_decoder.decode(raw)

    async def set_project_inbox(
        self, project: Project, size: int | None, ttl_s: int = 300
    ) -> InboxSetting | None:
        """Turn the project's token inboxes on (or change their bounds) or, with None or
        0, off. Turning them on starts a new epoch for every token; new bounds keep it.
        Raises InvalidRequest for bounds out of range."""
        policy = None if size is None else check_policy(size, ttl_s)
        setting = None
        if policy is not None:
            current = await self.inbox_setting(project)
            epoch = new_epoch() if current is None else current.epoch
            setting = InboxSetting(policy.size, policy.ttl_s, epoch)
        await self.store.set_project_setting(
            project.id,
            INBOX,
            None if setting is None else msgspec.Raw(msgspec.json.encode(setting)),
        )
        # Every node forgets that the project's inboxes were off (NoHistoryCache).
        self.no_history.forget((project.id, INBOX_KEY))
        await self.broker.publish(ev.HistoryChanged(project.id, INBOX_KEY))
        return setting
