"""Switchboard: a self-hostable realtime Channels server with Tokens.

This top-level package is the Python server SDK and needs only the SDK's own
dependencies; the server lives in :mod:`switchboard.server` and the realtime client in
:mod:`switchboard.client`.
"""

from switchboard._rest import (
    AsyncSwitchboard,
    Channel,
    ChannelPresence,
    ChannelType,
    History,
    HistoryMessage,
    HistorySettings,
    PresenceMember,
    ProjectSettings,
    Stats,
    Switchboard,
    Token,
    WebhookConfig,
    WebhookDelivery,
)
from switchboard.exceptions import (
    APIError,
    AuthenticationFailed,
    Conflict,
    ConnectionClosed,
    Forbidden,
    InternalError,
    InvalidRequest,
    MissingPermission,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    SubscriptionRefused,
    SwitchboardError,
    TokenRefreshFailed,
    Unauthorized,
    Unavailable,
)

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AsyncSwitchboard",
    "AuthenticationFailed",
    "Channel",
    "ChannelPresence",
    "ChannelType",
    "Conflict",
    "ConnectionClosed",
    "Forbidden",
    "History",
    "HistoryMessage",
    "HistorySettings",
    "InternalError",
    "InvalidRequest",
    "MissingPermission",
    "NotFound",
    "PayloadTooLarge",
    "PresenceMember",
    "ProjectSettings",
    "RateLimited",
    "Stats",
    "SubscriptionRefused",
    "Switchboard",
    "SwitchboardError",
    "Token",
    "TokenRefreshFailed",
    "Unauthorized",
    "Unavailable",
    "WebhookConfig",
    "WebhookDelivery",
    "__version__",
]
