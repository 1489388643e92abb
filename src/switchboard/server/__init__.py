"""The Switchboard server.

General layout (each arrow is "calls"; DESIGN.md §1 draws it):

    gateway (WebSocket I/O) -> protocol (LeapSession, no I/O)
    gateway, api (REST)     -> service (every rule of channels, tokens, subscriptions)
    service                 -> store (durable state), broker (fan-out, presence)
    broker                  -> hub (this node's sockets: encode once, write to each)

``node`` assembles one running server; ``cli`` is the command line. Nothing here is
imported by the SDKs (``switchboard``, ``switchboard.client``).
"""
