"""Project-token permissions: Hop's flags, their names, and which route needs which.

A project token carries a bit field of the flags below, with the names and bit values
of Hop's ``@onehop/js`` (``src/permissions.ts``, ``permissionsMap``), so a value read
off Hop's dashboard means the same here. Only the Channels flags exist in Switchboard;
``ALL`` is all of them, and what every token made before permissions existed has.

:data:`ROUTE_PERMISSIONS` is the one table of what each REST route needs. The REST
layer looks a request's route up in it while authenticating
(``switchboard.server.api.auth``), so no handler checks a permission itself, and a
route missing from the table is refused rather than let through. The table follows
the recommendation in Hop's research notes; docs/permissions.md prints it.
"""

from __future__ import annotations

import enum
import functools
import operator
from collections.abc import Iterable

from switchboard.exceptions import InvalidRequest

__all__ = [
    "ALIASES",
    "ALL",
    "FULL_ACCESS_ROUTES",
    "ITEM_ROUTES",
    "LEAP_PUBLISH",
    "LEAP_SUBSCRIBE",
    "NONE",
    "OPERATION_PERMISSIONS",
    "ROUTE_PERMISSIONS",
    "Permission",
    "allows",
    "describe",
    "from_bits",
    "name",
    "names",
    "parse",
    "required_for",
]


class Permission(enum.IntFlag):
    """One of Hop's project-token permission flags (or a union of them)."""

    CREATE_CHANNEL_TOKEN = 1 << 24
    DELETE_CHANNELS = 1 << 27
    UPDATE_CHANNEL_STATE = 1 << 28
    READ_CHANNELS = 1 << 29
    PUBLISH_CHANNEL_MESSAGES = 1 << 30
    MANAGE_CHANNEL_SUBSCRIBERS = 1 << 31
    CREATE_LEAP_TOKEN = 1 << 35
    READ_LEAP_TOKENS = 1 << 36
    UPDATE_LEAP_TOKEN = 1 << 37
    MESSAGE_TOKEN = 1 << 38
    CREATE_CHANNEL = 1 << 39


ALL = functools.reduce(operator.or_, Permission)
"""Every flag: the default of a new token, and of every token made before permissions."""

NONE = Permission(0)

_BY_NAME = {flag.name.lower(): flag for flag in Permission if flag.name}


def parse(values: Iterable[str]) -> Permission:
    """The union of permission names: ``read_channels``, ``"a,b"``, or ``all``.

    Each value may hold several comma-separated names; case and blanks around names do
    not matter. Raises InvalidRequest naming an unknown name and listing the known ones.
    An empty input is InvalidRequest too: a token that may do nothing is a mistake.
    """
    granted = NONE
    seen = False
    for value in values:
        for raw in value.split(","):
            name = raw.strip().lower()
            if not name:
                continue
            seen = True
            if name == "all":
                granted |= ALL
            elif name in _BY_NAME:
                granted |= _BY_NAME[name]
            else:
                raise InvalidRequest(
                    f"unknown permission {raw.strip()!r}; use all or any of " + ", ".join(_BY_NAME)
                )
    if not seen:
        raise InvalidRequest("name at least one permission (or all)")
    return granted


def names(granted: int) -> list[str]:
    """The names of the flags set in ``granted``, in bit order (unknown bits are left out)."""
    return [name for name, flag in _BY_NAME.items() if granted & flag]


def from_bits(bits: int) -> Permission:
    """The flags of a stored bit field; bits Switchboard does not know are dropped.

    Hop's wider fields (``create_gateway``, …) may arrive in an import: they grant
    nothing here, so they are not kept.
    """
    return Permission(bits & ALL)


# Routes by (method, aiohttp's canonical path), one flag each.
ROUTE_PERMISSIONS: dict[tuple[str, str], Permission] = {
    ("GET", "/v1/channels"): Permission.READ_CHANNELS,
    ("POST", "/v1/channels"): Permission.CREATE_CHANNEL,
    ("PUT", "/v1/channels/{channel_id}"): Permission.CREATE_CHANNEL,
    ("GET", "/v1/channels/{channel_id}"): Permission.READ_CHANNELS,
    ("DELETE", "/v1/channels/{channel_id}"): Permission.DELETE_CHANNELS,
    # Switchboard's own: a channel's history policy, which creating it sets too.
    ("PATCH", "/v1/channels/{channel_id}"): Permission.CREATE_CHANNEL,
    ("GET", "/v1/channels/{channel_id}/state"): Permission.READ_CHANNELS,
    ("PUT", "/v1/channels/{channel_id}/state"): Permission.UPDATE_CHANNEL_STATE,
    ("PATCH", "/v1/channels/{channel_id}/state"): Permission.UPDATE_CHANNEL_STATE,
    ("POST", "/v1/channels/{channel_id}/messages"): Permission.PUBLISH_CHANNEL_MESSAGES,
    # Channel history (Switchboard's own): reading what was published, like the state.
    ("GET", "/v1/channels/{channel_id}/messages"): Permission.READ_CHANNELS,
    ("PUT", "/v1/channels/{channel_id}/subscribers/{token}"): (
        Permission.MANAGE_CHANNEL_SUBSCRIBERS
    ),
    ("DELETE", "/v1/channels/{channel_id}/subscribers/{token}"): (
        Permission.MANAGE_CHANNEL_SUBSCRIBERS
    ),
    ("GET", "/v1/channels/{channel_id}/tokens"): Permission.READ_LEAP_TOKENS,
    ("GET", "/v1/channels/{channel_id}/stats"): Permission.READ_CHANNELS,
    # Lists token IDs (the tokens' credentials), like .../tokens: not read_channels.
    ("GET", "/v1/channels/{channel_id}/presence"): Permission.READ_LEAP_TOKENS,
    ("POST", "/v1/channels/tokens"): Permission.CREATE_LEAP_TOKEN,
    ("GET", "/v1/channels/tokens"): Permission.READ_LEAP_TOKENS,
    ("GET", "/v1/channels/tokens/{token}"): Permission.READ_LEAP_TOKENS,
    ("PATCH", "/v1/channels/tokens/{token}"): Permission.UPDATE_LEAP_TOKEN,
    ("DELETE", "/v1/channels/tokens/{token}"): Permission.UPDATE_LEAP_TOKEN,
    ("POST", "/v1/channels/tokens/{token}/messages"): Permission.MESSAGE_TOKEN,
    # A token's inbox (Switchboard's own): what was sent to it, read like the token.
    ("GET", "/v1/channels/tokens/{token}/messages"): Permission.READ_LEAP_TOKENS,
    # The console's overview: channel and token totals, live counts.
    ("GET", "/v1/stats"): Permission.READ_CHANNELS,
    # Project settings (Switchboard's own): the history new channels get, which is what
    # creating a channel decides.
    ("GET", "/v1/settings"): Permission.READ_CHANNELS,
    ("PATCH", "/v1/settings"): Permission.CREATE_CHANNEL,
}

