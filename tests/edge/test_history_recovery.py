"""History recovery over raw Leap frames (Switchboard's; docs/protocol.md "History
recovery"): SUBSCRIBE since, IDENTIFY recover, the failures, the access rule, and the
seam between the replay and live messages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import msgspec
import pytest

from switchboard.server.history import HistoryPage
from tests.conftest import Server
from tests.e2e.leap import Leap, leap
from tests.edge.test_gateway import make_token, ok

pytestmark = pytest.mark.timeout(30)


async def history_channel(
    http: httpx.AsyncClient, channel: str, kind: str = "public", size: int = 100
) -> None:
    await ok(http.put(f"/channels/{channel}", json={"type": kind, "history": {"size": size}}))


async def publish(http: httpx.AsyncClient, channel: str, *values: int) -> None:
    for value in values:
        await ok(http.post(f"/channels/{channel}/messages", json={"e": "m", "d": value}))


async def epoch_of(http: httpx.AsyncClient, channel: str) -> str:
    epoch: str = (await ok(http.get(f"/channels/{channel}/messages")))["epoch"]
    return epoch


async def subscribe(client: Leap, channel: str, d: Any) -> dict[str, Any]:
    await client.send({"op": 0, "d": {"c": channel, "e": "SUBSCRIBE", "d": d}})
    return await client.dispatch()


async def until_recovery(client: Leap) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The replayed MESSAGE dispatches, then the RECOVERY that ends them."""
    replayed: list[dict[str, Any]] = []
    while True:
        d = await client.dispatch()
        if d["e"] == "RECOVERY":
            assert d["u"] is True
            return replayed, d
        assert d["e"] == "MESSAGE" and d["u"] is True, d
        replayed.append(d)


def values(dispatches: list[dict[str, Any]]) -> list[tuple[int, Any]]:
    return [(d["d"]["offset"], d["d"]["d"]) for d in dispatches]


async def test_subscribe_since_replays_what_was_missed_then_goes_live(
    node: Server, http: httpx.AsyncClient
) -> None:
    await history_channel(http, "feed", "unprotected")
    await publish(http, "feed", 10, 20, 30, 40, 50)
    epoch = await epoch_of(http, "feed")
    async with leap(node.ws_url, node.project_id) as client:
        available = await subscribe(client, "feed", {"since": {"offset": 2, "epoch": epoch}})
        assert available["e"] == "AVAILABLE"
        replayed, recovery = await until_recovery(client)
        assert values(replayed) == [(3, 30), (4, 40), (5, 50)]
        assert replayed[0]["d"] == {"e": "m", "d": 30, "offset": 3, "epoch": epoch}
        assert recovery["c"] == "feed"
        assert recovery["d"] == {"recovered": True, "epoch": epoch, "top_offset": 5}
        await publish(http, "feed", 60)
        live = await client.dispatch("MESSAGE")
        assert live["u"] is False and live["d"]["offset"] == 6


async def test_no_position_yet_is_answered_with_where_the_history_is(
    node: Server, http: httpx.AsyncClient
) -> None:
    await history_channel(http, "feed", "unprotected")
    await publish(http, "feed", 1, 2)
    epoch = await epoch_of(http, "feed")
    async with leap(node.ws_url, node.project_id) as client:
        await subscribe(client, "feed", {"since": {"offset": 0, "epoch": None}, "presence": False})
        assert await until_recovery(client) == (
            [],
            {
                "c": "feed",
                "u": True,
                "e": "RECOVERY",
                "d": {"recovered": True, "epoch": epoch, "top_offset": 2},
            },
        )
        await client.nothing()


async def test_the_gap_cannot_be_filled(node: Server, http: httpx.AsyncClient) -> None:
    await history_channel(http, "small", "unprotected", size=3)
    await publish(http, "small", *range(1, 11))
    epoch = await epoch_of(http, "small")
    await ok(http.put("/channels/plain", json={"type": "unprotected"}))
    async with leap(node.ws_url, node.project_id) as client:
        cases = [
            ({"offset": 1, "epoch": epoch}, "too_old"),
            ({"offset": 6, "epoch": epoch}, "too_old"),  # first kept is 8: 7 is gone
            ({"offset": 3, "epoch": "00000000"}, "epoch_changed"),
            ({"offset": 11, "epoch": epoch}, "offset_ahead"),
        ]
        for since, reason in cases:
            await subscribe(client, "small", {"since": since})
            replayed, recovery = await until_recovery(client)
            assert replayed == []
            assert recovery["d"] == {
                "recovered": False,
                "reason": reason,
                "epoch": epoch,
                "top_offset": 10,
            }
        await subscribe(client, "small", {"since": {"offset": 7, "epoch": epoch}})
        replayed, recovery = await until_recovery(client)
        assert values(replayed) == [(8, 8), (9, 9), (10, 10)] and recovery["d"]["recovered"]
        # A channel without history: said to a client that claims a position in one...
        await subscribe(client, "plain", {"since": {"offset": 3, "epoch": epoch}})
        assert (await until_recovery(client))[1]["d"] == {
            "recovered": False,
            "reason": "no_history",
            "epoch": None,
            "top_offset": None,
        }
        # ... and nothing at all to one that only asked where the history is.
        await subscribe(client, "plain", {"since": {"epoch": None}})
        await client.nothing()


