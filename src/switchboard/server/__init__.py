"""The Switchboard server.

General layout (an arrow is "imports"; nothing imports upwards, ``tests/test_house.py``
checks it, and ``docs/architecture.md`` draws it):

    protocol/   the Leap protocol of one connection: frames and LeapSession, no I/O
        ^
    fanout/     this node's sockets: the hub, the write coalescer, the dispatch of
        ^       each broker event, recovery's holds, presence. No aiohttp, no store.
    edge/       the only code that touches aiohttp's WebSocket: the gateway, the Leap
        |       steps (identify, subscribe, ...), a socket's close and expiry
        v
    api/        the REST API (routes, auth, the envelope, OpenAPI, the console's stats)
        |
        v
    service/    every rule of channels, tokens and subscriptions, in one place
        |
        v
    store/      durable state (SQLite, Redis)     broker/  events between nodes, presence

``webhooks/`` sends the app what happened (fed by the service and the hub's occupancy
changes); ``observability/`` reads everyone's counters for ``/metrics``. ``node.py``
makes every part with the parts it uses, in dependency order, and runs them;
``cli/`` is the command line. The modules left here are the shared vocabulary:
``config`` (Settings), ``models`` (Project, Token, Channel), ``history`` (history's
types), ``ids``, ``permissions``, ``clock``, ``ratelimit``, ``aio``, ``logs`` and
``redis_pool``. Nothing here is imported by the SDKs (``switchboard``,
``switchboard.client``).
"""
