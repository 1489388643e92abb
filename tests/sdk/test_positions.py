"""The realtime client's positions (client/_recovery.py), strings in and out, no I/O: a
message is delivered once whatever order its live copy arrives in, and the position a
reconnect asks from is the last one up to which every message was seen."""

from __future__ import annotations

import random

from switchboard.client import INBOX
from switchboard.client._events import DirectMessage, Message, Recovery
from switchboard.client._recovery import MAX_AHEAD, Positions


def msg(offset: int, epoch: str = "e1") -> Message:
    return Message("room", "m", offset, offset, epoch)


def started(top: int = 0, channel: str = "room") -> Positions:
    positions = Positions(True)
    positions.on_recovery(Recovery(channel, True, None, "e1", top))
    return positions


def test_in_order_and_repeats() -> None:
    positions = started()
    assert [positions.accept(msg(n)) for n in (1, 2, 2, 3, 1)] == [True, True, False, True, False]
    assert positions.get("room") == ("e1", 3)


def test_a_late_copy_past_a_hole_is_delivered_once_and_the_position_waits_for_it() -> None:
    positions = started()
    assert positions.accept(msg(1))
    assert positions.accept(msg(3))
    assert positions.get("room") == ("e1", 1)  # 2 has not come: a reconnect asks from 1
    assert not positions.accept(msg(3))
    assert positions.accept(msg(2))
    assert positions.get("room") == ("e1", 3)
    assert not positions.accept(msg(2)) and not positions.accept(msg(3))


def test_any_arrival_order_delivers_each_message_once() -> None:
    rng = random.Random(7)
    for _ in range(50):
        positions = started(10)
        offsets = list(range(11, 211))
        # Two senders interleaved with bounded skew, and some copies twice.
        arrivals = sorted(offsets, key=lambda o: o + rng.uniform(-8, 8))
        arrivals += rng.sample(offsets, 20)
        delivered = [o for o in arrivals if positions.accept(msg(o))]
        assert sorted(delivered) == offsets
        assert positions.get("room") == ("e1", 210)


def test_a_hole_that_never_fills_is_given_up() -> None:
    positions = started()
    assert positions.accept(msg(1))
    for offset in range(3, 3 + MAX_AHEAD + 1):
        assert positions.accept(msg(offset))
    assert positions.get("room") == ("e1", 2 + MAX_AHEAD + 1)
    assert not positions.accept(msg(2))  # too late: it counts as lost, not as new


def test_a_recovery_fills_the_hole() -> None:
    positions = started()
    for offset in (1, 4, 5):
        assert positions.accept(msg(offset))
    assert positions.identify_map() == {"room": {"offset": 1, "epoch": "e1"}}
    # The replay after a reconnect brings 2 and 3, and 4, 5 again (dropped).
    replayed = [o for o in (2, 3, 4, 5) if positions.accept(msg(o))]
    assert replayed == [2, 3]
    positions.on_recovery(Recovery("room", True, None, "e1", 5))
    assert positions.get("room") == ("e1", 5)


def test_a_new_epoch_starts_over() -> None:
    positions = started()
    assert positions.accept(msg(1)) and positions.accept(msg(3))
    assert positions.accept(msg(1, "e2"))
    assert positions.get("room") == ("e2", 1)
    assert positions.accept(msg(3, "e2"))  # not the old epoch's 3


def test_the_inbox_is_held_the_same_way() -> None:
    positions = started(0, INBOX)
    for offset in (2, 1, 2):
        positions.accept(DirectMessage("dm", offset, offset, "e1"))
    assert positions.get(INBOX) == ("e1", 2)
