"""Reconnect delays: exponential, jittered, reset by a successful connection."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays between reconnect attempts.

    Attempt ``n`` (from 0) waits a random time between ``minimum`` and
    ``min(maximum, minimum * 2 ** (n + 1))``: clients dropped together by a server
    restart do not all come back in the same instant.
    """

    def __init__(
        self, minimum: float, maximum: float, rng: Callable[[], float] = random.random
    ) -> None:
        if minimum < 0 or maximum < minimum:
            raise ValueError(
                "reconnect_delay must be (minimum, maximum) with 0 <= minimum <= maximum"
            )
        self.minimum = minimum
        self.maximum = maximum
        self.attempt = 0
        self._rng = rng

    def next(self) -> float:
        """The delay before the next attempt."""
        ceiling = min(self.maximum, self.minimum * 2.0 ** (self.attempt + 1))
        self.attempt += 1
        return self.minimum + (ceiling - self.minimum) * self._rng()

    def reset(self) -> None:
        self.attempt = 0
