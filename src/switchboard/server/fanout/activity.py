"""`Activity`: messages per project on this node, as a per-second time series.

The hub calls :meth:`Activity.count` once for every channel message and direct message
it carries out: one ``defaultdict`` increment, nothing else on the hot path. A sampler
(the console's background task, see ``api/console.py``) calls :meth:`Activity.sample`
about once a second; it turns the running totals into per-second counts and keeps the
last :attr:`Activity.window` of them for each project that has had any traffic.

In a cluster every node's hub hears every message event (the broker's one topic), so
the series of any node is the cluster's message rate, not just this node's.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable


class Activity:
    """Per-project message counters and their recent per-second series."""

    __slots__ = ("_clock", "_last", "_last_sample", "_series", "totals", "window")

    def __init__(self, window: int = 300, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        """How many one-second samples are kept per project (300: five minutes)."""
        self.totals: defaultdict[str, int] = defaultdict(int)
        """Messages per project since this node started. The hub increments it."""
        self._clock = clock
        self._last: dict[str, int] = {}
        self._series: dict[str, deque[float]] = {}
        self._last_sample = clock()

    def count(self, project_id: str, n: int = 1) -> None:
        """``n`` messages for ``project_id`` (the hub's hot path: one dict increment)."""
        self.totals[project_id] += n

    def sample(self) -> None:
        """Close the current interval: append messages-per-second to every active series.

        An interval longer than a second (a busy event loop) is spread evenly over the
        whole seconds it covered, so the series stays one value per second of wall time.
        """
        now = self._clock()
        seconds = max(1, round(now - self._last_sample))
        self._last_sample = now
        for project_id, total in list(self.totals.items()):
            delta = total - self._last.get(project_id, 0)
            self._last[project_id] = total
            series = self._series.get(project_id)
            if series is None:
                if delta == 0:
                    continue
                series = self._series[project_id] = deque([0.0] * self.window, self.window)
            rate = delta / seconds
            series.extend([rate] * min(seconds, self.window))
        # A project quiet for a whole window needs no series (zeros are the default).
        for project_id in [p for p, s in self._series.items() if not any(s)]:
            del self._series[project_id]

    def series(self, project_id: str) -> list[float]:
        """The last ``window`` seconds of messages per second, oldest first."""
        found = self._series.get(project_id)
        return list(found) if found is not None else [0.0] * self.window

    def total(self, project_id: str) -> int:
        return self.totals.get(project_id, 0)
