"""The edge: the only code that touches aiohttp's WebSocket.

- ``gateway.py``: the upgrade's checks (origin, per-address bound), each socket's
  reader, the sweeper that ticks every session, and the shutdown.
- ``leap.py``: what each Leap request does (identify, subscribe, refresh, publish) as
  small steps against the service and the hub.
- ``socket.py``: a socket's place in the hub (:class:`SocketConnection`), its close and
  its token-expiry timers.
- ``recovery.py`` and ``presence_watch.py``: the two awaiting steps of a SUBSCRIBE
  (reading history for a recovery, the cluster's presence snapshot).
- ``lingering_close.py``: the RFC 6455 close of a socket whose client is still writing.
- ``address_limit.py`` and ``origins.py``: the checks made before an upgrade.
"""

from switchboard.server.edge.gateway import Gateway

__all__ = ["Gateway"]
