"""A state machine over ``LeapSession``: clients connect, identify, subscribe, publish,
heartbeat, send garbage, go silent, disconnect and reconnect, in any order, with time
passed in (never a clock).

Around the sessions sits :class:`App`, the service side as small as the gateway's use
of it: it answers IDENTIFY (4001 for a bad token or project), SUBSCRIBE (AVAILABLE, or
UNAVAILABLE for an unknown channel), keeps a token's subscriptions across connections,
and fans a client's MESSAGE out to the other subscribed connections. Beside it the
machine keeps its own model of what every client must receive, and after every step
compares the two, frame by frame:

* no exception escapes a session;
* per channel, every subscriber gets each message once, in publish order, with the
  data the publisher sent;
* the rate limit refuses exactly what a token bucket of ``messages_per_second`` would;
* every violation closes with its code: 4002 no IDENTIFY in time, 4003 a dispatch
  before IDENTIFY, 4004 an unknown op, 4005 a frame that is not JSON or not of the
  right shape (the oracle in ``_fuzz.expected`` says which), 4007 no heartbeat in
  time; nothing is sent or handed out after a close;
* probes go out after an interval of silence, one at a time, and an echo is acked
  with its latency.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from switchboard.server.protocol import frames
from switchboard.server.protocol.session import (
    ClientPublish,
    Event,
    Identify,
    LeapSession,
    SessionState,
    Subscribe,
    Unsubscribe,
)
from tests.protocol import _fuzz
from tests.protocol._fuzz import CASES, fuzz_settings

PROJECT = "project_fuzz"
TOKENS = ["leap_token_a", "leap_token_b"]
BAD_TOKEN = "leap_token_deleted"
CHANNELS = ["c1", "c2", "c3"]
UNKNOWN_CHANNEL = "nope"

INTERVAL = 4.0
IDENTIFY_TIMEOUT = 10.0
RATE = 4.0
MAX_PAYLOAD = 64
MAX_EVENT = 8
LIMITS = _fuzz.limits(
    heartbeat_interval_ms=int(INTERVAL * 1000),
    identify_timeout_s=IDENTIFY_TIMEOUT,
    max_payload_bytes=MAX_PAYLOAD,
    max_event_name=MAX_EVENT,
    messages_per_second=RATE,
)
# Steps of time are sums of powers of two, so the model's arithmetic on deadlines and
# the bucket is exact and equals the session's: no off-by-a-rounding disagreements.
TIME_STEPS = [0.0, 0.125, 0.125, 0.25, 0.5, 0.5, 1.0, 1.0, 2.0, 4.0, 6.0, 11.0]

# Message data, each exactly as sent; with the frame's own [serial, ...] around them
# some pass MAX_PAYLOAD and are refused.
PAYLOADS = [
    "1",
    "null",
    '"é"',
    "1e400",
    str(2**70),
    '{"a":[1,{"b":null}]}',
    "[" * 20 + "]" * 20,
    '"' + "x" * 60 + '"',
]
EVENT_NAMES = ["ev", "é", "x" * MAX_EVENT, "", "x" * (MAX_EVENT + 1)]


@dataclass
class AppConn:
    session: LeapSession
    token: str | None = None
    channels: set[str] = field(default_factory=set)
    identified: bool = False


class App:
    """The service side of the gateway, in memory (see the module docstring)."""

    def __init__(self) -> None:
        self.conns: dict[int, AppConn] = {}
        self.durable: dict[str, list[str]] = {}

    def carry_out(self, cid: int, event: Event) -> None:
        conn = self.conns[cid]
        session = conn.session
        if isinstance(event, Identify):
            if event.project_id != PROJECT or event.token not in (None, *TOKENS):
                session.close(4001, "unknown token")
                return
            conn.token, conn.identified = event.token, True
            channels = self.durable.get(event.token, []) if event.token else []
            conn.channels = set(channels)
            session.accept({"cid": str(cid), "channels": list(channels)})
        elif isinstance(event, Subscribe):
            if event.channel not in CHANNELS:
                reply = {"graceful": False, "error_code": "UNKNOWN"}
                session.send(frames.dispatch(event.channel, "UNAVAILABLE", reply, unicast=True))
                return
            conn.channels.add(event.channel)
            if conn.token is not None:
                subs = self.durable.setdefault(conn.token, [])
                if event.channel not in subs:
                    subs.append(event.channel)
            channel = {"channel": {"id": event.channel}}
            session.send(frames.dispatch(event.channel, "AVAILABLE", channel, unicast=True))
        elif isinstance(event, Unsubscribe):
            conn.channels.discard(event.channel)
            if conn.token is not None and event.channel in self.durable.get(conn.token, []):
                self.durable[conn.token].remove(event.channel)
        elif isinstance(event, ClientPublish):
            if conn.token is None or event.channel not in conn.channels:
                session.send(frames.error_dispatch(event.channel, "forbidden", "no"))
                return
            message = frames.dispatch(
                event.channel, "MESSAGE", {"e": event.event, "d": event.data}, unicast=False
            )
            for other_cid, other in self.conns.items():
                if other_cid != cid and other.identified and event.channel in other.channels:
                    other.session.send(message)


@dataclass
class Client:
    """One client, as the model sees it."""

    cid: int
    session: LeapSession
    token: str | None
    opened_at: float
    state: str = "awaiting"
    """awaiting (HELLO sent), open (INIT sent) or closed."""
    code: int | None = None
    last_received: float = 0.0
    probe: str | None = None
    probe_at: float = 0.0
    probes: int = 0
    bucket: float = RATE
    bucket_at: float = 0.0
    channels: set[str] = field(default_factory=set)
    inbox: list[Any] = field(default_factory=list)


def dispatch(channel: str | None, event: str, data: Any, unicast: bool = True) -> Any:
    return {"op": 0, "d": {"c": channel, "u": unicast, "e": event, "d": data}}


def error(channel: str, code: str) -> Any:
    return ("ERROR", channel, code)


def simplify(frame: Any) -> Any:
    """ERROR dispatches compare by channel and code (their messages are prose)."""
    d = frame.get("d")
    if frame["op"] == 0 and d["e"] == "ERROR" and d["u"] is True:
        return error(d["c"], d["d"]["code"])
    return frame


class SessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        CASES["session machine runs"] += 1
        self.now = 1000.0
        self.app = App()
        self.clients: list[Client] = []
        self.next_cid = 1
        self.serial = 0
        self.durable: dict[str, list[str]] = {}

    # Helpers.

    def pick(self, index: int) -> Client:
        return self.clients[index % len(self.clients)]

    def feed(self, client: Client, data: str | bytes) -> None:
        """Send one frame from ``client``; the model notes that it was heard from."""
        if client.state != "closed":
            client.last_received = self.now
        client.session.receive_text(data, self.now)

    def pump(self, client: Client) -> None:
        """Carry out what the session handed out, then collect what every session sent."""
        events = client.session.events_received()
        if client.state == "closed":
            assert events == [], "nothing is handed out after a close"
        for event in events:
            self.app.carry_out(client.cid, event)
        for c in self.clients:
            for raw in c.session.data_to_send():
                # Parsed as the oracle parses (1e400 is inf, as json.loads makes the
                # model's; every frame must be strict JSON).
                frame = _fuzz.parse(raw)
                assert isinstance(frame, dict) and frame["op"] in (0, 1, 3, 4), frame
                if frame["op"] == 0:
                    assert set(frame["d"]) == {"c", "u", "e", "d"}, frame
                c.inbox.append(simplify(frame))

    def expect(self, want: dict[int, list[Any]] | None = None) -> None:
        """Every client got exactly ``want[cid]`` (nothing, if not named) since last time."""
        want = want or {}
        for c in self.clients:
            got, c.inbox = c.inbox, []
            assert got == want.get(c.cid, []), f"client {c.cid}"

    def closes(self, client: Client, code: int) -> None:
        client.state, client.code = "closed", code
        CASES[f"close {code}"] += 1

    def take(self, client: Client) -> bool:
        """The model's token bucket: RATE per second, a burst of RATE."""
        client.bucket = min(RATE, client.bucket + (self.now - client.bucket_at) * RATE)
        client.bucket_at = self.now
        if client.bucket < 1:
            return False
        client.bucket -= 1
        return True

    def ack(self, client: Client, tag: str | None) -> Any:
        """The ack the model expects for a heartbeat with ``tag``."""
        if tag is None:
            return {"op": 4}
        if tag == client.probe:
            client.probe = None
            latency = round((self.now - client.probe_at) * 1000)
            return {"op": 4, "d": {"tag": tag, "latency": latency}}
        return {"op": 4, "d": {"tag": tag}}

    def open_client(self, token: str | None) -> Client:
        session = LeapSession(now=self.now, limits=LIMITS)
        client = Client(self.next_cid, session, token, self.now, last_received=self.now)
        client.bucket_at = self.now
        self.next_cid += 1
        self.clients.append(client)
        self.app.conns[client.cid] = AppConn(session)
        self.pump(client)
        self.expect({client.cid: [{"op": 1, "d": {"heartbeat_interval": 4000}}]})
        return client

    def do_identify(self, client: Client, project: str, token: str | None) -> None:
        d: dict[str, Any] = {"project_id": project}
        if token is not None or client.cid % 2:
            d["token"] = token
        self.feed(client, json.dumps({"op": 2, "d": d}))
        self.pump(client)
        if client.state == "closed":
            self.expect()
        elif client.state == "open":
            self.closes(client, 4005)  # IDENTIFY twice
            self.expect()
        elif project != PROJECT or token == BAD_TOKEN:
            self.closes(client, 4001)  # the App's answer
            self.expect()
        else:
            client.state, client.token = "open", token or None
            channels = list(self.durable.get(token, [])) if token else []
            client.channels = set(channels)
            init = dispatch(None, "INIT", {"cid": str(client.cid), "channels": channels})
            self.expect({client.cid: [init]})

    # Rules.

    @initialize(
        clients=st.lists(
            st.tuples(st.sampled_from([*TOKENS, None]), st.sets(st.sampled_from(CHANNELS))),
            min_size=2,
            max_size=4,
        )
    )
    def populate(self, clients: list[tuple[str | None, set[str]]]) -> None:
        """Start with identified, subscribed clients: most interleavings worth trying
        need two of them on one channel, which random steps alone reach too rarely."""
        for token, channels in clients:
            client = self.open_client(token)
            self.do_identify(client, PROJECT, token)
            for channel in sorted(channels):
                self.subscribe_or_unsubscribe(len(self.clients) - 1, channel, True)

    @precondition(lambda self: len(self.clients) < 5)
    @rule(token=st.sampled_from([*TOKENS, None]))
    def connect(self, token: str | None) -> None:
        self.open_client(token)

    @precondition(lambda self: any(c.state == "awaiting" for c in self.clients))
    @rule(
        i=st.integers(0, 4),
        how=st.sampled_from(["as set", "as set", "no token", "empty token", "bad", "project"]),
    )
    def identify(self, i: int, how: str) -> None:
        """IDENTIFY from a client waiting for INIT (IDENTIFY twice is garbage's)."""
        waiting = [c for c in self.clients if c.state == "awaiting"]
        client = waiting[i % len(waiting)]
        token = {"no token": None, "empty token": "", "bad": BAD_TOKEN}.get(how, client.token)
        self.do_identify(client, "project_other" if how == "project" else PROJECT, token)

    @precondition(lambda self: self.clients)
    @rule(
        i=st.integers(0, 4),
        channel=st.sampled_from([*CHANNELS, UNKNOWN_CHANNEL]),
        subscribe=st.booleans(),
    )
    def subscribe_or_unsubscribe(self, i: int, channel: str, subscribe: bool) -> None:
        client = self.pick(i)
        event = "SUBSCRIBE" if subscribe else "UNSUBSCRIBE"
        self.feed(client, json.dumps({"op": 0, "d": {"c": channel, "e": event, "d": None}}))
        self.pump(client)
        if client.state == "awaiting":
            self.closes(client, 4003)
        if client.state != "open":
            self.expect()
            return
        subs = self.durable.setdefault(client.token, []) if client.token else []
        if not subscribe:
            client.channels.discard(channel)
            if channel in subs:
                subs.remove(channel)
            self.expect()
        elif channel == UNKNOWN_CHANNEL:
            unavailable = {"graceful": False, "error_code": "UNKNOWN"}
            self.expect({client.cid: [dispatch(channel, "UNAVAILABLE", unavailable)]})
        else:
            client.channels.add(channel)
            if client.token and channel not in subs:
                subs.append(channel)
            available = dispatch(channel, "AVAILABLE", {"channel": {"id": channel}})
            self.expect({client.cid: [available]})

    @precondition(lambda self: self.clients)
    @rule(
        i=st.integers(0, 4),
        channel=st.sampled_from(CHANNELS),
        messages=st.lists(
            st.tuples(st.sampled_from(EVENT_NAMES), st.sampled_from(PAYLOADS)),
            min_size=1,
            max_size=8,
        ),
    )
    def publish(self, i: int, channel: str, messages: list[tuple[str, str]]) -> None:
        """A burst of messages sent back to back, carried out after the last."""
        client = self.pick(i)
        refused: list[Any] = []  # the session's refusals, sent as each frame arrives
        forbidden: list[Any] = []  # the App's, sent when it carries the events out
        delivered: dict[int, list[Any]] = {}
        for event, payload in messages:
            self.serial += 1
            data = f"[{self.serial},{payload}]"
            msg = {"c": channel, "e": "MESSAGE", "d": {"e": event, "d": "DATA"}}
            self.feed(client, json.dumps({"op": 0, "d": msg}).replace('"DATA"', data))
            if client.state == "awaiting":
                self.closes(client, 4003)
            if client.state != "open":
                continue
            if not 1 <= len(event) <= MAX_EVENT:
                refused.append(error(channel, "invalid_request"))
            elif len(data.encode()) > MAX_PAYLOAD:
                refused.append(error(channel, "payload_too_large"))
            elif not self.take(client):
                refused.append(error(channel, "rate_limited"))
            elif client.token is None or channel not in client.channels:
                forbidden.append(error(channel, "forbidden"))
            else:
                sent = dispatch(channel, "MESSAGE", {"e": event, "d": json.loads(data)}, False)
                for other in self.clients:
                    if other is not client and other.state == "open" and channel in other.channels:
                        delivered.setdefault(other.cid, []).append(sent)
                        CASES["messages delivered"] += 1
        self.pump(client)
        self.expect({**delivered, client.cid: refused + forbidden})

    @precondition(lambda self: self.clients)
    @rule(i=st.integers(0, 4), tag=st.sampled_from(["none", "probe", "other", "empty"]))
    def heartbeat(self, i: int, tag: str) -> None:
        client = self.pick(i)
        value = {"none": None, "probe": client.probe or "1", "other": "zz", "empty": ""}[tag]
        frame = {"op": 3} if value is None else {"op": 3, "d": {"tag": value}}
        self.feed(client, json.dumps(frame))
        self.pump(client)
        if client.state == "closed":
            self.expect()
        else:
            self.expect({client.cid: [self.ack(client, value)]})

    @precondition(lambda self: self.clients)
    @rule(
        i=st.integers(0, 4),
        data=_fuzz.frame_texts()
        | st.builds(_fuzz.mutate, _fuzz.frame_texts(), st.lists(_fuzz.mutations, max_size=3)),
        may_close=st.integers(0, 3),
    )
    def garbage(self, i: int, data: str | bytes, may_close: int) -> None:
        """Any frame, judged by the oracle; those that would change the App's state
        (IDENTIFY, SUBSCRIBE...) are the other rules' business and are not sent. Three
        times in four, neither is one that closes: most garbage does, and a machine
        whose clients are all closed has little left to find."""
        client = self.pick(i)
        want = _fuzz.expected(data, client.state == "open", LIMITS)
        if want.kind in ("identify", "subscribe", "unsubscribe", "publish"):
            return
        if want.close is not None and may_close:
            return
        self.feed(client, data)
        self.pump(client)
        if client.state == "closed":
            self.expect()
        elif want.close is not None:
            self.closes(client, want.close)
            self.expect()
        elif want.kind == "ack":
            self.expect({client.cid: [self.ack(client, want.value)]})
        elif want.kind == "ignored":
            self.expect()
        else:
            self.expect({client.cid: [error(want.value, want.kind.removeprefix("error:"))]})

    @rule(dt=st.sampled_from(TIME_STEPS))
    def advance(self, dt: float) -> None:
        """Time passes; the gateway's sweeper ticks every session."""
        self.now += dt
        want: dict[int, list[Any]] = {}
        for c in self.clients:
            c.session.tick(self.now)
            if c.state == "awaiting" and self.now - c.opened_at >= IDENTIFY_TIMEOUT:
                self.closes(c, 4002)
            elif c.state == "open":
                silent = self.now - c.last_received
                if silent >= INTERVAL * 1.5 + 5:
                    self.closes(c, 4007)
                elif silent >= INTERVAL and c.probe is None:
                    c.probes += 1
                    c.probe, c.probe_at = str(c.probes), self.now
                    want[c.cid] = [{"op": 3, "d": {"tag": c.probe}}]
        for c in self.clients:
            self.pump(c)
        self.expect(want)

    @precondition(lambda self: self.clients)
    @rule(i=st.integers(0, 4), how=st.sampled_from(["gone", "reconnect", "app closes"]))
    def disconnect(self, i: int, how: str) -> None:
        """The socket ends (gone), and the client may come back with the same token
        (reconnect: INIT lists the token's subscriptions, which the official client
        relies on); or the App ends it (its token was deleted), and the first close wins."""
        client = self.pick(i)
        if how == "app closes":
            client.session.close(4001, "token deleted")
            if client.state != "closed":
                self.closes(client, 4001)
            self.feed(client, '{"op":3}')
            self.pump(client)
            self.expect()
            return
        self.clients.remove(client)
        del self.app.conns[client.cid]
        if how == "reconnect":
            self.do_identify(self.open_client(client.token), PROJECT, client.token)

    # Invariants.

    @invariant()
    def states_agree(self) -> None:
        states = {"awaiting": SessionState.AWAITING_IDENTIFY, "open": SessionState.OPEN}
        for c in self.clients:
            CASES["session machine steps"] += 1
            assert c.session.state is states.get(c.state, SessionState.CLOSED), c.cid
            assert c.session.close_code == c.code, (c.cid, c.session.close_reason)
            assert _fuzz.reason_fits_a_close_frame(c.session.close_reason)
            deadline = c.session.next_deadline()
            if c.state == "closed":
                assert deadline is None
            else:
                # The sweeper did what was due: the next thing to do is later.
                assert deadline is not None and deadline > self.now


def session_machine(settings_: Any = None) -> None:
    """Run the machine once (``scripts/fuzz-protocol`` passes the long profile)."""
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(SessionMachine, settings=settings_)


@pytest.mark.timeout(60)
def test_session_machine() -> None:
    """Any interleaving of the rules keeps every invariant in the module docstring."""
    session_machine(fuzz_settings(MACHINE_RUNS, stateful_step_count=MACHINE_STEPS))


MACHINE_RUNS = 80
MACHINE_STEPS = 50
