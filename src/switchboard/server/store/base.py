"""The `Store` interface every backend implements, and the methods they share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from switchboard.exceptions import NotFound
from switchboard.server import ids
from switchboard.server.clock import now_iso
from switchboard.server.history import (
    HistoryMessage,
    HistoryPage,
    HistoryPolicy,
    StreamPosition,
)
from switchboard.server.models import (
    UNCHANGED,
    Access,
    Channel,
    Page,
    Project,
    ProjectTokenInfo,
    Token,
    Unchanged,
)
from switchboard.server.permissions import ALL, Permission

IN_FLIGHT = b""
"""What :meth:`Store.claim_idempotency_keys` answers for a key another request holds."""


class Store(Protocol):
    """Durable state. Every method is one atomic operation: it happens whole or not at all.

    Lookups are scoped to a project: a channel or token of another project is simply
    not found. Methods raise :class:`switchboard.exceptions.NotFound` or
    :class:`~switchboard.exceptions.Conflict` where they say so, and
    :class:`~switchboard.exceptions.Unavailable` when the backend cannot be reached.
    """

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None:
        """Raise if the store cannot serve requests right now."""

    # Projects and project tokens.
    async def create_project(self, name: str) -> Project:
        """Raises Conflict if a project has this name."""

    async def put_project(self, project: Project) -> Project:
        """Store a whole project record (``switchboard import``). Raises Conflict."""

    async def get_project(self, project_id: str) -> Project | None: ...
    async def list_projects(self) -> list[Project]: ...
    async def add_project_token(
        self, project_id: str, secret_hash: str, hint: str, permissions: Permission = ALL
    ) -> ProjectTokenInfo:
        """Raises NotFound if there is no such project."""

    async def put_project_token(self, info: ProjectTokenInfo, secret_hash: str) -> ProjectTokenInfo:
        """Store a whole project token record, revoked or not (``switchboard import``).

        Raises NotFound without the project, Conflict if the ID exists.
        """

    async def project_token_hashes(self, project_id: str) -> list[tuple[ProjectTokenInfo, str]]:
        """Every project token of the project with its hash (``switchboard export``)."""

    async def find_project_token(self, secret_hash: str) -> ProjectTokenInfo | None:
        """The unrevoked project token with this hash, or None."""

    async def find_project_by_token(self, secret_hash: str) -> Access | None:
        """The project and permissions of the unrevoked project token with this hash,
        or None.

        One atomic read (one round trip to Redis): every REST call starts with it. The
        answer carries the project's credential generation as of that read.
        """

    async def project_generation(self, project_id: str) -> int:
        """The project's credential generation: 0 at first, bumped by every
        :meth:`revoke_project_token` of one of its tokens (a node's cached
        :meth:`find_project_by_token` answer with an older one is stale)."""

    async def list_project_tokens(self, project_id: str) -> list[ProjectTokenInfo]: ...
    async def revoke_project_token(self, token_id: str) -> bool:
        """False if there was no such unrevoked token. A revocation bumps the project's
        credential generation in the same atomic step."""

    # Channels.
    async def create_channel(self, channel: Channel) -> Channel:
        """Raises Conflict if the project has a channel with this ID."""

    async def get_channel(self, project_id: str, channel_id: str) -> Channel | None: ...
    async def channel_exists(self, project_id: str, channel_id: str) -> bool:
        """Whether the channel exists, without reading its state (a publish needs no more)."""

    async def list_channels(
        self, project_id: str, *, offset: int, limit: int, sort_by: str, descending: bool
    ) -> Page: ...
    async def delete_channel(self, project_id: str, channel_id: str) -> list[str]:
        """Delete the channel and its subscriptions; return the tokens that were subscribed.

        Raises NotFound if there is no such channel.
        """

    async def set_channel_state(self, project_id: str, channel_id: str, state: msgspec.Raw) -> None:
        """Replace the state. Raises NotFound."""

    async def patch_channel_state(
        self, project_id: str, channel_id: str, partial: dict[str, Any], max_bytes: int
    ) -> msgspec.Raw:
        """Merge ``partial`` into the state's top level; return the new state.

        Raises NotFound, or PayloadTooLarge (changing nothing) if the result would be
        over ``max_bytes``.
        """

    # Tokens.
    async def create_token(self, token: Token) -> Token: ...
    async def get_token(self, project_id: str, token_id: str) -> Token | None: ...
    async def get_token_any_project(self, token_id: str) -> Token | None:
        """For the gateway: the token whatever its project (the caller checks the project)."""

    async def list_tokens(self, project_id: str) -> list[Token]: ...
    async def update_token(
        self,
        project_id: str,
        token_id: str,
        *,
        state: msgspec.Raw | Unchanged = UNCHANGED,
        expires_at: str | Unchanged | None = UNCHANGED,
    ) -> Token:
        """Raises NotFound."""

    async def delete_token(self, project_id: str, token_id: str) -> None:
        """Delete the token and its subscriptions. Raises NotFound."""

    # Subscriptions (token <-> channel, durable).
    async def add_subscription(self, project_id: str, channel_id: str, token_id: str) -> bool:
        """True if it is new. Raises NotFound if the channel or the token does not exist."""

    async def remove_subscription(self, project_id: str, channel_id: str, token_id: str) -> bool:
        """True if there was one."""

    async def is_subscribed(self, project_id: str, channel_id: str, token_id: str) -> bool: ...
    async def channel_tokens(self, project_id: str, channel_id: str) -> list[Token]: ...
    async def token_channels(self, project_id: str, token_id: str) -> list[Channel]: ...

    # History (``switchboard.server.history``); deleting a channel deletes its history.
    async def set_history_policy(
        self, project_id: str, channel_id: str, policy: HistoryPolicy | None
    ) -> str | None:
        """Turn history on (or change its bounds) or off; return the epoch, None if off.

        Turning it on starts a new epoch with no messages; changing the bounds of a
        channel that has history keeps its epoch and messages (trimmed to the new
        bounds at the next publish). Raises NotFound.
        """

    async def history_policy(self, project_id: str, channel_id: str) -> HistoryPolicy | None:
        """The channel's policy, None if history is off. Raises NotFound."""

    async def history_policies(
        self, project_id: str, channel_ids: list[str]
    ) -> dict[str, HistoryPolicy]:
        """The policies of those of the channels that keep history, in one read (a page
        of channels shows them). Channels without history, or none at all, are left out."""

    async def append_message(
        self,
        project_id: str,
        channel_id: str,
        event: str,
        data: msgspec.Raw,
        *,
        generation: int | None = None,
    ) -> StreamPosition | None:
        """Give a message the channel's next offset and keep it, in one atomic step (so
        offset order is the order of appends, from every node); trim to the policy.

        None (nothing kept) if history is off. Raises NotFound: a publish needs no
        other lookup. With ``generation`` (a cached project-token lookup's), first
        raises StaleAccess, changing nothing, if the project's credential generation is
        another: the check costs no read of its own.
        """

    async def append_and_publish(
        self,
        project_id: str,
        channel_id: str,
        event: str,
        data: msgspec.Raw,
        *,
        generation: int | None,
        route: tuple[str, str, bytes],
    ) -> StreamPosition | None:
        """:meth:`append_message`, then publish the message on the broker's pub/sub in
        the same atomic step (one round trip): ``route`` is the broker's ``StoreRoute``
        (command, topic, the encoded event up to its offset and epoch, which this
        completes). Nothing is published when it raises. Only a store on the broker's
        own server can (Redis); the embedded store's broker is in-process and never
        asks (NotImplementedError).
        """

    async def read_history(
        self, project_id: str, channel_id: str, since: int, limit: int
    ) -> HistoryPage | None:
        """Up to ``limit`` kept messages with an offset above ``since``, oldest first;
        None if history is off. Raises NotFound."""

    async def put_history(
        self,
        project_id: str,
        channel_id: str,
        policy: HistoryPolicy,
        epoch: str,
        top: int,
        messages: list[HistoryMessage],
    ) -> None:
        """Replace the channel's history with this one whole (``switchboard import``):
        policy, epoch, top offset and the messages with their own offsets and dates.

        ``messages`` are in ascending offset order, each offset from 1 to ``top``; those
        below the size bound are not kept. The next append gets ``top + 1`` in ``epoch``.
        Raises NotFound.
        """

    # Token inboxes (docs/inbox.md): each token's last direct messages, while the
    # project's ``inbox`` setting (``history.InboxSetting``) is on. The caller checks the
    # token exists in the project first; deleting a token deletes its inbox.
    async def append_inbox(
        self, project_id: str, token_id: str, event: str, data: msgspec.Raw
    ) -> StreamPosition | None:
        """Give a direct message the token's next offset in the project's inbox epoch and
        keep it, trimmed to the setting, in one atomic step that reads the setting too.

        None (nothing kept) if the project's inbox is off. A token whose inbox was
        written under another epoch starts again at offset 1.
        """

    async def append_inbox_and_publish(
        self,
        project_id: str,
        token_id: str,
        event: str,
        data: msgspec.Raw,
        *,
        generation: int | None,
        route: tuple[str, str, bytes],
    ) -> StreamPosition | None:
        """A direct message in one step (a store on the broker's Redis only): raises
        StaleAccess if ``generation`` is given and stale, NotFound if the project has no
        such token (nothing done); else :meth:`append_inbox`, then publish the
        ``DirectMessage`` on the broker's pub/sub as ``route`` says (the broker's
        ``store_route``), with its position."""

    async def read_inbox(
        self, project_id: str, token_id: str, since: int, limit: int
    ) -> HistoryPage | None:
        """Up to ``limit`` kept direct messages with an offset above ``since``, oldest
        first; None if the project's inbox is off. A token that has none in the current
        epoch has an empty page at top 0."""

    async def put_inbox(
        self,
        project_id: str,
        token_id: str,
        epoch: str,
        top: int,
        messages: list[HistoryMessage],
    ) -> None:
        """Replace the token's inbox with this one whole (``switchboard import``), in
        ascending offset order; the next append in ``epoch`` gets ``top + 1``."""

    async def drop_inbox(self, project_id: str, token_id: str) -> None:
        """Delete what is left of a deleted token's inbox (nothing, where the token's
        deletion took it)."""

    # Batches (``service/batch.py``): many messages, few round trips.
    async def append_messages(
        self, project_id: str, messages: list[tuple[str, str, msgspec.Raw]]
    ) -> list[StreamPosition | NotFound | None]:
        """:meth:`append_message` for each ``(channel_id, event, data)``, in order, with
        one result each: its position, None (no history), or the NotFound it raised.
        Each append is whole or not at all; one channel missing fails only its own."""

    async def project_token_ids(self, project_id: str, token_ids: list[str]) -> set[str]:
        """Those of ``token_ids`` that are tokens of the project, in one read."""

    async def append_inboxes(
        self, project_id: str, messages: list[tuple[str, str, msgspec.Raw]]
    ) -> list[StreamPosition | None]:
        """:meth:`append_inbox` for each ``(token_id, event, data)``, in order (one
        pipeline on Redis, one group commit on SQLite); the tokens exist."""

    async def claim_idempotency_keys(
        self, project_id: str, keys: list[str], pending_ttl_s: float
    ) -> list[bytes | None]:
        """Claim each key for a request being carried out, in one atomic step.

        For each key, in order: None if it was free (it is now held as in flight for
        ``pending_ttl_s``), :data:`IN_FLIGHT` if another request holds it, else the
        answer :meth:`finish_idempotency_keys` kept for it. ``keys`` has no repeats.
        """

    async def finish_idempotency_keys(
        self, project_id: str, answers: dict[str, bytes | None], ttl_s: float
    ) -> None:
        """Keep each claimed key's answer for ``ttl_s`` (a retry gets it back), or with
        None free the key (the request failed: a retry runs it again)."""

    # Project settings (JSON documents by key: ``webhooks`` …) and the webhook delivery
    # log; deleting a project deletes both.
    async def get_project_setting(self, project_id: str, key: str) -> msgspec.Raw | None: ...
    async def set_project_setting(
        self, project_id: str, key: str, value: msgspec.Raw | None
    ) -> None:
        """Replace (or, with None, remove) one setting. Raises NotFound without the project."""

    async def project_settings(self, project_id: str) -> dict[str, msgspec.Raw]:
        """Every setting of the project, by key (``switchboard export``)."""

    async def add_webhook_delivery(self, project_id: str, entry: bytes, keep: int) -> None:
        """Log one delivery attempt (a JSON document), keeping the last ``keep``."""

    async def webhook_deliveries(self, project_id: str, limit: int) -> list[msgspec.Raw]:
        """The last ``limit`` logged attempts, newest first."""


