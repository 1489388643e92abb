"""`switchboard serve`'s webhook options (docs/webhooks.md), as one decorator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from switchboard.server.config import Settings

F = TypeVar("F", bound=Callable[..., Any])

_DEFAULTS = Settings()


def webhook_options(fn: F) -> F:
    """Add --webhook-timeout, --webhook-retries, --webhook-retry-base,
    --webhook-authorize-timeout and --webhook-log-size to a command."""
    options = [
        click.option(
            "--webhook-timeout",
            default=_DEFAULTS.webhook_timeout_s,
            show_default=True,
            type=click.FloatRange(min=0.1, max=60),
            envvar="SWITCHBOARD_WEBHOOK_TIMEOUT",
            show_envvar=True,
            help="Seconds one webhook attempt may take (connect, send, answer).",
        ),
        click.option(
            "--webhook-retries",
            default=_DEFAULTS.webhook_retries,
            show_default=True,
            type=click.IntRange(min=0, max=20),
            envvar="SWITCHBOARD_WEBHOOK_RETRIES",
            show_envvar=True,
            help="Attempts after the first before a webhook is given up on.",
        ),
        click.option(
            "--webhook-retry-base",
            default=_DEFAULTS.webhook_retry_base_s,
            show_default=True,
            type=click.FloatRange(min=0.01, max=60),
            envvar="SWITCHBOARD_WEBHOOK_RETRY_BASE",
            show_envvar=True,
            help="Seconds before the first retry; doubled for each next one (at most 60).",
        ),
        click.option(
            "--webhook-authorize-timeout",
            default=_DEFAULTS.webhook_authorize_timeout_s,
            show_default=True,
            type=click.FloatRange(min=0.1, max=30),
            envvar="SWITCHBOARD_WEBHOOK_AUTHORIZE_TIMEOUT",
            show_envvar=True,
            help="Seconds a SUBSCRIBE waits for the app's subscribe hook before it is refused.",
        ),
        click.option(
            "--webhook-log-size",
            default=_DEFAULTS.webhook_log_size,
            show_default=True,
            type=click.IntRange(min=1, max=10_000),
            envvar="SWITCHBOARD_WEBHOOK_LOG_SIZE",
            show_envvar=True,
            help="Delivery attempts kept per project (GET /v1/webhooks/deliveries).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn
