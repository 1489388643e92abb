"""Open sockets per client address: a bound against one host opening thousands.

Off by default (``--max-connections-per-ip 0``): many users behind one NAT or a
company proxy share an address, and a server behind a reverse proxy sees only the
proxy's. Where clients connect directly, a bound of a few hundred stops one host from
taking every file descriptor while costing real users nothing. The address is the
TCP peer's; ``X-Forwarded-For`` is not trusted (anyone can send it).
"""

from __future__ import annotations

from collections import Counter


class ConnectionsPerAddress:
    """See the module docstring. One counter per address with sockets open, no more."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()
        self.refused = 0

    def admit(self, address: str | None) -> bool:
        """Count a socket from ``address``; False (counting nothing) if it is at the limit."""
        if not self.limit or address is None:
            return True
        if self._open[address] >= self.limit:
            self.refused += 1
            return False
        self._open[address] += 1
        return True

    def release(self, address: str | None) -> None:
        if not self.limit or address is None:
            return
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]
