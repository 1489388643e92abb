"""The server SDK (REST), re-exported by :mod:`switchboard`.

Layout: ``_models`` (results), ``_calls`` (what a call is, how its answer is read, the
argument checks) and one module per resource where every request is built and every
answer read, once: ``_channel_calls``, ``_token_calls``, ``_presence``, ``_project``,
``_webhooks``. ``_settings`` (configuration and the retry policy), ``_async_api`` (the
async client, hand-written) and ``_sync_api`` (the sync client, generated from it by
``_unasync``). ``_io_async``/``_io_sync`` hold the only two things that differ by hand:
how to wait and how to send many calls.
"""

from switchboard._rest._async_api import (
    AsyncChannelsAPI,
    AsyncSettingsAPI,
    AsyncSwitchboard,
    AsyncTokensAPI,
    AsyncWebhooksAPI,
)
from switchboard._rest._models import (
    Channel,
    ChannelType,
    History,
    HistoryMessage,
    HistorySettings,
    Stats,
    Token,
)
from switchboard._rest._presence import ChannelPresence, PresenceMember
from switchboard._rest._project import ProjectSettings
from switchboard._rest._sync_api import (
    ChannelsAPI,
    SettingsAPI,
    Switchboard,
    TokensAPI,
    WebhooksAPI,
)
from switchboard._rest._webhooks import WebhookConfig, WebhookDelivery

__all__ = [
    "AsyncChannelsAPI",
    "AsyncSettingsAPI",
    "AsyncSwitchboard",
    "AsyncTokensAPI",
    "AsyncWebhooksAPI",
    "Channel",
    "ChannelPresence",
    "ChannelType",
    "ChannelsAPI",
    "History",
    "HistoryMessage",
    "HistorySettings",
    "PresenceMember",
    "ProjectSettings",
    "SettingsAPI",
    "Stats",
    "Switchboard",
    "Token",
    "TokensAPI",
    "WebhookConfig",
    "WebhookDelivery",
    "WebhooksAPI",
]
