"""History recovery on a connection: replay what it missed, then go live, exactly once.

The one step of recovery that awaits is the history read. The connection's live frames
of the channel are held by the hub from the moment it joins (or asks) until the replay
is queued (:meth:`Hub.hold` / :meth:`Hub.release`), so a message published while the
history is read reaches the client once, in offset order: either in the replay, or
after it from the hold (the hold's copy of a message the replay carries is left out).
See ``docs/protocol.md``, "History recovery".
"""

from __future__ import annotations

import logging

from switchboard.exceptions import APIError, NotFound
from switchboard.server.fanout.holds import Hold
from switchboard.server.fanout.hub import Hub
from switchboard.server.protocol import frames
from switchboard.server.protocol.frames import Since
from switchboard.server.service import Recovery, Service

log = logging.getLogger("switchboard.gateway")


async def recover(
    hub: Hub, service: Service, hold: Hold, since: Since | None, *, report_no_history: bool
) -> None:
    """Read the history of ``hold``'s channel (or its token's inbox) after ``since`` and
    release the hold with the replay and a ``RECOVERY`` dispatch.

    ``report_no_history``: answer a channel without history with ``RECOVERY
    {recovered: false, reason: "no_history"}`` (when the client asked for that channel
    by name); otherwise such a channel gets nothing.
    """
    conn = hold.conn
    # The token's inbox (docs/inbox.md) is answered as a channel is, with c: null.
    channel_id = None if hold.inbox else hold.channel_id
    replay: list[bytes] = []
    through: int | None = None
    epoch: str | None = None
    try:
        if channel_id is None:
            assert conn.token_id is not None
            result = await service.recover_inbox(conn.project_id, conn.token_id, since)
        else:
            result = await service.recover_history(conn.project_id, channel_id, since)
    except NotFound:
        # Deleted meanwhile: its ChannelDeleted (TokenDeleted) event ends the subscription.
        pass
    except APIError as exc:
        log.info(
            "history recovery failed",
            extra={"cid": conn.cid, "channel": channel_id, "reason": exc.message},
        )
        replay.append(
            frames.recovery(
                channel_id, recovered=False, epoch=None, top_offset=None, reason="unavailable"
            )
        )
    else:
        epoch, through = result.epoch, result.through
        replay = _replay(channel_id, result, report_no_history)
    finally:
        # Always released, also when the read raised something else: the connection must
        # not stay out of the channel's fan-out.
        hub.release(hold, replay, through, epoch)


def _replay(channel_id: str | None, result: Recovery, report_no_history: bool) -> list[bytes]:
    """The frames of a recovery read: the missed messages, then ``RECOVERY``."""
    replay: list[bytes] = []
    if result.epoch is not None:
        for m in result.messages:
            replay.append(
                frames.replayed_direct_message(m.event, m.data, m.offset, result.epoch)
                if channel_id is None
                else frames.replayed_message(channel_id, m.event, m.data, m.offset, result.epoch)
            )
    if result.reason != "no_history" or report_no_history:
        replay.append(
            frames.recovery(
                channel_id,
                recovered=result.recovered,
                epoch=result.epoch,
                # The offset the client holds after the replay: the read may see
                # messages appended after its first look at the top.
                top_offset=result.top if result.through is None else result.through,
                reason=result.reason,
            )
        )
    return replay
