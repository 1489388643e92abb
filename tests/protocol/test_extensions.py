"""LeapSession and frames: Switchboard's opt-in extensions (token refresh, expiry notice,
history recovery), with strings in and strings out. A frame without them decodes as before."""

from __future__ import annotations

import json
from typing import Any

import pytest

from switchboard.server.protocol import (
    CloseCode,
    Identify,
    LeapSession,
    RefreshToken,
    Subscribe,
    frames,
)
from switchboard.server.protocol.frames import Since


def opened(identify: str = '{"op":2,"d":{"project_id":"p","token":"leap_token_a"}}') -> LeapSession:
    session = LeapSession(now=0.0)
    session.data_to_send()
    session.receive_text(identify, 0.0)
    session.events_received()
    session.accept({})
    session.data_to_send()
    return session


def identify_event(d: dict[str, Any]) -> Any:
    session = LeapSession(now=0.0)
    session.receive_text(json.dumps({"op": 2, "d": d}), 0.0)
    if session.close_code is not None:
        return session.close_code
    (event,) = session.events_received()
    return event


def test_identify_without_extensions_is_as_before() -> None:
    event = identify_event({"project_id": "p", "token": "leap_token_a"})
    assert event == Identify("p", "leap_token_a")
    assert event.expiry_notice_s is None and event.recover is None


def test_identify_with_an_expiry_notice_and_positions() -> None:
    event = identify_event(
        {
            "project_id": "p",
            "token": "leap_token_a",
            "expiry_notice": 30,
            "recover": {"feed": {"offset": 4, "epoch": "9f2c61ab"}, "other": {}},
        }
    )
    assert event.expiry_notice_s == 30
    assert event.recover == {"feed": Since(4, "9f2c61ab"), "other": Since(0, None)}
    assert identify_event({"project_id": "p", "recover": {}}).recover == {}


@pytest.mark.parametrize(
    "extra",
    [
        {"expiry_notice": 0},
        {"expiry_notice": -5},
        {"expiry_notice": 86401},
        {"expiry_notice": "soon"},
        {"recover": []},
        {"recover": {"feed": 3}},
        {"recover": {"feed": {"offset": -1, "epoch": "e"}}},
        {"recover": {"feed": {"offset": "1", "epoch": "e"}}},
    ],
)
def test_wrong_extension_shapes_in_identify_close_4005(extra: dict[str, Any]) -> None:
    assert identify_event({"project_id": "p", **extra}) == CloseCode.INVALID_PAYLOAD


@pytest.mark.parametrize(
    ("d", "presence", "since"),
    [
        ("null", False, None),
        ('{"presence":true}', True, None),
        ('{"since":{"offset":7,"epoch":"ab12cd34"}}', False, Since(7, "ab12cd34")),
        ('{"since":{"offset":7,"epoch":"ab12cd34"},"presence":true}', True, Since(7, "ab12cd34")),
        ('{"since":{}}', False, Since(0, None)),
        ('{"since":{"epoch":null}}', False, Since(0, None)),
        ('{"since":{"offset":3,"epoch":""}}', False, Since(3, None)),
        # A since of the wrong shape is ignored, like any other d: never an error.
        ('{"since":5,"presence":true}', True, None),
        ('{"since":{"offset":-1}}', False, None),
        ('{"since":{"offset":true}}', False, None),
        ('{"since":{"offset":1.5}}', False, None),
        ('{"since":{"offset":1,"epoch":5}}', False, None),
        ("[1]", False, None),
    ],
)
def test_subscribe_d_combines_presence_and_since(
    d: str, presence: bool, since: Since | None
) -> None:
    session = opened()
    session.receive_text('{"op":0,"d":{"c":"feed","e":"SUBSCRIBE","d":' + d + "}}", 0.0)
    assert session.events_received() == [Subscribe("feed", presence, since)]
    assert session.close_code is None


@pytest.mark.parametrize(
    ("d", "token"),
    [
        ('{"token":"leap_token_a"}', "leap_token_a"),
        ('{"token":""}', None),
        ('{"token":5}', None),
        ("null", None),
        ('"leap_token_a"', None),
    ],
)
def test_token_refresh_becomes_an_event_whatever_its_d(d: str, token: str | None) -> None:
    session = opened()
    session.receive_text('{"op":0,"d":{"c":null,"e":"TOKEN_REFRESH","d":' + d + "}}", 0.0)
    assert session.events_received() == [RefreshToken(token)]
    assert session.close_code is None and session.data_to_send() == []


def test_token_refresh_before_identify_is_a_dispatch_before_identify() -> None:
    session = LeapSession(now=0.0)
    session.receive_text('{"op":0,"d":{"c":null,"e":"TOKEN_REFRESH","d":{"token":"t"}}}', 0.0)
    assert session.close_code == CloseCode.NOT_AUTHENTICATED


def test_extension_frames_keep_the_four_dispatch_keys() -> None:
    built = [
        frames.token_expiring("2030-01-01T00:00:00.000Z", 5000),
        frames.token_refreshed(None),
        frames.refresh_error("invalid_request", "no"),
        frames.replayed_message("feed", "m", 3, 4, "ab12cd34"),
        frames.recovery("feed", recovered=True, epoch="ab12cd34", top_offset=4),
        frames.recovery("feed", recovered=False, epoch=None, top_offset=None, reason="no_history"),
    ]
    decoded = [json.loads(frame) for frame in built]
    for frame in decoded:
        assert frame["op"] == 0 and set(frame["d"]) == {"c", "u", "e", "d"}
        assert frame["d"]["u"] is True  # to that connection alone
    assert decoded[0]["d"]["d"] == {"expires_at": "2030-01-01T00:00:00.000Z", "expires_in_ms": 5000}
    assert decoded[2]["d"]["d"]["request"] == "TOKEN_REFRESH"
    assert decoded[3]["d"] == {
        "c": "feed",
        "u": True,
        "e": "MESSAGE",
        "d": {"e": "m", "d": 3, "offset": 4, "epoch": "ab12cd34"},
    }
    assert decoded[4]["d"]["d"] == {"recovered": True, "epoch": "ab12cd34", "top_offset": 4}
    assert decoded[5]["d"]["d"]["reason"] == "no_history"
