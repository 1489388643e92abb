"""What each route takes and answers: one :class:`Operation` per (method, path).

Declared once, here; ``document.py`` turns them into the OpenAPI paths. A route of the
app without one fails the document (and so the tests) rather than being left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from switchboard.server import ids
from switchboard.server.api import batch, bodies
from switchboard.server.api import settings as project_settings
from switchboard.server.api import webhooks as wh
from switchboard.server.api.auth import SERVICE
from switchboard.server.api.bodies import QUERY_INT_MAX
from switchboard.server.api.openapi.schemas import (
    BatchData,
    BroadcastData,
    ChannelData,
    ChannelPage,
    ChannelPresence,
    ChannelStats,
    Empty,
    Health,
    MessageSent,
    ProjectStats,
    Ready,
    StateData,
    TokenData,
    TokenList,
)
from switchboard.server.api.views import HistoryView
from switchboard.server.service import SORT_FIELDS


@dataclass(frozen=True, slots=True)
class Query:
    """A query parameter and its JSON Schema."""

    name: str
    schema: dict[str, Any]
    description: str = ""
    allow_empty: bool = False
    """``?name=`` (empty) is taken, as the default: the server's ``query_int`` does so."""
    maximum: Callable[[web.Application], int | None] | None = None
    """The largest value, where it is the server's configuration: read from the app."""

    def schema_for(self, app: web.Application) -> dict[str, Any]:
        """The parameter's JSON Schema on ``app`` (with its configured maximum)."""
        top = None if self.maximum is None else self.maximum(app)
        return self.schema if top is None else {**self.schema, "maximum": top}


@dataclass(frozen=True, slots=True)
class Operation:
    """What one route takes and answers.

    ``data`` is the type of a success's ``data`` (``None``: the route does not answer
    with the JSON envelope, and ``content`` says what it answers instead); ``body`` the
    type its request body is decoded as. Every route may answer 400, 404 and 500;
    ``errors`` adds the ones particular to it (an authenticated route adds 401, 403
    and 429; one with a body adds 408 and 413).
    """

    summary: str
    data: Any = None
    body: Any = None
    body_required: bool = True
    auth: bool = True
    query: tuple[Query, ...] = ()
    errors: tuple[int, ...] = ()
    content: str = "application/json"
    tag: str = "channels"
    description: str = ""


PROJECT_QUERY = Query(
    "project",
    {"type": "string"},
    "Optional: the project the token must belong to (403 if it does not).",
)
PAGE_QUERIES = (
    Query("page", {"type": "integer", "minimum": 1, "maximum": QUERY_INT_MAX}, "From 1.", True),
    Query("pageSize", {"type": "integer", "minimum": 1, "maximum": 1000}, "1 to 1000.", True),
    Query("orderBy", {"type": "string", "enum": ["asc", "desc"]}, "asc or desc, in any case."),
    Query("sortBy", {"type": "string", "enum": list(SORT_FIELDS)}),
)

PATH_PARAMS: dict[str, dict[str, Any]] = {
    # The reserved IDs are out of the pattern itself, so no URL is both a channel's and
    # the token routes' (/v1/channels/tokens) for a tool that reads only ``pattern``.
    "channel_id": {
        "type": "string",
        "pattern": ids.VALID_CHANNEL_ID,
        "description": "1 to 128 of A-Z a-z 0-9 _ . : @ -; not "
        + ", ".join(sorted(ids.RESERVED_CHANNEL_IDS))
        + " (reserved).",
    },
    "token": {"type": "string", "minLength": 1, "description": "A leap token ID."},
    "name": {"type": "string", "minLength": 1, "description": "A file of the console."},
}

HISTORY_QUERIES = (
    Query(
        "since",
        {"type": "integer", "minimum": 0, "maximum": QUERY_INT_MAX},
        "Messages with a higher offset; 0 (the default) from the oldest kept.",
        True,
    ),
    Query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "1 to 1000 (100).", True),
)


def _webhook_log_size(app: web.Application) -> int | None:
    # A larger ?limit= is a 400, so the document says the node's own log size.
    service = app.get(SERVICE)
    webhooks = None if service is None else service.webhooks
    return None if webhooks is None else webhooks.settings.log_size


