"""Random and mutated frames into the sans-I/O entry points, judged by an oracle.

Each property feeds one frame (text, or bytes as a binary frame holds them) to a fresh
``LeapSession``, waiting for IDENTIFY or identified, and compares what the session does
with what SPEC §3 says, as :func:`tests.protocol._fuzz.expected` reads it with the
standard library's ``json``: the same close code (4003, 4004, 4005) or the same intent
or reply, and never an exception. The decoders in ``frames`` are fuzzed on their own
too: they return or raise ``ProtocolViolation(4005)``, nothing else.

Where frames are decoded: aiohttp hands the session a text frame as a str (it has
checked the UTF-8 itself and closes with 1007 otherwise) and a binary frame as bytes;
the session decodes both with msgspec (``frames.decode_frame``). So a binary frame
whose bytes are JSON is read like text, and bytes that are not UTF-8 end with 4005.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.exceptions import ProtocolViolation
from switchboard.server.protocol import frames
from switchboard.server.protocol.session import (
    ClientPublish,
    Identify,
    LeapSession,
    SessionState,
    Subscribe,
    Unsubscribe,
)
from tests.protocol import _fuzz
from tests.protocol._fuzz import CASES, Outcome, expected, fuzz_settings, mutate

# Big enough that no fuzzed message hits the payload limit: the oracle does not judge
# sizes (SIZE is fuzzed by the state machine, where each message's bytes are known).
LIMITS = _fuzz.limits(max_payload_bytes=1 << 24)


def session_for(identified: bool) -> LeapSession:
    session = LeapSession(now=0.0, limits=LIMITS)
    if identified:
        session.receive_text('{"op":2,"d":{"project_id":"project_1"}}', 0.0)
        session.events_received()
        session.accept({"cid": "c", "connection_count": 1, "metadata": None, "channels": []})
    session.data_to_send()
    return session


def judge(data: str | bytes, identified: bool) -> None:
    """Feed ``data`` to a session and assert it did what :func:`expected` says."""
    want = expected(data, identified, LIMITS)
    session = session_for(identified)
    session.receive_text(data, 1.0)
    events = session.events_received()
    sent = [json.loads(frame) for frame in session.data_to_send()]
    if want.close is not None:
        assert (session.state, session.close_code) == (SessionState.CLOSED, want.close), (
            session.close_reason
        )
        assert _fuzz.reason_fits_a_close_frame(session.close_reason)
        assert events == [] and sent == []
        return
    assert session.close_code is None, f"closed {session.close_code}: {session.close_reason}"
    check_open_outcome(want, events, sent)


def check_open_outcome(want: Outcome, events: list[Any], sent: list[Any]) -> None:
    if want.kind == "ack":
        assert events == []
        assert sent == [{"op": 4} if want.value is None else {"op": 4, "d": {"tag": want.value}}]
    elif want.kind == "identify":
        assert events == [Identify(*want.value)] and sent == []
    elif want.kind == "subscribe":
        assert events == [Subscribe(want.value)] and sent == []
    elif want.kind == "unsubscribe":
        assert events == [Unsubscribe(want.value)] and sent == []
    elif want.kind == "publish":
        channel, event, data = want.value
        [publish] = events
        assert isinstance(publish, ClientPublish)
        assert (publish.channel, publish.event) == (channel, event)
        # d is handed on as the client's own bytes: they parse to what the client sent.
        assert _fuzz.same_json(_fuzz.parse(bytes(publish.data)), data)
        assert sent == []
    elif want.kind == "ignored":
        assert events == [] and sent == []
    else:
        code = want.kind.removeprefix("error:")
        assert events == []
        [frame] = sent
        assert frame["op"] == 0 and frame["d"]["e"] == "ERROR", frame
        assert (frame["d"]["c"], frame["d"]["u"], frame["d"]["d"]["code"]) == (
            want.value,
            True,
            code,
        )


# The properties, plain functions: given() and settings are applied when they run (in
# the test below, or by scripts/fuzz-protocol with its own settings each round, which
# one decorated function would refuse). Each counts its cases.


def structured_frames(text: str, identified: bool, binary: bool) -> None:
    """Frames right and wrong in every field, as text or as a binary frame."""
    CASES["structured frames"] += 1
    judge(text.encode() if binary else text, identified)


def mutated_frames(text: str, steps: list[_fuzz.Mutation], identified: bool) -> None:
    """Frames truncated, bit-flipped, spliced with NUL, bad UTF-8, 1e400, 2**70, lone
    surrogates, 10,000 brackets, 100 KB strings; zlib'd whole or cut short."""
    CASES["mutated frames"] += 1
    judge(mutate(text, steps), identified)


def random_bytes(data: bytes, identified: bool) -> None:
    """Any bytes as a binary frame."""
    CASES["random bytes"] += 1
    judge(data, identified)


def random_text(text: str, identified: bool) -> None:
    """Any str, lone surrogates included, as the sans-I/O session may be handed."""
    CASES["random text"] += 1
    judge(text, identified)


def decoders(raw: bytes) -> None:
    """Each decoder returns, or raises ProtocolViolation(4005): nothing else escapes."""
    CASES["decoders"] += 1
    decoders_ = [
        frames.decode_identify,
        frames.decode_heartbeat,
        frames.decode_dispatch,
        frames.decode_message,
    ]
    for decode in decoders_:
        try:
            decode(msgspec.Raw(raw))
        except ProtocolViolation as exc:
            assert exc.close_code == 4005
    for data in (raw, raw.decode(errors="surrogateescape")):
        try:
            frames.decode_frame(data)
        except ProtocolViolation as exc:
            assert exc.close_code == 4005


# Every code point, surrogates included, and a bias to JSON's own characters.
_any_char = st.characters(codec=None, exclude_categories=()) | st.sampled_from('{}[]":,0123e-')

PROPERTIES: dict[str, tuple[Callable[..., None], tuple[st.SearchStrategy[Any], ...], int]] = {
    # name: (property, its strategies, examples in the suite)
    "structured frames": (
        structured_frames,
        (_fuzz.frame_texts(), st.booleans(), st.booleans()),
        500,
    ),
    "mutated frames": (
        mutated_frames,
        (_fuzz.frame_texts(), st.lists(_fuzz.mutations, min_size=1, max_size=4), st.booleans()),
        700,
    ),
    "random bytes": (random_bytes, (st.binary(max_size=300), st.booleans()), 300),
    "random text": (random_text, (st.text(_any_char, max_size=200), st.booleans()), 300),
    "decoders": (decoders, (st.binary(max_size=200) | _fuzz.frame_texts().map(str.encode),), 200),
}


def run_property(name: str, settings_: settings) -> None:
    """Run one property to the end under ``settings_``; raises on a failure."""
    prop, strategies, _ = PROPERTIES[name]
    settings_(given(*strategies)(prop))()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(PROPERTIES))
def test_frames_are_judged_as_spec_3_says(name: str) -> None:
    """Every frame gets what SPEC §3 says (close code, intent or reply), never an exception."""
    run_property(name, fuzz_settings(PROPERTIES[name][2]))


# Regressions: each of these escaped the session as an exception (the gateway's reader
# died with the socket left open and no close frame) before frames._decode caught it.


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b'{"op":3,"d":{"tag":"\xff"}}', id="binary frame, not UTF-8"),
        pytest.param(b'{"op":3,"d":{"tag":"\xed\xa0\x80"}}', id="UTF-8-encoded surrogate"),
        pytest.param('{"op":3,"d":{"tag":"\ud800"}}', id="str with a lone surrogate"),
        pytest.param('{"op":0,"d":' + "[" * 10_000 + "]" * 10_000 + "}", id="deep d"),
        pytest.param('{"op":3,"d":' + "[" * 10_000 + "]" * 10_000 + "}", id="deep heartbeat"),
        pytest.param(
            '{"op":0,"d":{"c":"a","e":"MESSAGE","d":{"e":"x","d":'
            + "[" * 10_000
            + "]" * 10_000
            + "}}}",
            id="deep message",
        ),
    ],
)
@pytest.mark.parametrize("identified", [False, True])
def test_undecodable_frames_close_4005_instead_of_raising(
    data: str | bytes, identified: bool
) -> None:
    """Bad UTF-8, lone surrogates and 10,000-deep nesting close 4005, in either state."""
    session = session_for(identified)
    session.receive_text(data, 1.0)
    assert (session.state, session.close_code) == (SessionState.CLOSED, 4005)


def test_shallow_nesting_in_a_message_is_delivered() -> None:
    """The depth guard is msgspec's, far past what a real message nests: 100 levels pass."""
    session = session_for(True)
    nested = "[" * 100 + "]" * 100
    message = '{"op":0,"d":{"c":"a","e":"MESSAGE","d":{"e":"x","d":' + nested + "}}}"
    session.receive_text(message, 1)
    [publish] = session.events_received()
    assert isinstance(publish, ClientPublish) and bytes(publish.data) == nested.encode()
