"""``sb.broadcast(...)`` and ``sb.batch(...)`` against the real server, async and sync."""

from __future__ import annotations

from typing import Any

import pytest

from switchboard import Batch, BatchResult, ChannelType, InvalidRequest, NotFound
from switchboard.exceptions import InProgress, MissingPermission
from switchboard.server.permissions import Permission
from tests.conftest import Server
from tests.e2e.leap import leap


async def test_broadcast_to_channels_and_tokens(api: Any, node: Server) -> None:
    await api.channels.create(ChannelType.UNPROTECTED, "news", history_size=5)
    token = await api.channels.tokens.create()
    async with (
        leap(node.ws_url, node.project_id, token.id) as holder,
        leap(node.ws_url, node.project_id) as watcher,
    ):
        await watcher.subscribe("news")
        result = await api.broadcast(
            "NEWS", {"n": 1}, channels=["news", "gone"], tokens=[token], idempotency_key="n-1"
        )
        assert isinstance(result, BatchResult)
        assert (result.succeeded, result.failed, result.duplicate) == (2, 1, False)
        news, gone, direct = result.results
        assert news.channel == "news" and news.success and news.data["offset"] == 1
        assert gone.channel == "gone" and isinstance(gone.error, NotFound)
        assert direct.token == token.id and direct.success
        with pytest.raises(NotFound):
            result.raise_for_errors()
        again = await api.broadcast(
            "NEWS", {"n": 1}, channels=["news", "gone"], tokens=[token], idempotency_key="n-1"
        )
        assert again.duplicate
        assert [(r.success, r.data, r.error and r.error.code) for r in again.results] == [
            (r.success, r.data, r.error and r.error.code) for r in result.results
        ]
        assert (await watcher.dispatch("MESSAGE"))["d"]["d"] == {"n": 1}
        assert (await holder.dispatch("DIRECT_MESSAGE"))["d"] == {"e": "NEWS", "d": {"n": 1}}
        await watcher.nothing(0.2)


async def test_batch_from_a_builder_or_a_list(api: Any, node: Server) -> None:
    room = await api.channels.create(ChannelType.PRIVATE, "room", {"v": 0})
    token = await api.channels.tokens.create()
    batch = (
        Batch()
        .subscribe_token(room, token)
        .publish(room, "m", 1, idempotency_key="m-1")
        .set_state("room", {"v": 1})
        .patch_state("room", {"w": 2})
        .direct(token.id, "dm", "hi")
        .remove_token("room", token)
    )
    assert len(batch) == 6
    result = await api.batch(batch)
    assert result.failed == 0 and [r.success for r in result.results] == [True] * 6
    assert await api.channels.get_state("room") == {"v": 1, "w": 2}
    listed = await api.batch(
        [
            {"op": "publish", "channel": "room", "e": "m", "idempotency_key": "m-1"},
            {"op": "publish", "channel": "missing", "e": "m"},
            {"op": "nonsense"},
        ],
        parallel=True,
    )
    first, missing, nonsense = listed.results
    assert first.success and first.duplicate
    assert isinstance(missing.error, NotFound)
    assert isinstance(nonsense.error, InvalidRequest)


async def test_item_errors_keep_their_class(sb: Any, node: Server) -> None:
    assert node.node is not None
    publisher = await node.node.service.create_project_token(
        node.project_id, Permission.PUBLISH_CHANNEL_MESSAGES
    )
    from switchboard import AsyncSwitchboard

    await sb.channels.create(ChannelType.UNPROTECTED, "c")
    async with AsyncSwitchboard(publisher, node.base_url) as limited:
        result = await limited.batch(Batch().publish("c", "x").set_state("c", {}))
    refused = result.results[1].error
    assert isinstance(refused, MissingPermission)
    assert refused.permission == "update_channel_state"
    assert InProgress("x").code == "in_progress"


def test_bad_arguments_are_refused_before_sending() -> None:
    with pytest.raises(TypeError):
        Batch().publish(3, "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Batch().publish("tokens", "x")
    with pytest.raises(ValueError):
        Batch().direct("leap_token_x", "")
    from switchboard._rest import _batch

    with pytest.raises(TypeError):
        _batch.broadcast("e", None, "one-channel", (), None)
    with pytest.raises(ValueError):
        _batch.broadcast("e", None, [f"c{i}" for i in range(1001)], (), None)
    with pytest.raises(TypeError):
        _batch.batch({"op": "publish"}, False)
    with pytest.raises(ValueError):
        _batch.batch([{"op": "direct"}] * 1001, False)
    assert _batch.broadcast("e", None, ["c"], (), "k").idempotent
    assert not _batch.broadcast("e", None, ["c"], (), None).idempotent


async def test_single_sends_take_an_idempotency_key(api: Any, node: Server) -> None:
    await api.channels.create(ChannelType.UNPROTECTED, "c")
    token = await api.channels.tokens.create()
    async with (
        leap(node.ws_url, node.project_id) as watcher,
        leap(node.ws_url, node.project_id, token.id) as holder,
    ):
        await watcher.subscribe("c")
        for _ in range(2):
            await api.channels.publish_message("c", "x", 1, idempotency_key="p-1")
            await api.channels.tokens.publish_direct_message(token, "y", 2, idempotency_key="d-1")
        await watcher.dispatch("MESSAGE")
        await holder.dispatch("DIRECT_MESSAGE")
        await watcher.nothing(0.2)
        await holder.nothing(0.1)
