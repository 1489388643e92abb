"""The webhooks in both Python server SDKs, and verifying a webhook with the SDK alone."""

from __future__ import annotations

import asyncio

import pytest

from switchboard import AsyncSwitchboard, InvalidRequest, NotFound, Switchboard
from switchboard.webhooks import signature_header, verify
from tests.conftest import Server
from tests.e2e.leap import leap
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.timeout(60)


async def test_the_async_sdk_configures_and_reads_the_log(wnode: Server, hooks: Receiver) -> None:
    async with AsyncSwitchboard(wnode.project_token, wnode.base_url) as sb:
        assert await sb.webhooks.get() is None
        made = await sb.webhooks.set(hooks.url, events=["token.online"])
        assert made.secret is not None and made.events == ["token.online"]
        shown = await sb.webhooks.get()
        assert shown is not None and shown.secret is None and shown.url == hooks.url
        token = await sb.channels.tokens.create({"u": 1})
        async with leap(wnode.ws_url, wnode.project_id, token.id):
            [event] = await hooks.wait_types("token.online")
        assert event.signed_by(made.secret)
        async with asyncio.timeout(10):
            while not (log := await sb.webhooks.deliveries()):
                await asyncio.sleep(0.02)
        assert log[0].status == "delivered" and log[0].response_status == 200
        assert log[0].event_id == event.json["id"]
        rotated = await sb.webhooks.rotate_secret()
        assert rotated != made.secret
        with pytest.raises(InvalidRequest):
            await sb.webhooks.set("not a url")
        await sb.webhooks.delete()
        with pytest.raises(NotFound):
            await sb.webhooks.delete()


async def test_the_sync_sdk_does_the_same(wnode: Server, hooks: Receiver) -> None:
    def use() -> None:  # in a thread: the node serves on this test's event loop
        with Switchboard(wnode.project_token, wnode.base_url) as sb:
            made = sb.webhooks.set(authorize_url=hooks.authorize_url)
            assert made.url is None and made.events == [] and made.secret
            assert sb.webhooks.deliveries(limit=5) == []
            with pytest.raises(TypeError):
                sb.webhooks.set(hooks.url, events="token.online")
            with pytest.raises(ValueError):
                sb.webhooks.deliveries(limit=0)

    await asyncio.to_thread(use)


def test_verify() -> None:
    body = b'{"id":"evt_1"}'
    header = signature_header("whsec_s", body, timestamp=1_000)
    assert verify("whsec_s", body, header, now=1_100)
    assert not verify("whsec_s", body + b" ", header, now=1_100)
    assert not verify("whsec_other", body, header, now=1_100)
    assert not verify("whsec_s", body, header, now=1_000 + 301)  # too old: a replay
    assert not verify("whsec_s", body, header, now=1_000 - 301)
    assert verify("whsec_s", body, header, now=1_000 + 3_600, tolerance_s=3_601)
    # While a secret is rotated, a header may carry several v1 values.
    both = header + ",v1=" + "0" * 64
    assert verify("whsec_s", body, both, now=1_000)
    for bad in (None, "", "t=x,v1=y", "v1=abc", "t=1000", "garbage"):
        assert not verify("whsec_s", body, bad, now=1_000)
