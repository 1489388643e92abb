"""`switchboard export` and `switchboard import`: a whole store as one JSON document.

The dump holds every project with its project-token hashes (never secrets: there are
none to hold), channels with their state, tokens with their state, expiry and
subscriptions. It moves a deployment from the embedded store to Redis, or between
Redis instances, losing nothing. Live presence is not state and is not moved.

Import refuses, before writing anything, a dump whose projects (by ID or name) exist
in the target already, or that names a permission this Switchboard does not know.

Version 2 carries each project token's permissions by name; a version-1 dump (made
before permissions) is still read, its tokens getting every permission as they had.
Older Switchboards refuse a version-2 dump rather than widen its restricted tokens.

Version 3 carries each channel's history (docs/history.md): its policy, epoch, top
offset and the messages still kept, each with its offset and date, so clients that
hold an ``(offset, epoch)`` of the old store go on reading after the move, and the next
message gets the next offset. A version-1 or -2 dump has no history: its channels
keep none. Older Switchboards refuse a version-3 dump rather than drop the history.

Version 3 also carries each project's settings (``Store.project_settings``): its
webhook configuration, **with its signing secret** (receivers go on verifying after the
move), and its default history policy. So a dump is a secret: keep it as private as
the store's backups.

Version 4 carries each token's inbox (docs/inbox.md) beside the project's ``inbox``
setting (among its settings, with the inbox epoch): the top offset and the direct
messages still kept, so a client's inbox position stays valid after the move. Older
Switchboards refuse a version-4 dump rather than keep the epoch with the offsets lost.
"""

from __future__ import annotations

import msgspec

from switchboard.exceptions import Conflict, InvalidRequest
from switchboard.server import permissions
from switchboard.server.clock import now_iso
from switchboard.server.history import MAX_PAGE, HistoryMessage, HistoryPolicy, check_policy
from switchboard.server.models import Channel, ChannelType, Project, ProjectTokenInfo, Token
from switchboard.server.store.base import Store

FORMAT = "switchboard-export"
VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)


class ProjectTokenDump(msgspec.Struct):
    id: str
    hint: str
    created_at: str
    secret_hash: str
    revoked_at: str | None = None
    permissions: list[str] | None = None
    """Permission names (``switchboard.server.permissions``); absent (version 1) = all."""


class HistoryMessageDump(msgspec.Struct):
    offset: int
    e: str
    d: msgspec.Raw
    created_ms: int
    """Milliseconds since the Unix epoch: the message ages on from there."""


class HistoryDump(msgspec.Struct):
    size: int
    ttl_s: int
    epoch: str
    top: int
    """The latest offset given; the next message gets ``top + 1``."""
    messages: list[HistoryMessageDump] = []
    """The messages kept when exported, oldest first."""


class ChannelDump(msgspec.Struct):
    id: str
    type: ChannelType
    state: msgspec.Raw
    created_at: str
    history: HistoryDump | None = None
    """None: the channel keeps no history (and every channel of a version-1/2 dump)."""


class InboxDump(msgspec.Struct):
    epoch: str
    """The project's inbox epoch the offsets belong to."""
    top: int
    messages: list[HistoryMessageDump] = []


class TokenDump(msgspec.Struct):
    id: str
    state: msgspec.Raw
    created_at: str
    expires_at: str | None = None
    channels: list[str] = []
    """IDs of the channels the token is subscribed to."""
    inbox: InboxDump | None = None
    """The token's inbox, when its project keeps them and it got a message (version 4)."""


class ProjectDump(msgspec.Struct):
    id: str
    name: str
    created_at: str
    project_tokens: list[ProjectTokenDump] = []
    channels: list[ChannelDump] = []
    tokens: list[TokenDump] = []
    settings: dict[str, msgspec.Raw] = {}
    """The project's settings by key (``webhooks``, ``history``); none before version 3."""


class Dump(msgspec.Struct):
    format: str
    version: int
    exported_at: str
    projects: list[ProjectDump]


