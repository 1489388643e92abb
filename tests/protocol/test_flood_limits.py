"""Flood limits of LeapSession: a frame budget, strikes, and close 4008 (simulated time)."""

from __future__ import annotations

import json

import pytest

from switchboard.server.protocol import ClientPublish, CloseCode, Subscribe
from tests.protocol.test_session import identified, sent

MESSAGE = '{"op":0,"d":{"c":"room","e":"MESSAGE","d":{"e":"m","d":1}}}'
SUBSCRIBE = '{"op":0,"d":{"c":"room","e":"SUBSCRIBE","d":null}}'


def send_at_rate(per_second: float, seconds: float, frame: str = MESSAGE) -> tuple[int, int]:
    """Messages sent evenly over ``seconds``: (delivered, refused); the session stays open."""
    session = identified()
    delivered = refused = 0
    steps = int(per_second * seconds)
    for i in range(steps):
        now = i / per_second
        session.receive_text(frame, now)
        delivered += sum(isinstance(e, ClientPublish) for e in session.events_received())
        refused += sum(f["d"]["e"] == "ERROR" for f in sent(session) if f["op"] == 0)
        assert session.close_code is None, f"closed after {now:.2f} s at {per_second}/s"
    return delivered, refused


@pytest.mark.parametrize("over", [1.0, 1.5, 1.9])
def test_a_client_up_to_twice_the_rate_is_refused_but_never_closed(over: float) -> None:
    sent_count = int(50 * over * 20)
    delivered, refused = send_at_rate(50 * over, 20)
    # The rate over 20 s plus the first burst, or everything if that is less.
    assert delivered == pytest.approx(min(sent_count, 50 * 20 + 50), abs=2)
    assert refused == sent_count - delivered


@pytest.mark.parametrize(("over", "within"), [(3, 3.0), (10, 0.5), (100, 0.05)])
def test_a_client_far_over_the_rate_is_closed_4008(over: int, within: float) -> None:
    session = identified()
    rate = 50 * over
    for i in range(rate * 5):
        now = i / rate
        session.receive_text(MESSAGE, now)
        session.events_received()
        if session.close_code is not None:
            break
    assert session.close_code == CloseCode.FLOODING
    assert "messages" in session.close_reason
    assert now < within


def test_frames_past_the_budget_are_dropped_unread() -> None:
    session = identified(frames_per_second=10, flood_strikes=1000)
    for _ in range(30):  # all at one instant: the burst is twice the rate, IDENTIFY took one
        session.receive_text(SUBSCRIBE, 0.0)
    assert len([e for e in session.events_received() if isinstance(e, Subscribe)]) == 19
    assert session.close_code is None
    # A second later the budget has refilled by the rate.
    for _ in range(30):
        session.receive_text(SUBSCRIBE, 1.0)
    assert len(session.events_received()) == 10


def test_a_subscribe_flood_is_closed_4008() -> None:
    session = identified()
    for i in range(2000):
        now = i / 10_000
        session.receive_text(SUBSCRIBE, now)
        if session.close_code is not None:
            break
    assert session.close_code == CloseCode.FLOODING
    assert "frames" in session.close_reason
    taken = [e for e in session.events_received() if isinstance(e, Subscribe)]
    assert len(taken) <= 400 + 200 * now  # the burst and the rate, no more
    # The close is the last thing: nothing more is taken in.
    session.receive_text(SUBSCRIBE, 1.0)
    assert session.events_received() == []


def test_garbage_counts_against_the_budget_too() -> None:
    """Frames that carry no dispatch count too: a flood of heartbeats ends in 4008."""
    session = identified()
    heartbeat = json.dumps({"op": 3})
    for i in range(5000):
        session.receive_text(heartbeat, i / 100_000)
        if session.close_code is not None:
            break
    assert session.close_code == CloseCode.FLOODING


def test_token_buckets_per_key_and_the_wait_they_name() -> None:
    from switchboard.server.ratelimit import TokenBuckets

    buckets = TokenBuckets(10)
    assert [buckets.take("a", 0.0) for _ in range(10)] == [0.0] * 10
    assert buckets.take("a", 0.0) == pytest.approx(0.1)  # one token comes back in 0.1 s
    assert buckets.take("b", 0.0) == 0.0  # another key is unaffected
    assert buckets.take("a", 0.1) == 0.0
    assert buckets.refused == 1


def test_token_buckets_keep_a_bounded_number_of_keys() -> None:
    from switchboard.server.ratelimit import TokenBuckets

    buckets = TokenBuckets(10, max_keys=100)
    for i in range(10_000):
        buckets.take(f"k{i}", i / 1000)
    assert len(buckets) <= 100
