"""Fan-out between nodes and presence: :class:`Broker` and its implementations."""

from switchboard.server.broker.base import Broker
from switchboard.server.broker.events import BrokerEvent
from switchboard.server.broker.local import LocalBroker

__all__ = ["Broker", "BrokerEvent", "LocalBroker"]