_PAGE = 1000


async def export_store(store: Store) -> Dump:
    projects = []
    for project in await store.list_projects():
        channels: list[Channel] = []
        while True:
            page = await store.list_channels(
                project.id,
                offset=len(channels),
                limit=_PAGE,
                sort_by="created_at",
                descending=False,
            )
            channels += page.items
            if len(page.items) < _PAGE:
                break
        histories = await _export_histories(store, project.id, channels)
        tokens = []
        for token in await store.list_tokens(project.id):
            subscribed = await store.token_channels(project.id, token.id)
            tokens.append(
                TokenDump(
                    token.id,
                    token.state,
                    token.created_at,
                    token.expires_at,
                    [c.id for c in subscribed],
                    await _export_inbox(store, project.id, token.id),
                )
            )
        projects.append(
            ProjectDump(
                project.id,
                project.name,
                project.created_at,
                [
                    ProjectTokenDump(
                        info.id,
                        info.hint,
                        info.created_at,
                        secret_hash,
                        info.revoked_at,
                        permissions.names(info.permissions),
                    )
                    for info, secret_hash in await store.project_token_hashes(project.id)
                ],
                [
                    ChannelDump(c.id, c.type, c.state, c.created_at, histories.get(c.id))
                    for c in channels
                ],
                tokens,
                await store.project_settings(project.id),
            )
        )
    return Dump(FORMAT, VERSION, now_iso(), projects)


async def _export_histories(
    store: Store, project_id: str, channels: list[Channel]
) -> dict[str, HistoryDump]:
    found: dict[str, HistoryDump] = {}
    policies = await store.history_policies(project_id, [c.id for c in channels])
    for channel_id, policy in policies.items():
        messages: list[HistoryMessageDump] = []
        since = 0
        while True:
            page = await store.read_history(project_id, channel_id, since, MAX_PAGE)
            if page is None:  # turned off meanwhile
                break
            messages += [
                HistoryMessageDump(m.offset, m.event, m.data, m.created_ms) for m in page.messages
            ]
            if not page.messages or page.messages[-1].offset >= page.top:
                found[channel_id] = HistoryDump(
                    policy.size, policy.ttl_s, page.epoch, page.top, messages
                )
                break
            since = page.messages[-1].offset
    return found


async def _export_inbox(store: Store, project_id: str, token_id: str) -> InboxDump | None:
    messages: list[HistoryMessageDump] = []
    since = 0
    while True:
        page = await store.read_inbox(project_id, token_id, since, MAX_PAGE)
        if page is None or page.top == 0:  # no inboxes, or nothing sent in this epoch
            return None
        messages += [
            HistoryMessageDump(m.offset, m.event, m.data, m.created_ms) for m in page.messages
        ]
        if not page.messages or page.messages[-1].offset >= page.top:
            return InboxDump(page.epoch, page.top, messages)
        since = page.messages[-1].offset


def _check_offsets(top: int, offsets: list[int]) -> None:
    if offsets != sorted(set(offsets)) or (offsets and not 1 <= offsets[0] <= offsets[-1] <= top):
        raise InvalidRequest("history offsets must ascend, from 1 to the top offset")


def _check_history(channel: ChannelDump) -> None:
    """Refuse (before anything is written) a history no store could hold."""
    history = channel.history
    if history is None:
        return
    if check_policy(history.size, history.ttl_s) is None:
        raise InvalidRequest("a history's size must be 1 or more (a channel without has none)")
    if not history.epoch or history.top < 0:
        raise InvalidRequest("a history needs an epoch and a top offset of 0 or more")
    _check_offsets(history.top, [m.offset for m in history.messages])


def decode_dump(data: bytes) -> Dump:
    try:
        dump = msgspec.json.decode(data, type=Dump)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"not a Switchboard export: {exc}") from None
    if dump.format != FORMAT or dump.version not in READABLE_VERSIONS:
        raise InvalidRequest(
            f"expected format {FORMAT!r} version {' or '.join(map(str, READABLE_VERSIONS))}"
        )
    return dump


