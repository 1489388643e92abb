"""`Service`: every operation and every access rule, in one place.

The REST API and the gateway both call this; neither re-implements a rule. Methods
take the caller's project (already authenticated) and plain values, check them against
the limits, change the store, then tell every node through the broker.

Rules of channel types (SPEC §1):

- ``unprotected``: anyone who knows the ID may subscribe, with a token or without.
- ``public``: any connection identified with a token of the project.
- ``private``: only tokens granted a subscription (``PUT .../subscribers/:token``).
- A project-scope connection (IDENTIFY with a project token) may subscribe to any channel;
  its token needs ``read_channels`` to IDENTIFY and ``publish_channel_messages`` to publish.

Which REST route needs which project-token permission is one table
(``switchboard.server.permissions``), checked where a REST call is authenticated.

A token's subscriptions are durable, whichever way they were made; a tokenless or
project-scope connection's last as long as the connection.


The operations are grouped by concept in this package's modules; :class:`Service` is
all of them on one object.
"""

from __future__ import annotations

from switchboard.server.service._base import SORT_FIELDS, expired, is_json_object
from switchboard.server.service.batch import BatchOperations
from switchboard.server.service.channels import ChannelOperations
from switchboard.server.service.history_reads import HistoryReads, Recovery
from switchboard.server.service.leap import Identity, LeapOperations, Subscription
from switchboard.server.service.lifecycle import LifecycleOperations
from switchboard.server.service.tokens import TokenOperations

__all__ = [
    "SORT_FIELDS",
    "Identity",
    "Recovery",
    "Service",
    "Subscription",
    "expired",
    "is_json_object",
]


class Service(
    BatchOperations,
    ChannelOperations,
    TokenOperations,
    LeapOperations,
    LifecycleOperations,
    HistoryReads,
):
    """See the module docstring."""
