"""Presence in both server SDKs (async and sync) and in the realtime client."""

from __future__ import annotations

from typing import Any

import pytest

from switchboard import AsyncSwitchboard, ChannelPresence, MissingPermission, PresenceMember
from switchboard.client import Member, PresenceJoin, PresenceLeave, connect
from switchboard.server import permissions
from switchboard.server.ids import member_id
from tests.conftest import Server
from tests.sdk.conftest import Recorder, Restartable, client_for

pytestmark = pytest.mark.timeout(30)


async def test_presence_in_both_sdks(api: Any, node: Server) -> None:
    await api.channels.create("unprotected", "lobby")
    token = await api.channels.tokens.create({"name": "ann"})
    assert await api.channels.presence("lobby") == ChannelPresence([], 0, 0)
    async with (
        connect(node.project_id, token.id, url=node.ws_url) as ann,
        connect(node.project_id, None, url=node.ws_url) as anon,
    ):
        await ann.subscribe("lobby")
        await anon.subscribe("lobby")
        found = await api.channels.presence("lobby")
        assert found == ChannelPresence(
            [PresenceMember(token.id, member_id(token.id), {"name": "ann"}, 1)], 1, 2
        )
        assert found.raw["total_connections"] == 2


async def test_presence_needs_read_leap_tokens(node: Server) -> None:
    async with AsyncSwitchboard(node.project_token, node.base_url) as sb:
        await sb.channels.create("public", "room")
    assert node.node is not None
    secret = await node.node.service.create_project_token(
        node.project_id, permissions.parse(["read_channels"])
    )
    async with AsyncSwitchboard(secret, node.base_url) as restricted:
        with pytest.raises(MissingPermission) as caught:
            await restricted.channels.presence("room")
        assert "read_leap_tokens" in caught.value.message


async def test_the_realtime_client_follows_joins_and_leaves(api: Any, node: Server) -> None:
    await api.channels.create("public", "room")
    watcher_token = await api.channels.tokens.create({"name": "w"})
    bob = await api.channels.tokens.create({"name": "bob"})
    async with connect(node.project_id, watcher_token.id, url=node.ws_url) as watcher:
        seen = Recorder()
        watcher.on_presence("room", seen)
        await watcher.subscribe("room", presence=True)
        me = Member(member_id(watcher_token.id), {"name": "w"})
        assert await seen.wait(1) == [PresenceJoin("room", me)]
        async with connect(node.project_id, bob.id, url=node.ws_url) as b:
            await b.subscribe("room")
            await seen.wait(2)
            assert watcher.members("room") == sorted(
                [me, Member(member_id(bob.id), {"name": "bob"})], key=lambda m: m.member_id
            )
        calls = await seen.wait(3)
        assert calls[2] == PresenceLeave("room", Member(member_id(bob.id), {"name": "bob"}))
        assert watcher.members("room") == [me]
        assert watcher.members("elsewhere") == []


async def test_presence_is_asked_again_after_a_reconnect(restartable: Restartable) -> None:
    server = restartable.server
    async with AsyncSwitchboard(server.project_token, server.base_url) as sb:
        await sb.channels.create("public", "room")
        w = await sb.channels.tokens.create({"name": "w"})
        bob = await sb.channels.tokens.create({"name": "bob"})
    client = client_for(server, w.id)
    async with client:
        seen = Recorder()
        client.on_presence("room", seen)
        await client.subscribe("room", presence=True)
        await seen.wait(1)
        await restartable.stop()
        await restartable.start()
        await client.wait_connected()
        # INIT lists the durable subscription, but presence died with the socket: the
        # client subscribes again to ask for it, and sees bob join.
        async with connect(server.project_id, bob.id, url=server.ws_url) as b:
            await b.subscribe("room")
            calls = await seen.wait(2)
            joined = [c.member.member_id for c in calls if isinstance(c, PresenceJoin)]
            assert member_id(bob.id) in joined
