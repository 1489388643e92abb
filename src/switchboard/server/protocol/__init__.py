"""The Leap Edge protocol without I/O: frames in, frames and intents out (SPEC §3)."""

from switchboard.server.protocol.frames import CloseCode, Op
from switchboard.server.protocol.session import (
    ClientPublish,
    Event,
    Identify,
    LeapSession,
    RefreshToken,
    SessionState,
    Subscribe,
    Unsubscribe,
)

__all__ = [
    "ClientPublish",
    "CloseCode",
    "Event",
    "Identify",
    "LeapSession",
    "Op",
    "RefreshToken",
    "SessionState",
    "Subscribe",
    "Unsubscribe",
]