class CommonMethods:
    """The :class:`Store` methods every backend writes the same way: each is the
    backend's own primitive (``put_project``, ``put_project_token`` …) with a new ID and
    the current time, or a view of another method's answer. A mixin, listed last among a
    store's bases so that the backend's own methods come first."""

    if TYPE_CHECKING:

        async def put_project(self, project: Project) -> Project: ...
        async def put_project_token(
            self, info: ProjectTokenInfo, secret_hash: str
        ) -> ProjectTokenInfo: ...
        async def project_token_hashes(
            self, project_id: str
        ) -> list[tuple[ProjectTokenInfo, str]]: ...
        async def get_token_any_project(self, token_id: str) -> Token | None: ...

    async def create_project(self, name: str) -> Project:
        return await self.put_project(Project(ids.new_project_id(), name, now_iso()))

    async def add_project_token(
        self, project_id: str, secret_hash: str, hint: str, permissions: Permission = ALL
    ) -> ProjectTokenInfo:
        info = ProjectTokenInfo(
            ids.new_project_token_id(), project_id, hint, now_iso(), permissions=permissions
        )
        return await self.put_project_token(info, secret_hash)

    async def list_project_tokens(self, project_id: str) -> list[ProjectTokenInfo]:
        return [info for info, _ in await self.project_token_hashes(project_id)]

    async def get_token(self, project_id: str, token_id: str) -> Token | None:
        # One lookup by ID (token IDs are global), then the project scope.
        token = await self.get_token_any_project(token_id)
        return token if token is not None and token.project_id == project_id else None
