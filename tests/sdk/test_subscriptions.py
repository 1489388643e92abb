"""The client's subscription bookkeeping, driven directly (it does no I/O): the orderings
a real server produces only by chance."""

from __future__ import annotations

import json

import pytest

from switchboard import SubscriptionRefused
from switchboard.client import Available, DirectMessage, Init, LeapChannel, UnknownDispatch
from switchboard.client._backoff import Backoff
from switchboard.client._events import parse_dispatch
from switchboard.client._subscriptions import Subscriptions


def channel(name: str, **state: object) -> LeapChannel:
    return LeapChannel(name, "project_1", "public", dict(state))


def init(scope: str = "token", *channels: LeapChannel) -> Init:
    return Init("c1", 1, None, scope, tuple(channels))


def sent(book: Subscriptions) -> list[tuple[str, str | None]]:
    """The frames queued, as (event or "BEAT", channel)."""
    out: list[tuple[str, str | None]] = []
    for text in book.data_to_send():
        frame = json.loads(text)
        out.append(("BEAT", None) if frame["op"] == 3 else (frame["d"]["e"], frame["d"]["c"]))
    return out


async def test_late_answer_to_a_subscribe_made_before_unsubscribing_is_ignored() -> None:
    book = Subscriptions()
    book.on_init(init())
    pending = book.subscribe("a")
    book.unsubscribe("a")
    assert sent(book) == [("SUBSCRIBE", "a"), ("UNSUBSCRIBE", "a"), ("BEAT", None)]
    with pytest.raises(SubscriptionRefused):
        await pending
    assert book.on_available("a", channel("a")) is False  # answers the old SUBSCRIBE
    assert book.channels == frozenset()
    assert not book.accepts("a")
    book.on_heartbeat_ack()  # the UNSUBSCRIBE is handled: a grant after it counts
    assert book.accepts("a")
    assert book.on_available("a", channel("a", n=1)) is True
    assert book.state("a") == {"n": 1}


async def test_a_new_grant_after_unsubscribing_is_taken() -> None:
    book = Subscriptions()
    book.on_init(init("token", channel("a")))
    book.unsubscribe("a")
    # Unsolicited (no SUBSCRIBE in flight): the backend granted it again.
    assert book.on_available("a", channel("a")) is True
    assert book.channels == {"a"}


async def test_resubscribing_after_unsubscribe_always_sends_subscribe() -> None:
    book = Subscriptions()
    book.on_init(init())
    book.subscribe("a")
    book.unsubscribe("a")
    again = book.subscribe("a")
    assert sent(book)[-1] == ("SUBSCRIBE", "a")
    book.on_available("a", channel("a"))  # the first SUBSCRIBE's answer
    assert (await again) == {}


async def test_unconfirmed_unsubscribe_is_sent_again_only_if_init_lists_it() -> None:
    book = Subscriptions()
    book.on_init(init("token", channel("a"), channel("b")))
    book.unsubscribe("a")
    book.unsubscribe("b")
    sent(book)
    book.on_connection_lost()
    book.on_init(init("token", channel("a")))  # "b" was handled before the drop
    assert sent(book) == [("UNSUBSCRIBE", "a"), ("BEAT", None)]
    assert book.channels == frozenset()


async def test_tokenless_reconnect_rejoins_held_and_pending_channels() -> None:
    book = Subscriptions()
    book.on_init(init("noauth"))
    book.subscribe("a")
    book.on_available("a", channel("a", v=1))
    pending = book.subscribe("b")
    sent(book)
    book.on_connection_lost()
    assert book.state("a") == {"v": 1}  # the last state stays readable meanwhile
    book.on_init(init("noauth"))
    assert sent(book) == [("SUBSCRIBE", "a"), ("SUBSCRIBE", "b")]
    assert book.channels == frozenset()  # until answered
    book.on_unavailable("a", False, "UNKNOWN")  # deleted meanwhile
    book.on_available("b", channel("b"))
    assert await pending == {}
    assert book.channels == {"b"}


async def test_heartbeat_liveness() -> None:
    book = Subscriptions()
    assert book.heartbeat() is True
    assert book.heartbeat() is False  # the first beat was never acked
    book.on_heartbeat_ack()
    assert book.heartbeat() is True


