"""LeapSession, driven with strings in and strings out; time is a number we pass."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.server.protocol import (
    ClientPublish,
    CloseCode,
    Identify,
    LeapSession,
    SessionState,
    Subscribe,
    Unsubscribe,
)
from switchboard.server.protocol.session import SessionLimits


def sent(session: LeapSession) -> list[Any]:
    return [json.loads(frame) for frame in session.data_to_send()]


def new_session(now: float = 0.0, **limits: Any) -> LeapSession:
    session = LeapSession(now=now, limits=SessionLimits(**limits))
    return session


def identified(now: float = 0.0, **limits: Any) -> LeapSession:
    session = new_session(now, **limits)
    session.data_to_send()
    session.receive_text('{"op":2,"d":{"project_id":"project_1","token":"leap_token_x"}}', now)
    assert session.events_received() == [Identify("project_1", "leap_token_x")]
    session.accept(
        {"cid": "c1", "connection_count": 1, "metadata": None, "scope": "token", "channels": []}
    )
    session.data_to_send()
    return session


def test_hello_is_the_first_frame() -> None:
    session = new_session(heartbeat_interval_ms=12_345)
    assert sent(session) == [{"op": 1, "d": {"heartbeat_interval": 12345}}]


@pytest.mark.parametrize(
    ("identify", "token"),
    [
        ('{"op":2,"d":{"project_id":"p"}}', None),
        ('{"op":2,"d":{"project_id":"p","token":null}}', None),
        ('{"op":2,"d":{"project_id":"p","token":""}}', None),
        ('{"op":2,"d":{"project_id":"p","token":"leap_token_a"}}', "leap_token_a"),
    ],
)
def test_identify_without_token_means_no_token(identify: str, token: str | None) -> None:
    session = new_session()
    session.receive_text(identify, 1.0)
    assert session.events_received() == [Identify("p", token)]
    assert session.state is SessionState.IDENTIFYING


def test_accept_sends_init_with_all_four_dispatch_keys() -> None:
    session = new_session()
    session.data_to_send()
    session.receive_text('{"op":2,"d":{"project_id":"p"}}', 0)
    session.events_received()
    session.accept(
        {"cid": "c", "connection_count": 1, "metadata": None, "scope": "noauth", "channels": []}
    )
    assert sent(session) == [
        {
            "op": 0,
            "d": {
                "c": None,
                "u": True,
                "e": "INIT",
                "d": {
                    "cid": "c",
                    "connection_count": 1,
                    "metadata": None,
                    "scope": "noauth",
                    "channels": [],
                },
            },
        }
    ]
    assert session.state is SessionState.OPEN


def test_accept_outside_identifying_is_a_bug() -> None:
    with pytest.raises(RuntimeError, match="expected IDENTIFYING"):
        new_session().accept({})


def test_identify_deadline_closes_4002() -> None:
    session = new_session(identify_timeout_s=10)
    session.tick(9.9)
    assert session.state is SessionState.AWAITING_IDENTIFY
    session.tick(10.0)
    assert session.close_code == CloseCode.IDENTIFY_TIMEOUT


def test_heartbeat_before_identify_is_acked() -> None:
    session = new_session()
    session.data_to_send()
    session.receive_text('{"op":3}', 1)
    assert sent(session) == [{"op": 4}]


def test_every_client_heartbeat_is_acked_at_once() -> None:
    session = identified()
    for i in range(3):
        session.receive_text('{"op":3}', i)
        assert sent(session) == [{"op": 4}]


def test_go_style_heartbeat_with_empty_tag_echoes_it() -> None:
    session = identified()
    session.receive_text('{"op":3,"d":{"tag":""}}', 1)
    assert sent(session) == [{"op": 4, "d": {"tag": ""}}]


def test_silent_client_is_probed_then_acked_with_latency() -> None:
    session = identified(heartbeat_interval_ms=1000)
    session.tick(0.5)
    assert sent(session) == []
    session.tick(1.0)
    probe = sent(session)
    assert probe == [{"op": 3, "d": {"tag": "1"}}]
    session.tick(1.2)
    assert sent(session) == []  # one probe at a time
    session.receive_text('{"op":3,"d":{"tag":"1"}}', 1.25)
    assert sent(session) == [{"op": 4, "d": {"tag": "1", "latency": 250}}]


def test_no_heartbeat_for_one_and_a_half_intervals_plus_five_seconds_closes_4007() -> None:
    session = identified(heartbeat_interval_ms=10_000)
    session.tick(19.9)
    assert session.state is SessionState.OPEN
    session.tick(20.0)
    assert session.close_code == CloseCode.OUT_OF_SYNC


def test_any_frame_keeps_the_connection_alive() -> None:
    session = identified(heartbeat_interval_ms=10_000)
    session.receive_text('{"op":0,"d":{"c":"a","e":"SUBSCRIBE","d":null}}', 15)
    session.tick(34.9)
    assert session.state is SessionState.OPEN


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", CloseCode.INVALID_PAYLOAD),
        ("[1,2]", CloseCode.INVALID_PAYLOAD),
        ('{"d":{}}', CloseCode.INVALID_PAYLOAD),
        ('{"op":"0"}', CloseCode.INVALID_PAYLOAD),
        ('{"op":true}', CloseCode.INVALID_PAYLOAD),
        ('{"op":2}', CloseCode.INVALID_PAYLOAD),
        ('{"op":2,"d":{"token":"x"}}', CloseCode.INVALID_PAYLOAD),
        ('{"op":2,"d":{"project_id":5}}', CloseCode.INVALID_PAYLOAD),
        ('{"op":0,"d":{"c":"a","e":"SUBSCRIBE"}}', CloseCode.NOT_AUTHENTICATED),
        ('{"op":9}', CloseCode.UNKNOWN_OPCODE),
        ('{"op":1,"d":{}}', CloseCode.UNKNOWN_OPCODE),
        ('{"op":4}', CloseCode.UNKNOWN_OPCODE),
    ],
)
def test_bad_frames_before_identify(frame: str, code: int) -> None:
    session = new_session()
    session.receive_text(frame, 0)
    assert session.close_code == code
    assert session.state is SessionState.CLOSED


@pytest.mark.parametrize(
    "frame",
    [
        '{"op":0,"d":null}',
        '{"op":0,"d":{"c":"a"}}',
        '{"op":0,"d":{"c":"a","e":5}}',
        '{"op":0,"d":{"c":null,"e":"SUBSCRIBE","d":null}}',
        '{"op":0,"d":{"c":"","e":"SUBSCRIBE","d":null}}',
        '{"op":0,"d":{"c":"a","e":"MESSAGE","d":null}}',
        '{"op":0,"d":{"c":"a","e":"MESSAGE","d":{"d":1}}}',
        '{"op":0,"d":{"c":"a","e":"MESSAGE","d":{"e":1}}}',
        '{"op":2,"d":{"project_id":"p"}}',
    ],
)
def test_wrong_shapes_after_identify_close_4005(frame: str) -> None:
    session = identified()
    session.receive_text(frame, 0)
    assert session.close_code == CloseCode.INVALID_PAYLOAD


def test_dispatches_become_events_in_order() -> None:
    session = identified()
    session.receive_text('{"op":0,"d":{"c":"a","e":"SUBSCRIBE","d":null}}', 0)
    session.receive_text(
        '{"op":0,"d":{"c":"a","u":false,"e":"MESSAGE","d":{"e":"x","d":[1, 2]}}}', 0
    )
    session.receive_text('{"op":0,"d":{"c":"a","e":"UNSUBSCRIBE","d":null}}', 0)
    events = session.events_received()
    assert events[0] == Subscribe("a")
    assert isinstance(events[1], ClientPublish)
    assert (events[1].channel, events[1].event, bytes(events[1].data)) == ("a", "x", b"[1, 2]")
    assert events[2] == Unsubscribe("a")
    assert session.events_received() == []


def test_unknown_dispatch_events_are_ignored() -> None:
    session = identified()
    session.receive_text(
        '{"op":0,"d":{"c":null,"e":"PIPE_ROOM_SUBSCRIBE","d":{"join_token":"x"}}}', 0
    )
    assert session.events_received() == []
    assert sent(session) == []
    assert session.state is SessionState.OPEN


def test_set_channel_state_is_refused_with_an_error_dispatch() -> None:
    session = identified()
    session.receive_text('{"op":0,"d":{"c":"a","e":"SET_CHANNEL_STATE","d":{"x":1}}}', 0)
    assert session.events_received() == []
    [frame] = sent(session)
    assert frame["d"]["e"] == "ERROR"
    assert frame["d"]["c"] == "a"
    assert frame["d"]["u"] is True
    assert frame["d"]["d"]["code"] == "forbidden"
    assert session.state is SessionState.OPEN


def message(event: str = "ev", data: str = "1") -> str:
    return f'{{"op":0,"d":{{"c":"a","e":"MESSAGE","d":{{"e":"{event}","d":{data}}}}}}}'


def test_client_messages_are_rate_limited_per_connection() -> None:
    session = identified(messages_per_second=5)
    for _ in range(5):
        session.receive_text(message(), 0)
    assert len(session.events_received()) == 5
    session.receive_text(message(), 0)
    assert session.events_received() == []
    [frame] = sent(session)
    assert frame["d"]["e"] == "ERROR"
    assert frame["d"]["d"]["code"] == "rate_limited"
    assert session.state is SessionState.OPEN
    session.receive_text(message(), 0.2)  # 0.2 s at 5/s refills one
    assert len(session.events_received()) == 1


def test_oversize_message_data_is_refused_not_delivered() -> None:
    session = identified(max_payload_bytes=10)
    session.receive_text(message(data='"0123456789ABC"'), 0)
    assert session.events_received() == []
    [frame] = sent(session)
    assert frame["d"]["d"]["code"] == "payload_too_large"


@pytest.mark.parametrize("event", ["", "x" * 129])
def test_event_names_must_be_1_to_128_characters(event: str) -> None:
    session = identified()
    session.receive_text(message(event=event), 0)
    assert session.events_received() == []
    assert sent(session)[0]["d"]["d"]["code"] == "invalid_request"


def test_the_first_close_decision_wins_and_nothing_is_sent_after() -> None:
    session = identified()
    session.close(4001, "token deleted")
    session.close(4005, "later")
    session.receive_text('{"op":3}', 0)
    session.send(b"{}")
    assert (session.close_code, session.close_reason) == (4001, "token deleted")
    assert session.data_to_send() == []


def test_next_deadline_follows_the_state() -> None:
    session = new_session(now=100, identify_timeout_s=10, heartbeat_interval_ms=20_000)
    assert session.next_deadline() == 110
    session.receive_text('{"op":2,"d":{"project_id":"p"}}', 101)
    session.events_received()
    session.accept({})
    assert session.next_deadline() == 121
    session.close(4000, "x")
    assert session.next_deadline() is None


@given(st.text(max_size=200))
def test_arbitrary_text_never_raises(text: str) -> None:
    session = identified()
    session.receive_text(text, 0)
    session.tick(1)
    session.data_to_send()
    session.events_received()
    assert session.state in (SessionState.OPEN, SessionState.CLOSED)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=10,
    )
)
def test_arbitrary_json_closes_with_a_leap_code_or_stays_open(value: Any) -> None:
    session = identified()
    session.receive_text(json.dumps({"op": 0, "d": value}), 0)
    assert session.state is SessionState.OPEN or session.close_code in {4003, 4004, 4005}


def test_subscribe_asks_for_presence_only_with_d_presence_true() -> None:
    from switchboard.server.protocol.session import Subscribe

    cases = [
        ('{"presence":true}', True),
        ('{"presence":true,"other":1}', True),
        ("null", False),
        ('{"presence":false}', False),
        ('{"presence":"yes"}', False),
        ("[true]", False),
        ('"presence"', False),
    ]
    for d, wanted in cases:
        session = LeapSession(now=0.0)
        session.receive_text('{"op":2,"d":{"project_id":"p"}}', 0.0)
        session.events_received()
        session.accept({})
        session.receive_text('{"op":0,"d":{"c":"room","e":"SUBSCRIBE","d":' + d + "}}", 0.0)
        assert session.events_received() == [Subscribe("room", wanted)], d
        assert session.state is SessionState.OPEN
