"""The realtime client: connect to the Leap gateway as a user, with or without a token.

::

    from switchboard.client import connect

    async with connect(project_id, token, url="ws://localhost:4000/ws") as client:
        client.on_message("game", "MOVE", lambda data: print(data))
        state = await client.subscribe("game")

Needs only ``websockets`` and the standard library (no server dependencies).
"""

from switchboard.client._client import Client, ClientStatistics, ConnectionState
from switchboard.client._connect import connect
from switchboard.client._events import (
    Available,
    DirectMessage,
    ErrorEvent,
    Event,
    Init,
    LeapChannel,
    Member,
    Message,
    PresenceJoin,
    PresenceLeave,
    PresenceSnapshot,
    Recovery,
    StateUpdate,
    TokenExpiring,
    TokenRefreshed,
    TokenStateUpdate,
    Unavailable,
    UnknownDispatch,
)
from switchboard.client._wire import DEFAULT_URL, INBOX

__all__ = [
    "DEFAULT_URL",
    "INBOX",
    "Available",
    "Client",
    "ClientStatistics",
    "ConnectionState",
    "DirectMessage",
    "ErrorEvent",
    "Event",
    "Init",
    "LeapChannel",
    "Member",
    "Message",
    "PresenceJoin",
    "PresenceLeave",
    "PresenceSnapshot",
    "Recovery",
    "StateUpdate",
    "TokenExpiring",
    "TokenRefreshed",
    "TokenStateUpdate",
    "Unavailable",
    "UnknownDispatch",
    "connect",
]