_CH = "/v1/channels/{channel_id}"
_TK = "/v1/channels/tokens/{token}"

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/healthz"): Operation("The process is up", Health, auth=False, tag="health"),
    ("GET", "/readyz"): Operation(
        "The store and broker answer and the node takes connections",
        Ready,
        auth=False,
        errors=(503,),
        tag="health",
    ),
    ("GET", "/v1/stats"): Operation("The project's overview (the console's)", ProjectStats),
    ("GET", "/v1/channels"): Operation(
        "List the project's channels, a page at a time", ChannelPage, query=PAGE_QUERIES
    ),
    ("POST", "/v1/channels"): Operation(
        "Create a channel with a generated ID", ChannelData, bodies.ChannelBody
    ),
    ("PUT", _CH): Operation(
        "Create a channel with this ID", ChannelData, bodies.ChannelBody, errors=(409,)
    ),
    ("GET", _CH): Operation("Get a channel", ChannelData),
    ("DELETE", _CH): Operation("Delete a channel", Empty),
    ("PATCH", _CH): Operation(
        "Change a channel's history policy (only the fields present change)",
        ChannelData,
        bodies.ChannelUpdateBody,
        description="Switchboard's own (Hop has no history): docs/history.md.",
    ),
    ("GET", _CH + "/state"): Operation("Get a channel's state", StateData),
    ("PUT", _CH + "/state"): Operation(
        "Replace a channel's state (the body is the state)", Empty, bodies.StateObject
    ),
    ("PATCH", _CH + "/state"): Operation(
        "Merge keys into a channel's state (the body is the partial state)",
        Empty,
        bodies.StateObject,
    ),
    ("POST", _CH + "/messages"): Operation(
        "Publish a message to a channel's subscribers",
        MessageSent,
        bodies.MessageBody,
        errors=(409,),
    ),
    ("GET", _CH + "/messages"): Operation(
        "A channel's kept messages after an offset (channels with history only)",
        HistoryView,
        query=HISTORY_QUERIES,
        description="Switchboard's own (Hop has no history): docs/history.md.",
    ),
    ("PUT", _CH + "/subscribers/{token}"): Operation("Subscribe a token to a channel", Empty),
    ("DELETE", _CH + "/subscribers/{token}"): Operation(
        "Unsubscribe a token from a channel", Empty
    ),
    ("GET", _CH + "/tokens"): Operation("The tokens subscribed to a channel", TokenList),
    ("GET", _CH + "/stats"): Operation("A channel's online connections", ChannelStats),
    ("GET", _CH + "/presence"): Operation(
        "Who is subscribed to a channel: tokens with their state, and tokenless connections",
        ChannelPresence,
    ),
    ("POST", "/v1/channels/tokens"): Operation(
        "Create a leap token (the body is optional)",
        TokenData,
        bodies.CreateTokenBody,
        body_required=False,
        tag="tokens",
    ),
    ("GET", "/v1/channels/tokens"): Operation("List the project's tokens", TokenList, tag="tokens"),
    ("GET", _TK): Operation("Get a token", TokenData, tag="tokens"),
    ("PATCH", _TK): Operation(
        "Replace a token's state and/or move its expiry",
        TokenData,
        bodies.UpdateTokenBody,
        tag="tokens",
    ),
    ("DELETE", _TK): Operation("Delete a token", Empty, tag="tokens"),
    ("POST", _TK + "/messages"): Operation(
        "Send a direct message to a token's connections",
        MessageSent,
        bodies.MessageBody,
        errors=(409,),
        tag="tokens",
    ),
    ("GET", _TK + "/messages"): Operation(
        "A token's kept direct messages after an offset (with the project's inboxes on)",
        HistoryView,
        query=HISTORY_QUERIES,
        tag="tokens",
        description="Switchboard's own (Hop keeps no direct messages): docs/inbox.md.",
    ),
    # Batches (Switchboard's own): each item needs its single route's permission.
    ("POST", "/v1/broadcast"): Operation(
        "Send one message to up to 1,000 channels and 1,000 tokens; a result per target",
        BroadcastData,
        batch.BroadcastBody,
        errors=(409,),
        tag="batch",
        description="docs/batch.md. A target that fails (no such channel, a permission "
        "the project token lacks) is that target's error; 409 in_progress: a request "
        "with the same idempotency_key is still running.",
    ),
    ("POST", "/v1/batch"): Operation(
        "Up to 1,000 operations (publish, direct, set_state, patch_state, "
        "subscribe_token, remove_token); a result per operation",
        BatchData,
        batch.BatchDocument,
        tag="batch",
        description="docs/batch.md. In order unless parallel; a malformed or refused "
        "operation is that item's error, and the others are carried out.",
    ),
    # Project settings (Switchboard's own).
    ("GET", "/v1/settings"): Operation(
        "The project's settings: its default history for new channels, its token inboxes",
        project_settings.SettingsData,
        tag="settings",
    ),
    ("PATCH", "/v1/settings"): Operation(
        "Change the project's settings (only the fields present)",
        project_settings.SettingsData,
        project_settings.SettingsBody,
        tag="settings",
    ),
    # Webhooks (Switchboard's own): a token with every permission (docs/webhooks.md).
    ("GET", "/v1/webhooks"): Operation(
        "The project's webhook configuration (the secret by its hint)",
        wh.WebhooksData,
        tag="webhooks",
    ),
    ("PUT", "/v1/webhooks"): Operation(
        "Set the webhook configuration; the first one answers with its signing secret",
        wh.WebhooksData,
        wh.WebhooksBody,
        tag="webhooks",
    ),
    ("DELETE", "/v1/webhooks"): Operation(
        "Remove the webhook configuration", Empty, tag="webhooks"
    ),
    ("POST", "/v1/webhooks/secret"): Operation(
        "A new signing secret (the old one stops signing at once)",
        wh.SecretData,
        tag="webhooks",
    ),
    ("GET", "/v1/webhooks/deliveries"): Operation(
        "The last delivery attempts, newest first",
        wh.DeliveryList,
        query=(
            Query(
                "limit",
                {"type": "integer", "minimum": 1},
                "1 to the log size (--webhook-log-size); 50 if absent.",
                True,
                maximum=_webhook_log_size,
            ),
        ),
        tag="webhooks",
    ),
    # Not JSON: listed so the document has every route, described by their content.
    ("GET", "/ws"): Operation(
        "The Leap Edge gateway (WebSocket upgrade; SPEC §3)",
        auth=False,
        content="websocket",
        tag="gateway",
    ),
    ("GET", "/1.0/ws"): Operation(
        "The Leap Edge gateway, Hop's path", auth=False, content="websocket", tag="gateway"
    ),
    ("GET", "/console"): Operation(
        "The web console", auth=False, content="text/html", tag="console"
    ),
    ("GET", "/console/"): Operation(
        "The web console", auth=False, content="text/html", tag="console"
    ),
    ("GET", "/console/{name}"): Operation(
        "A file of the web console", auth=False, content="application/octet-stream", tag="console"
    ),
    ("GET", "/openapi.json"): Operation(
        "This document (OpenAPI 3.1)", auth=False, content="application/json", tag="meta"
    ),
    ("GET", "/docs"): Operation(
        "This document as a page", auth=False, content="text/html", tag="meta"
    ),
    # Only with --metrics; for operators, unauthenticated (docs/metrics.md).
    ("GET", "/metrics"): Operation(
        "Prometheus metrics of this node (only with --metrics)",
        auth=False,
        content="text/plain",
        tag="meta",
    ),
}

STATUS_TEXT = {
    400: "invalid_request: the request is malformed or a value is out of range",
    401: "invalid_auth: no project token, or an unknown or revoked one",
    403: "forbidden: ?project= names another project",
    404: "not_found: no such route, channel or token in this project",
    408: "request_timeout: the body did not arrive in time",
    409: "already_exists: the channel exists; in_progress: a request with the same "
    "idempotency_key is still running",
    413: "payload_too_large: over the 1 MiB request or the 64 KiB payload limit",
    429: "rate_limited: too many requests",
    500: "internal_error: the server failed",
    503: "unavailable: the store or broker cannot be reached, or the node is stopping",
}