def test_backoff_grows_with_jitter_and_resets() -> None:
    backoff = Backoff(1.0, 10.0, rng=lambda: 1.0)
    assert [backoff.next() for _ in range(5)] == [2.0, 4.0, 8.0, 10.0, 10.0]
    backoff.reset()
    low = Backoff(1.0, 10.0, rng=lambda: 0.0)
    assert low.next() == 1.0


def test_parse_dispatch_never_raises() -> None:
    assert parse_dispatch(
        {"c": None, "u": True, "e": "DIRECT_MESSAGE", "d": {"e": "x", "d": 1}}
    ) == DirectMessage("x", 1)
    available = parse_dispatch(
        {
            "c": "a",
            "u": True,
            "e": "AVAILABLE",
            "d": {
                "channel": {
                    "id": "a",
                    "project_id": "p",
                    "type": "public",
                    "state": {"k": 1},
                    "capabilities": 0,
                }
            },
        }
    )
    assert isinstance(available, Available) and available.info.state == {"k": 1}
    assert isinstance(
        parse_dispatch({"c": None, "e": "PIPE_ROOM_UPDATE", "d": {}}), UnknownDispatch
    )
    assert isinstance(parse_dispatch({"c": None, "e": "MESSAGE", "d": {}}), UnknownDispatch)
    assert isinstance(parse_dispatch({"e": "STATE_UPDATE", "c": "a", "d": None}), UnknownDispatch)
    assert isinstance(parse_dispatch([1]), UnknownDispatch)


# Presence (Switchboard's own): the opt-in rides on SUBSCRIBE and is asked again after reconnects.


def subscribe_data(book: Subscriptions) -> list[tuple[str, object]]:
    return [
        (frame["d"]["c"], frame["d"]["d"])
        for frame in map(json.loads, book.data_to_send())
        if frame["op"] == 0 and frame["d"]["e"] == "SUBSCRIBE"
    ]


async def test_presence_is_asked_with_subscribe_and_again_after_a_reconnect() -> None:
    book = Subscriptions()
    book.on_init(init("token", channel("held")))
    plain = book.subscribe("plain")
    watched = book.subscribe("room", presence=True)
    assert subscribe_data(book) == [("plain", None), ("room", {"presence": True})]
    book.on_available("plain", channel("plain"))
    book.on_available("room", channel("room"))
    assert await plain == {} and await watched == {}
    # A channel held already is subscribed again to ask (its state comes back fresh).
    again = book.subscribe("held", presence=True)
    assert subscribe_data(book) == [("held", {"presence": True})]
    book.on_available("held", channel("held", n=2))
    assert await again == {"n": 2}
    # The server forgets presence with the socket: INIT lists the channels, yet the
    # watched ones are subscribed again; the plain one is not.
    book.on_connection_lost()
    book.on_init(init("token", channel("plain"), channel("room"), channel("held")))
    assert sorted(subscribe_data(book)) == [
        ("held", {"presence": True}),
        ("room", {"presence": True}),
    ]
    # Unsubscribing ends it: a later plain subscribe does not ask.
    book.unsubscribe("room")
    book.data_to_send()
    book.subscribe("room")
    assert subscribe_data(book) == [("room", None)]


def test_presence_dispatches_parse_and_bad_ones_are_unknown() -> None:
    from switchboard.client import Member, PresenceJoin, PresenceLeave, PresenceSnapshot

    member = {"member_id": "member_1", "state": {"n": 1}}
    assert parse_dispatch({"c": "r", "u": True, "e": "PRESENCE", "d": {"presence": [member]}}) == (
        PresenceSnapshot("r", (Member("member_1", {"n": 1}),))
    )
    assert parse_dispatch({"c": "r", "u": False, "e": "PRESENCE_JOIN", "d": member}) == (
        PresenceJoin("r", Member("member_1", {"n": 1}))
    )
    assert parse_dispatch({"c": "r", "u": False, "e": "PRESENCE_LEAVE", "d": member}) == (
        PresenceLeave("r", Member("member_1", {"n": 1}))
    )
    for bad in (
        {"c": None, "e": "PRESENCE_JOIN", "d": member},
        {"c": "r", "e": "PRESENCE", "d": {}},
    ):
        assert isinstance(parse_dispatch(bad), UnknownDispatch)
