"""The server SDK (REST), re-exported by :mod:`switchboard`.

Layout: ``_models`` (results); ``_calls`` (what a call is, how its answer is read, the
argument checks) and, per resource, the module where its requests are built and its
answers read, once: ``_channel_calls``, ``_token_calls``, ``_presence``, ``_project``,
``_webhooks``, ``_batch`` (``sb.broadcast``, ``sb.batch``); ``_settings`` (configuration and the retry policy). The async client is
hand-written: ``_async_api`` (:class:`AsyncSwitchboard`) and its parts ``_channels_async``,
``_tokens_async``, ``_project_async`` (settings, webhooks) and ``_transport_async``. The
sync client is generated from it by ``_unasync``, module for module: ``_sync_api``,
``_channels_sync``, ``_tokens_sync``, ``_project_sync``, ``_transport_sync``.
``_io_async``/``_io_sync`` hold the only two things that differ by hand: how to wait and
how to send many calls.
"""

from switchboard._rest._async_api import AsyncSwitchboard
from switchboard._rest._batch import Batch, BatchResult, ItemResult
from switchboard._rest._channels_async import AsyncChannelsAPI
from switchboard._rest._channels_sync import ChannelsAPI
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
from switchboard._rest._project_async import AsyncSettingsAPI, AsyncWebhooksAPI
from switchboard._rest._project_sync import SettingsAPI, WebhooksAPI
from switchboard._rest._sync_api import Switchboard
from switchboard._rest._tokens_async import AsyncTokensAPI
from switchboard._rest._tokens_sync import TokensAPI
from switchboard._rest._webhooks import WebhookConfig, WebhookDelivery

__all__ = [
    "AsyncChannelsAPI",
    "AsyncSettingsAPI",
    "AsyncSwitchboard",
    "AsyncTokensAPI",
    "AsyncWebhooksAPI",
    "Batch",
    "BatchResult",
    "Channel",
    "ChannelPresence",
    "ChannelType",
    "ChannelsAPI",
    "History",
    "HistoryMessage",
    "HistorySettings",
    "ItemResult",
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
