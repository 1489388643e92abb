"""The Lua that a channel's history and a token's inbox share (``redis_history.py``,
``redis_inbox.py``): both keep their messages in a stream whose entry ID is the offset
(``{offset}-0``, fields t (ms), e, d), bounded by a size and an age.

:data:`STREAM_FUNCTIONS` defines, for the scripts that start with it:

- ``now_ms()``: Redis's clock (``TIME``), so that nodes with skewed clocks agree on ages;
- ``offset_of(id)``: the offset of an entry ID;
- ``trim_aged(stream, now, ttl_ms)``: ``XTRIM MINID`` at the first of the oldest entries
  that is young enough. The oldest entry alone answers the common case (nothing has aged
  out: no trim); past it, looking at 64 at a time bounds the work, and the rest goes at
  the next appends. Then ``PEXPIRE`` of the stream by the TTL: an idle stream goes away
  by itself (its hash keeps the epoch and the top);
- ``read_kept(stream, top, size, ttl_ms, since, limit)``: the first offset still kept
  (the exact size and age bounds: ``MAXLEN ~`` may keep a few more) and up to ``limit``
  entries after ``since``, as ``first, entries``.

:func:`stream_message` decodes one of those entries on the Python side.
"""

from __future__ import annotations

from typing import Any

import msgspec

from switchboard.server.history import HistoryMessage

__all__ = ["STREAM_FUNCTIONS", "stream_message"]


def stream_message(entry: list[Any]) -> HistoryMessage:
    """One stream entry (``[b"{offset}-0", [b"t", ms, b"e", event, b"d", data]]``)."""
    entry_id, fields = entry
    values = dict(zip(fields[::2], fields[1::2], strict=True))
    return HistoryMessage(
        int(entry_id.split(b"-", 1)[0]),
        values[b"e"].decode(),
        msgspec.Raw(values[b"d"]),
        int(values[b"t"]),
    )


STREAM_FUNCTIONS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function offset_of(id) return tonumber(string.match(id, '^(%d+)')) end
local function trim_aged(stream, now, ttl_ms)
  local cutoff = now - ttl_ms
  local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
  if tonumber(first[2][2]) < cutoff then
    local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 64)
    local minid = nil
    for _, entry in ipairs(oldest) do
      if tonumber(entry[2][2]) >= cutoff then minid = entry[1] break end
    end
    if minid == nil then minid = (offset_of(oldest[#oldest][1]) + 1) .. '-0' end
    redis.call('XTRIM', stream, 'MINID', minid)
  end
  redis.call('PEXPIRE', stream, ttl_ms)
end
local function read_kept(stream, top, size, ttl_ms, since, limit)
  local cutoff = now_ms() - ttl_ms
  local start = math.max(top - size + 1, 1)
  local first = top + 1
  while start <= top do
    local batch = redis.call('XRANGE', stream, start .. '-0', '+', 'COUNT', 100)
    if #batch == 0 then break end
    local found = false
    for _, entry in ipairs(batch) do
      if tonumber(entry[2][2]) >= cutoff then
        first = offset_of(entry[1])
        found = true
        break
      end
    end
    if found then break end
    start = offset_of(batch[#batch][1]) + 1
  end
  local from = math.max(since + 1, first)
  local entries = {}
  if from <= top and limit > 0 then
    entries = redis.call('XRANGE', stream, from .. '-0', '+', 'COUNT', limit)
  end
  return first, entries
end
"""
