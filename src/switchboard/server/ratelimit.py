"""Token buckets: how many calls may be made per second, with a burst.

Pure bookkeeping (time is passed in, never read): :class:`Bucket` is one allowance (a
Leap session's frame budget and flood strikes); :class:`TokenBuckets` keys many (the REST
API's per-project-token limit).
The number of keys is bounded: when it is reached, the buckets that are full again (idle
long enough to have forgotten every call) are dropped, then the first-made half, so a flood
of distinct keys cannot grow memory without bound.
"""

from __future__ import annotations


class Bucket:
    """``rate`` tokens per second, at most ``burst`` held; starts full."""

    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.at = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def wait(self) -> float:
        """Seconds until the next token, after a :meth:`take` that found none."""
        return (1.0 - self.tokens) / self.rate


class TokenBuckets:
    """``rate`` calls per second per key, a burst of ``burst`` (default: ``rate``)."""

    def __init__(self, rate: float, burst: float | None = None, *, max_keys: int = 100_000) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)
        self.max_keys = max_keys
        self._buckets: dict[str, Bucket] = {}
        self.refused = 0

    def take(self, key: str, now: float) -> float:
        """Spend one call of ``key``: 0.0 if allowed, else the seconds until one is."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._forget(now)
            bucket = self._buckets[key] = Bucket(self.rate, self.burst, now)
        if bucket.take(now):
            return 0.0
        self.refused += 1
        return bucket.wait()

    def _forget(self, now: float) -> None:
        full_after = self.burst / self.rate
        idle = [k for k, b in self._buckets.items() if now - b.at >= full_after]
        for key in idle:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            # Still full: drop the oldest half (dicts keep insertion order).
            for key in list(self._buckets)[: self.max_keys // 2]:
                del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
