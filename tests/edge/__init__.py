"""The edge over real sockets: the gateway's upgrade checks, the Leap steps, closes,
history recovery's seam, token expiry and refresh (``switchboard.server.edge``)."""
