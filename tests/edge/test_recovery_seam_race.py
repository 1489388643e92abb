"""The recovery seam under load (issue 17, item 1): many sockets recover a channel with
``SUBSCRIBE since`` while a publisher streams REST publishes into it, round after round.

Each socket must get every offset after its position exactly once, in order: the replay
(``u: true``) up to ``RECOVERY``, then the live messages (``u: false``). Before the fix
the message at ``top_offset`` arrived twice in about one recovery in five: it was in the
history the replay read, but its broadcast reached the hub only after the hold ended.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import Server
from tests.e2e.leap import Leap, leap
from tests.edge.test_history_recovery import epoch_of, history_channel, publish, subscribe

pytestmark = pytest.mark.timeout(120)

ROUNDS = 6
SOCKETS_PER_ROUND = 12
LAST_OFFSET = 50


async def recover_all(client: Leap, since: int, epoch: str) -> list[tuple[int, bool]]:
    """Recover from ``since`` and read until the last offset: (offset, unicast) each."""
    available = await subscribe(client, "feed", {"since": {"offset": since, "epoch": epoch}})
    assert available["e"] == "AVAILABLE", available
    seen: list[tuple[int, bool]] = []
    recovered = False
    while not seen or seen[-1][0] < LAST_OFFSET or not recovered:
        d: dict[str, Any] = await client.dispatch(timeout=10.0)
        if d["e"] == "RECOVERY":
            assert d["d"]["recovered"] is True, d
            # Everything replayed is at or below the top the recovery names.
            assert all(offset <= d["d"]["top_offset"] for offset, _ in seen), (seen, d)
            recovered = True
            continue
        assert d["e"] == "MESSAGE", d
        # Replayed before RECOVERY, live after it.
        assert d["u"] is (not recovered), (d, recovered)
        seen.append((d["d"]["offset"], d["u"]))
    return seen


async def one_round(node: Server, http: httpx.AsyncClient, round_no: int) -> None:
    await history_channel(http, "feed", "unprotected")
    await publish(http, "feed", 1, 2)
    epoch = await epoch_of(http, "feed")

    async def recovering_socket(delay: float) -> list[tuple[int, bool]]:
        async with leap(node.ws_url, node.project_id) as client:
            await asyncio.sleep(delay)
            return await recover_all(client, 2, epoch)

    # Staggered, so recoveries start all through the publish stream.
    sockets = [asyncio.create_task(recovering_socket(0.004 * i)) for i in range(SOCKETS_PER_ROUND)]
    await publish(http, "feed", *range(3, LAST_OFFSET + 1))
    for task in sockets:
        offsets = [offset for offset, _ in await task]
        assert offsets == list(range(3, LAST_OFFSET + 1)), f"round {round_no}: {offsets}"
    await http.delete("/channels/feed")


async def test_many_recoveries_under_a_publish_stream_see_each_offset_once(
    node: Server, http: httpx.AsyncClient
) -> None:
    for round_no in range(ROUNDS):
        await one_round(node, http, round_no)
