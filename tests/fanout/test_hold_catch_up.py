"""A recovery's hold after its release: the catch-up that keeps the live copy of a
replayed message from reaching the client a second time (issue 17, item 1).

The hub is driven directly with events, as the broker gives them; the race over real
sockets is in tests/edge/test_recovery_seam_race.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest

from switchboard.server.broker import events as ev
from switchboard.server.fanout import Connection, Dispatch, Hub
from switchboard.server.fanout import holds as holds_module
from switchboard.server.history import NoHistoryCache
from tests.fanout.sockets import RecordingTransport, next_turn, split_frames


def message(offset: int, epoch: str = "e1") -> ev.ChannelMessage:
    return ev.ChannelMessage(
        "p", "room", "m", msgspec.Raw(b"%d" % offset), offset=offset, epoch=epoch
    )


def received(transport: RecordingTransport) -> list[tuple[str, Any]]:
    """(event, offset or state) of each dispatch the socket was written."""
    out = []
    for payload in split_frames(b"".join(transport.writes)):
        d = json.loads(payload)["d"]
        out.append((d["e"], d["d"].get("offset", d["d"].get("state"))))
    return out


def recovering(hub: Hub) -> tuple[Connection, RecordingTransport, holds_module.Hold]:
    transport = RecordingTransport()
    conn = Connection(
        hub.writer,
        transport,
        cid="c",
        project_id="p",
        token_id=None,
        scope="noauth",
        compressed=False,
    )
    hub.attach(conn)
    hub.join(conn, "room")
    return conn, transport, hub.hold(conn, "room")


def replay_of(*offsets: int) -> list[bytes]:
    return [json.dumps({"d": {"e": "REPLAY", "d": {"offset": o}}}).encode() for o in offsets]


async def test_the_live_copy_of_the_last_replayed_message_is_left_out() -> None:
    hub = Hub(max_buffered_bytes=1 << 20)
    _, transport, hold = recovering(hub)
    Dispatch(hub, NoHistoryCache()).handle(message(3))  # held: the replay below carries it
    hub.release(hold, replay_of(3, 4), through=4, epoch="e1")
    # Offset 4 was in the history the replay read; its broadcast comes only now.
    Dispatch(hub, NoHistoryCache()).handle(message(4))
    Dispatch(hub, NoHistoryCache()).handle(message(5))
    Dispatch(hub, NoHistoryCache()).handle(
        message(6)
    )  # the catch-up ended at 5: plain fan-out from here
    await next_turn()
    assert received(transport) == [("REPLAY", 3), ("REPLAY", 4), ("MESSAGE", 5), ("MESSAGE", 6)]
    assert not hub.holds


async def test_state_updates_during_the_catch_up_arrive_in_order() -> None:
    hub = Hub(max_buffered_bytes=1 << 20)
    _, transport, hold = recovering(hub)
    hub.release(hold, replay_of(4), through=4, epoch="e1")
    Dispatch(hub, NoHistoryCache()).handle(
        ev.ChannelStateChanged("p", "room", msgspec.Raw(b'{"n":1}'))
    )
    Dispatch(hub, NoHistoryCache()).handle(message(4))
    Dispatch(hub, NoHistoryCache()).handle(message(5))
    await next_turn()
    assert received(transport) == [("REPLAY", 4), ("STATE_UPDATE", {"n": 1}), ("MESSAGE", 5)]


async def test_a_new_epoch_ends_the_catch_up_and_is_delivered() -> None:
    hub = Hub(max_buffered_bytes=1 << 20)
    _, transport, hold = recovering(hub)
    hub.release(hold, replay_of(4), through=4, epoch="e1")
    Dispatch(hub, NoHistoryCache()).handle(message(1, epoch="e2"))
    await next_turn()
    assert received(transport) == [("REPLAY", 4), ("MESSAGE", 1)]
    assert not hub.holds


async def test_a_live_copy_that_never_comes_ends_the_catch_up_in_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(holds_module, "CATCH_UP_S", 0.05)
    hub = Hub(max_buffered_bytes=1 << 20)
    conn, transport, hold = recovering(hub)
    hub.release(hold, replay_of(4), through=4, epoch="e1")
    Dispatch(hub, NoHistoryCache()).handle(
        ev.ChannelStateChanged("p", "room", msgspec.Raw(b"1"))
    )  # no offset
    assert hub.holds  # still in catch-up
    await asyncio.sleep(0.1)
    assert not hub.holds
    assert conn.channels == {"room"}
    Dispatch(hub, NoHistoryCache()).handle(message(5))  # by the fan-out set again
    await next_turn()
    assert received(transport) == [("REPLAY", 4), ("STATE_UPDATE", 1), ("MESSAGE", 5)]


async def test_leaving_during_the_catch_up_stops_the_frames() -> None:
    hub = Hub(max_buffered_bytes=1 << 20)
    conn, transport, hold = recovering(hub)
    hub.release(hold, replay_of(4), through=4, epoch="e1")
    hub.leave(conn, "room")
    Dispatch(hub, NoHistoryCache()).handle(message(5))
    await next_turn()
    assert received(transport) == [("REPLAY", 4)]
    assert not hub.holds


async def test_a_second_release_is_a_no_op() -> None:
    hub = Hub(max_buffered_bytes=1 << 20)
    _, transport, hold = recovering(hub)
    hub.release(hold, replay_of(4), through=4, epoch="e1")
    hub.release(hold, [], None, None)
    Dispatch(hub, NoHistoryCache()).handle(message(4))
    await next_turn()
    assert received(transport) == [("REPLAY", 4)]
