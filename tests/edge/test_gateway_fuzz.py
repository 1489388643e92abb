"""Mutated frames over a real socket to a real server: every close code is the one
SPEC §3 gives, and the server keeps serving everyone else.

The frames are those of ``tests/protocol/_fuzz.py`` drawn from a seeded ``Random`` (no
hypothesis here: one socket per frame, a few hundred in all). Beyond the session's own
codes, the socket layer has two: a text frame that is not UTF-8 ends with 1007 and
one over ``max_frame_bytes`` with 1009 (aiohttp's, as RFC 6455 says).
"""

from __future__ import annotations

import random

import httpx
import pytest
import websockets

from switchboard.server.config import Limits
from tests.conftest import Server
from tests.e2e.leap import Leap, leap
from tests.protocol import _fuzz

FRAMES = 300
SEED = 20_260_510
LIMITS = _fuzz.limits()  # the server's defaults: 64 KiB messages, 128-character names
MAX_FRAME = Limits().max_frame_bytes

BASES = [
    '{"op":3}',
    '{"op":3,"d":{"tag":"t"}}',
    '{"op":2,"d":{"project_id":"project_x","token":"leap_token_x"}}',
    '{"op":0,"d":{"c":"room","e":"SUBSCRIBE","d":null}}',
    '{"op":0,"d":{"c":"room","e":"UNSUBSCRIBE","d":null}}',
    '{"op":0,"d":{"c":"room","e":"MESSAGE","d":{"e":"ev","d":{"n":[1,2.5,"é",null]}}}}',
    '{"op":0,"d":{"c":"room","e":"SET_CHANNEL_STATE","d":{"a":1}}}',
    '{"op":0,"d":{"c":null,"e":"PIPE_ROOM_SUBSCRIBE","d":{"join_token":"j"}}}',
    '{"op":7}',
]
# A lone surrogate cannot be put in a text frame (it has no UTF-8 form): not drawn here.
KINDS = [k for k in _fuzz.MUTATION_KINDS if k != "surrogate"]


def draw(rng: random.Random) -> tuple[str | bytes, bool, bool]:
    """A mutated frame, whether to identify first, and whether bytes go as a text frame."""
    steps = [
        _fuzz.Mutation(rng.choice(KINDS), rng.random(), rng.randrange(1 << 16))
        for _ in range(rng.randint(0, 3))
    ]
    data = _fuzz.mutate(rng.choice(BASES), steps)
    return data, rng.random() < 0.5, isinstance(data, bytes) and rng.random() < 0.3


async def send_raw(client: Leap, data: str | bytes, as_text: bool) -> None:
    if as_text and isinstance(data, bytes):
        await client.ws.send(data, text=True)  # bytes as a text frame, UTF-8 or not
    else:
        await client.ws.send(data)


async def outcome(client: Leap) -> int | None:
    """The close code, or None if the socket answers a sentinel heartbeat."""
    await client.send({"op": 3, "d": {"tag": "sentinel"}})
    try:
        while True:
            frame = await client.recv()
            if frame == {"op": 4, "d": {"tag": "sentinel"}}:
                return None
    except websockets.ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


@pytest.mark.timeout(120)
async def test_mutated_frames_close_with_their_code_and_the_server_keeps_serving(
    node: Server, http: httpx.AsyncClient
) -> None:
    """Each of a few hundred mutated frames on its own socket ends as the oracle says
    (or, for bytes in a text frame, 1007 if not UTF-8; 1009 if too big); a bystander
    subscribed throughout still gets a message afterwards, and a new client identifies."""
    r = await http.put("/channels/room", json={"type": "unprotected", "state": {}})
    assert r.status_code == 200, r.text
    rng = random.Random(SEED)
    seen: dict[int | None, int] = {}
    async with leap(node.ws_url, node.project_id) as bystander:
        assert (await bystander.subscribe("room"))["e"] == "AVAILABLE"
        for _ in range(FRAMES):
            data, identified, as_text = draw(rng)
            size = len(data.encode() if isinstance(data, str) else data)
            want: set[int | None]
            if size > MAX_FRAME:
                want = {1009}
            elif as_text and not _is_utf8(data):
                want = {1007}
            else:
                expected = _fuzz.expected(data, identified, LIMITS)
                want = {expected.close}
                if expected.kind == "identify":
                    want = {None, 4001}  # the server's answer: a known project or not
            async with leap(node.ws_url, node.project_id if identified else None) as client:
                if not identified:
                    await client.recv()  # HELLO
                await send_raw(client, data, as_text)
                code = await outcome(client)
            assert code in want, (data[:200], identified, as_text)
            seen[code] = seen.get(code, 0) + 1
        r = await http.post("/channels/room/messages", json={"e": "after", "d": 1})
        assert r.status_code == 200, r.text
        assert (await bystander.dispatch("MESSAGE"))["d"] == {"e": "after", "d": 1}
    async with leap(node.ws_url, node.project_id) as fresh:
        assert fresh.init["scope"] == "noauth"
    # The seed reaches every code it should (a regression in the drawing would not).
    assert {None, 4003, 4004, 4005, 1007} <= set(seen), seen


def _is_utf8(data: str | bytes) -> bool:
    if isinstance(data, str):
        return True
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.timeout(30)
async def test_a_binary_message_that_is_not_utf8_closes_4005_and_reaches_nobody(
    node: Server, http: httpx.AsyncClient
) -> None:
    """Regression: a binary frame's bytes went unchecked inside a message's d, so a bad
    byte was relayed in every subscriber's text frame and their clients failed (1007).
    Now the sender is closed with 4005 and the subscriber never sees it."""
    r = await http.put("/channels/room", json={"type": "unprotected", "state": {}})
    assert r.status_code == 200, r.text
    r = await http.post("/channels/tokens", json={"state": {}})
    token = r.json()["data"]["token"]["id"]
    async with (
        leap(node.ws_url, node.project_id) as subscriber,
        leap(node.ws_url, node.project_id, token) as sender,
    ):
        assert (await subscriber.subscribe("room"))["e"] == "AVAILABLE"
        assert (await sender.subscribe("room"))["e"] == "AVAILABLE"
        await sender.ws.send(b'{"op":0,"d":{"c":"room","e":"MESSAGE","d":{"e":"x","d":"\xff"}}}')
        assert (await sender.closed())[0] == 4005
        await subscriber.nothing(within=0.3)
        r = await http.post("/channels/room/messages", json={"e": "after", "d": 2})
        assert (await subscriber.dispatch("MESSAGE"))["d"] == {"e": "after", "d": 2}
