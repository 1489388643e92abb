"""`switchboard serve`'s webhook options (docs/webhooks.md), as one decorator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from switchboard.server.cli._options import option
from switchboard.server.config import Settings

F = TypeVar("F", bound=Callable[..., Any])

_DEFAULTS = Settings()

_OPTIONS = [
    option(
        "--webhook-timeout",
        "webhook_timeout_s",
        default=_DEFAULTS.webhook_timeout_s,
        type=click.FloatRange(min=0.1, max=60),
        help="Seconds one webhook attempt may take (connect, send, answer).",
    ),
    option(
        "--webhook-retries",
        default=_DEFAULTS.webhook_retries,
        type=click.IntRange(min=0, max=20),
        help="Attempts after the first before a webhook is given up on.",
    ),
    option(
        "--webhook-retry-base",
        "webhook_retry_base_s",
        default=_DEFAULTS.webhook_retry_base_s,
        type=click.FloatRange(min=0.01, max=60),
        help="Seconds before the first retry; doubled for each next one (at most 60).",
    ),
    option(
        "--webhook-authorize-timeout",
        "webhook_authorize_timeout_s",
        default=_DEFAULTS.webhook_authorize_timeout_s,
        type=click.FloatRange(min=0.1, max=30),
        help="Seconds a SUBSCRIBE waits for the app's subscribe hook before it is refused.",
    ),
    option(
        "--webhook-log-size",
        default=_DEFAULTS.webhook_log_size,
        type=click.IntRange(min=1, max=10_000),
        help="Delivery attempts kept per project (GET /v1/webhooks/deliveries).",
    ),
]


def webhook_options(fn: F) -> F:
    """Add --webhook-timeout, --webhook-retries, --webhook-retry-base,
    --webhook-authorize-timeout and --webhook-log-size to a command."""
    for decorate in reversed(_OPTIONS):
        fn = decorate(fn)
    return fn
