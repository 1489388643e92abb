"""Durable state: projects, project tokens, channels with state, tokens, subscriptions.

:class:`Store` is the interface; :class:`SqliteStore` the embedded implementation.
One contract test suite (``tests/store``) runs against every implementation.
"""

from switchboard.server.store.base import IN_FLIGHT, Store
from switchboard.server.store.sqlite import SqliteStore

__all__ = ["IN_FLIGHT", "SqliteStore", "Store"]