FULL_ACCESS_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        # Webhooks (Switchboard's own): whoever sets the URL receives every event and
        # message of the project, and decides private subscriptions, so no single flag
        # is enough. Only a token with every permission may read or change them.
        ("GET", "/v1/webhooks"),
        ("PUT", "/v1/webhooks"),
        ("DELETE", "/v1/webhooks"),
        ("POST", "/v1/webhooks/secret"),
        ("GET", "/v1/webhooks/deliveries"),
    }
)
"""Routes that need every permission (``ALL``) rather than one flag."""

OPERATION_PERMISSIONS: dict[str, Permission] = {
    # Each operation of POST /v1/batch (and each target of /v1/broadcast: a channel is a
    # publish, a token a direct) needs what its single route needs (docs/batch.md).
    "publish": ROUTE_PERMISSIONS[("POST", "/v1/channels/{channel_id}/messages")],
    "direct": ROUTE_PERMISSIONS[("POST", "/v1/channels/tokens/{token}/messages")],
    "set_state": ROUTE_PERMISSIONS[("PUT", "/v1/channels/{channel_id}/state")],
    "patch_state": ROUTE_PERMISSIONS[("PATCH", "/v1/channels/{channel_id}/state")],
    "subscribe_token": ROUTE_PERMISSIONS[("PUT", "/v1/channels/{channel_id}/subscribers/{token}")],
    "remove_token": ROUTE_PERMISSIONS[("DELETE", "/v1/channels/{channel_id}/subscribers/{token}")],
}
"""What each batch operation needs, by its ``op``: its single route's flag."""

ITEM_ROUTES: dict[tuple[str, str], Permission] = {
    ("POST", "/v1/broadcast"): OPERATION_PERMISSIONS["publish"] | OPERATION_PERMISSIONS["direct"],
    ("POST", "/v1/batch"): functools.reduce(operator.or_, OPERATION_PERMISSIONS.values()),
}
"""Routes whose items each need their own flag (:data:`OPERATION_PERMISSIONS`), checked
per item; the route itself lets in a token with any one of the flags its items may need
(a token with none learns nothing, as with any other route)."""

ALIASES: dict[Permission, Permission] = {
    # Hop keeps an older "channel token" flag for what its SDK now calls a leap token;
    # a token given either may create one.
    Permission.CREATE_LEAP_TOKEN: Permission.CREATE_CHANNEL_TOKEN,
}
"""A flag another flag stands in for."""

LEAP_SUBSCRIBE = Permission.READ_CHANNELS
"""What a project token needs to IDENTIFY on the gateway (its connection only subscribes)."""

LEAP_PUBLISH = Permission.PUBLISH_CHANNEL_MESSAGES
"""What a project-scope connection needs to publish a MESSAGE from the gateway."""


def required_for(method: str, route: str) -> Permission | None:
    """What a request to ``route`` (canonical path) with ``method`` needs, or None if
    the route is not in the table (the caller refuses it). HEAD is read as GET."""
    if method == "HEAD":
        method = "GET"
    return ROUTE_PERMISSIONS.get((method, route))


def route_mask(method: str, route: str) -> int | None:
    """The bits any one of which lets a request to ``route`` through (its permission and
    the flag that stands in for it), as a plain int: the per-request check is then one
    ``&`` of ints, not IntFlag arithmetic (which builds enum members). None if the route
    is not in the table."""
    return _ROUTE_MASKS.get(("GET" if method == "HEAD" else method, route))


def allows(granted: int, needed: Permission) -> bool:
    """True if ``granted`` holds ``needed``, or the flag that stands in for it."""
    return bool(granted & (needed | ALIASES.get(needed, NONE)))


def name(flag: Permission) -> str:
    """``read_channels`` for ``Permission.READ_CHANNELS``."""
    return (flag.name or str(int(flag))).lower()


def describe(needed: Permission) -> str:
    """``read_channels``, or ``create_leap_token (or create_channel_token)``."""
    alias = ALIASES.get(needed)
    return name(needed) + (f" (or {name(alias)})" if alias is not None else "")


_ROUTE_MASKS: dict[tuple[str, str], int] = {
    key: int(needed | ALIASES.get(needed, NONE)) for key, needed in ROUTE_PERMISSIONS.items()
}