def _token_permissions(token: ProjectTokenDump) -> permissions.Permission:
    if token.permissions is None:
        return permissions.ALL
    return permissions.parse(token.permissions)


def _check_importable(dump: Dump, existing: list[Project]) -> None:
    """Refuse, before anything is written, a dump that cannot go in whole: a project the
    target has (by ID or name), a permission this Switchboard does not know, a history
    no store could hold."""
    taken_ids = {p.id for p in existing}
    taken_names = {p.name for p in existing}
    for project in dump.projects:
        if project.id in taken_ids or project.name in taken_names:
            raise Conflict(
                f"project {project.name!r} ({project.id}) exists in the target; nothing imported"
            )
        for project_token in project.project_tokens:
            try:
                _token_permissions(project_token)
            except InvalidRequest as exc:
                raise InvalidRequest(
                    f"project token {project_token.id}: {exc.message}; nothing imported"
                ) from None
        for channel in project.channels:
            try:
                _check_history(channel)
            except InvalidRequest as exc:
                raise InvalidRequest(
                    f"channel {channel.id!r}: {exc.message}; nothing imported"
                ) from None
        for token in project.tokens:
            inbox = token.inbox
            if inbox is None:
                continue
            try:
                if not inbox.epoch or inbox.top < 0:
                    raise InvalidRequest("an inbox needs an epoch and a top offset of 0 or more")
                _check_offsets(inbox.top, [m.offset for m in inbox.messages])
            except InvalidRequest as exc:
                raise InvalidRequest(
                    f"token {token.id[:16]}…: {exc.message}; nothing imported"
                ) from None


_COUNTED = (
    "projects",
    "project_tokens",
    "channels",
    "tokens",
    "subscriptions",
    "histories",
    "history_messages",
    "settings",
    "inboxes",
    "inbox_messages",
)
"""The records ``import_store`` counts, in the order ``switchboard import`` prints them."""


async def import_store(store: Store, dump: Dump) -> dict[str, int]:
    """Write ``dump`` into ``store``; return how many of each record were written.

    Raises Conflict or InvalidRequest, with nothing written, if the dump cannot go in
    whole (see ``_check_importable``).
    """
    _check_importable(dump, await store.list_projects())
    counts = dict.fromkeys(_COUNTED, 0)
    for p in dump.projects:
        await store.put_project(Project(p.id, p.name, p.created_at))
        counts["projects"] += 1
        for key, value in p.settings.items():
            await store.set_project_setting(p.id, key, value)
            counts["settings"] += 1
        for t in p.project_tokens:
            info = ProjectTokenInfo(
                t.id, p.id, t.hint, t.created_at, t.revoked_at, _token_permissions(t)
            )
            await store.put_project_token(info, t.secret_hash)
            counts["project_tokens"] += 1
        for c in p.channels:
            await store.create_channel(Channel(p.id, c.id, c.type, c.state, c.created_at))
            counts["channels"] += 1
            if c.history is not None:
                h = c.history
                messages = [HistoryMessage(m.offset, m.e, m.d, m.created_ms) for m in h.messages]
                await store.put_history(
                    p.id, c.id, HistoryPolicy(h.size, h.ttl_s), h.epoch, h.top, messages
                )
                counts["histories"] += 1
                counts["history_messages"] += len(messages)
        for token in p.tokens:
            await store.create_token(
                Token(p.id, token.id, token.state, token.created_at, token.expires_at)
            )
            counts["tokens"] += 1
            for channel_id in token.channels:
                await store.add_subscription(p.id, channel_id, token.id)
                counts["subscriptions"] += 1
            if token.inbox is not None:
                i = token.inbox
                kept = [HistoryMessage(m.offset, m.e, m.d, m.created_ms) for m in i.messages]
                await store.put_inbox(p.id, token.id, i.epoch, i.top, kept)
                counts["inboxes"] += 1
                counts["inbox_messages"] += len(kept)
    return counts