async def test_a_channel_made_again_has_another_epoch(
    node: Server, http: httpx.AsyncClient
) -> None:
    await history_channel(http, "feed", "unprotected")
    await publish(http, "feed", 1, 2)
    old = await epoch_of(http, "feed")
    await ok(http.delete("/channels/feed"))
    await history_channel(http, "feed", "unprotected")
    await publish(http, "feed", 3)
    new = await epoch_of(http, "feed")
    async with leap(node.ws_url, node.project_id) as client:
        await subscribe(client, "feed", {"since": {"offset": 2, "epoch": old}})
        recovery = (await until_recovery(client))[1]
        assert recovery["d"] == {
            "recovered": False,
            "reason": "epoch_changed",
            "epoch": new,
            "top_offset": 1,
        }


async def test_identify_recovers_the_channels_init_lists(
    node: Server, http: httpx.AsyncClient
) -> None:
    token = await make_token(http)
    await history_channel(http, "feed", "private")
    await history_channel(http, "quiet", "private")
    await ok(http.put("/channels/plain", json={"type": "private"}))
    for channel in ("feed", "quiet", "plain"):
        await ok(http.put(f"/channels/{channel}/subscribers/{token}"))
    await history_channel(http, "secret", "private")  # not granted to the token
    await publish(http, "feed", 1, 2, 3)
    await publish(http, "secret", 1)
    await publish(http, "quiet", 1)
    epoch = await epoch_of(http, "feed")
    async with leap(node.ws_url) as client:
        await client.recv()
        await client.send(
            {
                "op": 2,
                "d": {
                    "project_id": node.project_id,
                    "token": token,
                    "recover": {
                        "feed": {"offset": 1, "epoch": epoch},
                        "secret": {"offset": 0, "epoch": await epoch_of(http, "secret")},
                    },
                },
            }
        )
        init = await client.dispatch("INIT")
        assert sorted(c["id"] for c in init["d"]["channels"]) == ["feed", "plain", "quiet"]
        by_channel: dict[str, Any] = {}
        for _ in range(2):  # feed (replayed) and quiet (its position): none for plain, secret
            replayed, recovery = await until_recovery(client)
            by_channel[recovery["c"]] = (values(replayed), recovery["d"])
        assert by_channel["feed"] == (
            [(2, 2), (3, 3)],
            {"recovered": True, "epoch": epoch, "top_offset": 3},
        )
        assert by_channel["quiet"][0] == [] and by_channel["quiet"][1]["top_offset"] == 1
        await client.nothing()
        await publish(http, "feed", 4)
        assert (await client.dispatch("MESSAGE"))["d"]["offset"] == 4


async def test_only_a_connection_that_may_subscribe_reads_the_history(
    node: Server, http: httpx.AsyncClient
) -> None:
    await history_channel(http, "vip", "private")
    await history_channel(http, "members", "public")
    await publish(http, "vip", 1)
    await publish(http, "members", 1)
    since = {"since": {"offset": 0, "epoch": await epoch_of(http, "vip")}}
    token = await make_token(http)
    async with leap(node.ws_url, node.project_id) as anonymous:
        for channel in ("vip", "members"):
            refused = await subscribe(anonymous, channel, since)
            assert refused["e"] == "UNAVAILABLE"
            assert refused["d"]["error_code"] == "NOT_GRANTED"
        await anonymous.nothing()
    async with leap(node.ws_url, node.project_id, token) as user:
        assert (await subscribe(user, "vip", since))["e"] == "UNAVAILABLE"
        await user.nothing()


