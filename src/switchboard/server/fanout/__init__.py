"""The fan-out: this node's sockets, and how every event reaches them.

No aiohttp, no store, no service: the edge (``switchboard.server.edge``) hands the hub
its connections, and the broker hands the dispatch its events.

- ``connection.py``: a socket as the fan-out sees it, the frames it is sent and the
  per-turn write coalescer (the leaf every other module here imports).
- ``hub.py``: the indexes (by channel, by token), join and leave, the broadcast, stats.
- ``dispatch.py``: one small function per broker event.
- ``holds.py``: history recovery's hold on a connection's live frames of a channel.
- ``presence.py``: who is subscribed where, and the opt-in join/leave dispatches.
- ``activity.py``: messages per project per second, for the console.
"""

from switchboard.server.fanout.connection import Connection, Outgoing
from switchboard.server.fanout.dispatch import Dispatch
from switchboard.server.fanout.hub import Hub, HubStats

__all__ = ["Connection", "Dispatch", "Hub", "HubStats", "Outgoing"]
