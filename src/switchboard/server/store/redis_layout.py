"""Where every piece of Switchboard's state lives in Redis: one place for every key name.

Redis Cluster runs a script only if every key it names hashes to one slot, and a key's
slot is that of its *hash tag*, the part between the first ``{`` and ``}``. So every key
of a project carries ``{project id}`` and lands with the rest of the project: each
multi-key script (a subscription, a channel's deletion, a history append) stays in one
slot. On a single Redis the tags mean nothing, and the same layout serves.

Layout 2 (issue 19), all under the prefix (default ``sb:``)::

    {P}:project              hash  id, name, created_at
    {P}:ptk:{token id}       hash  id, project_id, hint, created_at, revoked_at,
                                   permissions (decimal bit field; absent = all),
                                   secret_hash
    {P}:ptks                 zset  project token ids by creation time
    {P}:gen                  str   credential generation (from a random start), INCR
                                   by every revocation of a project token
    {P}:ch:{channel}         hash  type, state, created_at
    {P}:chs                  zset  channel ids by creation time
    {P}:chs-by-id            zset  channel ids, score 0 (lexical order)
    {P}:subs:{channel}       zset  token ids subscribed, by time
    {P}:hist:{channel}       hash  history policy, epoch, top (store/redis_history.py)
    {P}:hstream:{channel}    stream history messages
    {P}:tok:{token}          hash  project_id, state, created_at, expires_at
    {P}:toks                 zset  token ids by creation time
    {P}:tsubs:{token}        zset  channel ids the token is subscribed to, by time
    {P}:settings             hash  key -> JSON document
    {P}:whlog                list  the last webhook delivery attempts
    {P}:inbox:{token}        hash  a token inbox's epoch, top (store/redis_inbox.py)
    {P}:ibox:{token}         stream its direct messages
    {P}:idem:{key}           str   a batch's idempotency key (store/redis_batch.py)

What spans projects is a lookup from an ID or a secret hash to a project, each key
on a slot of its own, written once when the thing is made and read in a first round
trip; the thing itself is then read under its project's tag (docs/scaling.md)::

    ptkh:{secret hash}       str   "{project id} {token id}" (REST: which project)
    ptkp:{token id}          str   project id of a project token (revocation by ID)
    tokp:{token id}          str   project id of a leap token (a socket's IDENTIFY)
    {projects}:list          zset  project ids by creation time
    {projects}:names         hash  name -> project id (uniqueness)
    layout                   str   "2" once this layout is in place (redis_migrate.py)

The prefix itself must hold no ``{``: the tag is the first pair of braces.
"""

from __future__ import annotations

LAYOUT_VERSION = 2


class RedisLayout:
    """Key names under one prefix (see the module docstring)."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"a Redis key prefix holds no braces (hash tags): {prefix!r}")
        self.prefix = prefix

    def project_tag(self, project_id: str) -> str:
        """The start of every key of the project: ``{prefix}{{project}}:``."""
        return f"{self.prefix}{{{project_id}}}:"

    def of_project(self, project_id: str, *parts: str) -> str:
        """A key of the project's slot: ``{prefix}{{project}}:part:part``."""
        return self.project_tag(project_id) + ":".join(parts)

    # One project's keys.

    def project(self, project_id: str) -> str:
        return self.of_project(project_id, "project")

    def project_token(self, project_id: str, token_id: str) -> str:
        return self.of_project(project_id, "ptk", token_id)

    def project_tokens(self, project_id: str) -> str:
        return self.of_project(project_id, "ptks")

    def generation(self, project_id: str) -> str:
        return self.of_project(project_id, "gen")

    def channel(self, project_id: str, channel_id: str) -> str:
        return self.of_project(project_id, "ch", channel_id)

    def channels(self, project_id: str) -> str:
        return self.of_project(project_id, "chs")

    def channels_by_id(self, project_id: str) -> str:
        return self.of_project(project_id, "chs-by-id")

    def subscribers(self, project_id: str, channel_id: str) -> str:
        return self.of_project(project_id, "subs", channel_id)

    def history(self, project_id: str, channel_id: str) -> str:
        return self.of_project(project_id, "hist", channel_id)

    def history_stream(self, project_id: str, channel_id: str) -> str:
        return self.of_project(project_id, "hstream", channel_id)

    def token(self, project_id: str, token_id: str) -> str:
        return self.of_project(project_id, "tok", token_id)

    def tokens(self, project_id: str) -> str:
        return self.of_project(project_id, "toks")

    def token_subscriptions(self, project_id: str, token_id: str) -> str:
        return self.of_project(project_id, "tsubs", token_id)

    def settings(self, project_id: str) -> str:
        return self.of_project(project_id, "settings")

    def webhook_log(self, project_id: str) -> str:
        return self.of_project(project_id, "whlog")

    def inbox(self, project_id: str, token_id: str) -> str:
        return self.of_project(project_id, "inbox", token_id)

    def inbox_stream(self, project_id: str, token_id: str) -> str:
        return self.of_project(project_id, "ibox", token_id)

    def idempotency(self, project_id: str, key: str) -> str:
        return self.of_project(project_id, "idem", key)

    # Lookups across projects, each on a slot of its own.

    def project_token_by_hash(self, secret_hash: str) -> str:
        return f"{self.prefix}ptkh:{secret_hash}"

    def project_token_project(self, token_id: str) -> str:
        return f"{self.prefix}ptkp:{token_id}"

    def token_project(self, token_id: str) -> str:
        return f"{self.prefix}tokp:{token_id}"

    def project_list(self) -> str:
        return f"{self.prefix}{{projects}}:list"

    def project_names(self) -> str:
        return f"{self.prefix}{{projects}}:names"

    def version(self) -> str:
        return f"{self.prefix}layout"
