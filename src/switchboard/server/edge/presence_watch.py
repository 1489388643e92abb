"""Starting a presence watch: the one step of presence that awaits (the cluster snapshot)."""

from __future__ import annotations

import asyncio

from switchboard.server.fanout.presence import Key, Presence
from switchboard.server.service import Service


async def start_watch(presence: Presence, service: Service, key: Key) -> None:
    """Make sure ``key`` is watched on this node, seeded from a snapshot of the cluster.

    The first connection of this node to ask reads the snapshot; events that arrive
    meanwhile are kept and applied after it (see :mod:`switchboard.server.fanout.presence`).
    Later ones wait for that same snapshot. On return the caller adds its connection
    with :meth:`Presence.add_watcher`, with no await in between, so it misses nothing.
    """
    while True:
        watch, new = presence.watch(key)
        if new:
            try:
                shares, states = await service.presence_snapshot(*key)
            except BaseException:
                presence.abandon(key)
                raise
            presence.seed(key, shares, states)
            return
        # Shielded: a waiter's cancellation (its socket closing) must not cancel the
        # snapshot everyone else waits for.
        await asyncio.shield(watch.ready)
        if presence.watches.get(key) is watch:
            return
        # The snapshot failed, or its reader left and the watch was dropped: read anew.
