"""Write coalescing: a loop turn's frames for one socket leave in one ``write``, in order.

The hub is driven directly with transports that record what they are given; the real
socket path (and the slow-consumer close over a real socket) is in tests/e2e.
"""

from __future__ import annotations

import msgspec

from switchboard.server.fanout.connection import QUEUE_FLUSH_BYTES, Connection
from switchboard.server.fanout.hub import Hub
from tests.fanout.sockets import RecordingTransport, next_turn, split_frames


def subscriber(hub: Hub, cid: str, transport: RecordingTransport) -> Connection:
    conn = Connection(
        hub.writer,
        transport,
        cid=cid,
        project_id="p",
        token_id=None,
        scope="noauth",
        compressed=False,
    )
    hub.attach(conn)
    hub.join(conn, "room")
    return conn


async def test_one_turn_of_publishes_is_one_write_per_socket_in_order() -> None:
    hub = Hub(max_buffered_bytes=1 << 20)
    a, b = RecordingTransport(), RecordingTransport()
    subscriber(hub, "a", a)
    subscriber(hub, "b", b)
    for i in range(5):
        hub.broadcast("p", "room", msgspec.json.encode({"n": i}))
    assert a.writes == [] and b.writes == []  # nothing until the turn ends
    await next_turn()
    assert len(a.writes) == 1 and a.writes == b.writes
    assert [msgspec.json.decode(f)["n"] for f in split_frames(a.writes[0])] == list(range(5))
    hub.broadcast("p", "room", b'{"n":5}')
    await next_turn()
    assert len(a.writes) == 2 and split_frames(a.writes[1]) == [b'{"n":5}']


async def test_a_direct_frame_keeps_its_place_among_broadcasts() -> None:
    hub = Hub(max_buffered_bytes=1 << 20)
    t = RecordingTransport()
    conn = subscriber(hub, "a", t)
    hub.broadcast("p", "room", b"1")
    conn.send_payload(b"2")
    hub.broadcast("p", "room", b"3")
    await next_turn()
    assert split_frames(b"".join(t.writes)) == [b"1", b"2", b"3"]


async def test_a_close_writes_what_was_queued_first() -> None:
    hub = Hub(max_buffered_bytes=1 << 20)
    t = RecordingTransport()
    conn = subscriber(hub, "a", t)
    hub.broadcast("p", "room", b"last words")
    conn.close(1000, "bye")
    assert split_frames(b"".join(t.writes)) == [b"last words"]
    hub.broadcast("p", "room", b"after")  # closing: dropped
    await next_turn()
    assert split_frames(b"".join(t.writes)) == [b"last words"]


async def test_a_socket_over_the_cap_is_closed_and_the_others_still_get_theirs() -> None:
    hub = Hub(max_buffered_bytes=1000)
    slow, fast = RecordingTransport(buffered=5000), RecordingTransport()
    slow_conn = subscriber(hub, "slow", slow)
    subscriber(hub, "fast", fast)
    hub.broadcast("p", "room", b"x")
    await next_turn()
    assert slow_conn.closing and hub.writer.closed_slow == 1
    assert split_frames(b"".join(fast.writes)) == [b"x"]
    hub.broadcast("p", "room", b"y")
    await next_turn()
    assert len(slow.writes) == 1
    assert split_frames(b"".join(fast.writes)) == [b"x", b"y"]


async def test_a_burst_in_one_turn_is_written_in_bounded_pieces_and_the_cap_still_holds() -> None:
    # A backlog read in one turn (say, thousands of events after a broker hiccup) must not
    # pile up unbounded in the queue: it goes out in pieces, and the cap is checked on each.
    hub = Hub(max_buffered_bytes=1 << 20)
    fast = RecordingTransport()
    subscriber(hub, "fast", fast)

    class FillingTransport(RecordingTransport):
        def get_write_buffer_size(self) -> int:
            return sum(map(len, self.writes))  # a peer that never reads

    slow = FillingTransport()
    slow_conn = subscriber(hub, "slow", slow)
    frame = b"x" * 1000
    for _ in range(5000):  # ~5 MB for each socket in one turn
        hub.broadcast("p", "room", frame)
    assert all(len(w) <= QUEUE_FLUSH_BYTES + 1100 for w in fast.writes)
    assert slow_conn.closing and hub.writer.closed_slow == 1
    assert sum(map(len, slow.writes)) <= (1 << 20) + QUEUE_FLUSH_BYTES + 1100
    await next_turn()
    assert split_frames(b"".join(fast.writes)) == [frame] * 5000