async def test_a_plain_subscribe_sees_nothing_new(node: Server, http: httpx.AsyncClient) -> None:
    # What Hop's clients send: d null. No replay, no RECOVERY, only the offsets on MESSAGE.
    await history_channel(http, "feed", "unprotected")
    await publish(http, "feed", 1)
    async with leap(node.ws_url, node.project_id) as client:
        assert (await client.subscribe("feed"))["e"] == "AVAILABLE"
        await client.nothing()


def slow_reads(
    node: Server, during: Callable[[], Awaitable[None]], *, before_reading: bool
) -> list[int]:
    """Make node's history reads run ``during`` inside them: before the read (so what it
    publishes is in the replay and also held live) or after it (only held live)."""
    assert node.node is not None
    store = node.node.service.store
    read = store.read_history
    calls: list[int] = []

    async def read_history(
        project_id: str, channel_id: str, since: int, limit: int
    ) -> HistoryPage | None:
        calls.append(since)
        if len(calls) == 1 and before_reading:
            await during()
        page = await read(project_id, channel_id, since, limit)
        if len(calls) == 1 and not before_reading:
            await during()
        return page

    store.read_history = read_history  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("before_reading", [True, False])
async def test_messages_published_during_the_read_come_once_in_order(
    node: Server, http: httpx.AsyncClient, before_reading: bool
) -> None:
    """The seam: publishes made while the replay is read reach the client exactly once,
    after the replay and in offset order, whether the read sees them or not."""
    await history_channel(http, "feed", "unprotected")
    await publish(http, "feed", 1, 2, 3)
    epoch = await epoch_of(http, "feed")
    assert node.node is not None
    service = node.node.service

    async def publish_meanwhile() -> None:
        project = await service.store.get_project(node.project_id)
        assert project is not None
        for value in (4, 5, 6):
            await service.publish_message(project, "feed", "m", msgspec.Raw(b"%d" % value))

    calls = slow_reads(node, publish_meanwhile, before_reading=before_reading)
    async with leap(node.ws_url, node.project_id) as client:
        await subscribe(client, "feed", {"since": {"offset": 1, "epoch": epoch}})
        replayed, recovery = await until_recovery(client)
        live = [await client.dispatch("MESSAGE") for _ in range(6 - 1 - len(replayed))]
        await client.nothing()
    assert calls == [1]
    offsets = [d["d"]["offset"] for d in replayed + live]
    assert offsets == [2, 3, 4, 5, 6]
    assert all(d["u"] is True for d in replayed) and all(d["u"] is False for d in live)
    expected_replay = [2, 3, 4, 5, 6] if before_reading else [2, 3]
    assert [d["d"]["offset"] for d in replayed] == expected_replay
    assert recovery["d"]["recovered"] is True


async def test_a_recovering_connection_keeps_state_updates_in_order_and_leaves_on_delete(
    node: Server, http: httpx.AsyncClient
) -> None:
    await history_channel(http, "feed", "unprotected")
    await publish(http, "feed", 1)
    epoch = await epoch_of(http, "feed")
    assert node.node is not None

    async def change_state() -> None:
        await ok(http.put("/channels/feed/state", json={"n": 1}))
        await publish(http, "feed", 2)

    slow_reads(node, change_state, before_reading=False)
    async with leap(node.ws_url, node.project_id) as client:
        await subscribe(client, "feed", {"since": {"offset": 1, "epoch": epoch}})
        assert await until_recovery(client) == (
            [],
            {
                "c": "feed",
                "u": True,
                "e": "RECOVERY",
                "d": {"recovered": True, "epoch": epoch, "top_offset": 1},
            },
        )
        assert (await client.dispatch("STATE_UPDATE"))["d"] == {"state": {"n": 1}}
        assert (await client.dispatch("MESSAGE"))["d"]["offset"] == 2
        assert await ok(http.get("/channels/feed/stats")) == {"stats": {"online_count": 1}}

    async def delete() -> None:
        await ok(http.delete("/channels/feed"))

    slow_reads(node, delete, before_reading=False)
    async with leap(node.ws_url, node.project_id) as client:
        # Deleted while its history is read: UNAVAILABLE, no replay, no RECOVERY.
        await subscribe(client, "feed", {"since": {"offset": 0, "epoch": None}})
        gone = await client.dispatch("UNAVAILABLE")
        assert gone["d"] == {"graceful": True}
        await client.nothing()
        await ok(http.put("/channels/feed", json={"type": "unprotected"}))
        await ok(http.post("/channels/feed/messages", json={"e": "m"}))
        await client.nothing()
