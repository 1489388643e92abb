"""The console's Webhooks page in a real Chromium, against a node with fast retries and
a real HTTP receiver: configure, the secret shown once, deliveries (delivered, retrying,
failed) appearing in the log, the server's 400 inline, rotate and delete, and a restricted
project token told plainly what it lacks.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard.server.permissions import ALL, Permission
from tests.conftest import Server, start_node
from tests.console.conftest import screenshot
from tests.console.test_pages import sign_in
from tests.e2e.leap import leap
from tests.webhooks.conftest import FAST
from tests.webhooks.receiver import receiver

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def wnode(tmp_path: Path) -> AsyncIterator[Server]:
    server = await start_node(tmp_path / "d", **FAST)
    try:
        yield server
    finally:
        assert server.node is not None
        await server.node.stop()


async def new_token(rest: httpx.AsyncClient, server: Server) -> str:
    response = await rest.post(f"{server.api}/channels/tokens", json={})
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["token"]["id"])


async def test_configure_deliver_rotate_delete(browser: Any, wnode: Server) -> None:
    from playwright.async_api import expect

    async with receiver() as hooks, httpx.AsyncClient(headers=wnode.headers) as rest:
        page, errors = await sign_in(browser, wnode)
        sent: list[str] = []
        page.on("request", lambda r: sent.append(f"{r.method} {r.url}"))
        await page.get_by_role("link", name="Webhooks").click()
        await expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_focused()
        await expect(page.locator("#webhook-state")).to_have_text(re.compile("^Not configured"))
        # The default events are ticked; message.published is not.
        for name in ("token.online", "token.offline", "channel.occupied", "channel.vacated"):
            await expect(page.get_by_label(name, exact=True)).to_be_checked()
        await expect(page.get_by_label("message.published", exact=True)).not_to_be_checked()
        await expect(page.locator("#delivery-table")).to_be_hidden()
        await expect(page.locator("#webhook-log .empty")).to_be_visible()

        # The server's 400s are shown next to the form, the field marked; nothing is kept.
        url = page.get_by_label("Events URL")
        save = page.get_by_role("button", name="Save", exact=True)
        await save.click()
        error = page.locator("#webhook-form-error")
        await expect(error).to_contain_text("give a url for events, an authorize_url, or both")
        await expect(url).to_have_attribute("aria-invalid", "true")
        await url.fill("ftp://example.com/hooks")
        await save.click()
        await expect(error).to_contain_text("absolute http:// or https:// URL")
        await expect(url).to_have_attribute("aria-invalid", "true")
        await expect(url).to_be_focused()
        await url.fill(hooks.url)
        for name in ("token.online", "token.offline", "channel.occupied", "channel.vacated"):
            await page.get_by_label(name, exact=True).uncheck()
        await save.click()
        await expect(error).to_contain_text("at least one")
        await expect(page.locator("#webhook-events")).to_have_attribute("aria-invalid", "true")
        got = (await rest.get(f"{wnode.api}/webhooks")).json()["data"]
        assert got == {"webhooks": None}

        # Saved: the secret is shown once, with the note, and kept nowhere in the browser.
        await page.get_by_label("token.online", exact=True).check()
        await page.get_by_label("token.offline", exact=True).check()
        await save.click()
        await expect(error).to_be_hidden()
        await expect(url).not_to_have_attribute("aria-invalid", "true")
        secret_box = page.locator("#webhook-secret")
        await expect(secret_box).to_be_focused()
        await expect(secret_box).to_contain_text("Copy it now: it is not shown again.")
        await expect(page.locator("#webhook-secret-value")).to_have_text(re.compile("^whsec_"))
        secret = (await page.locator("#webhook-secret-value").text_content()) or ""
        hint = secret[:10] + "…"
        await expect(page.locator("#webhook-secret-hint")).to_have_text(hint)
        await expect(page.locator("#webhook-state")).to_have_text(re.compile("^Configured"))
        stored = await page.evaluate("JSON.stringify([{...sessionStorage}, {...localStorage}])")
        assert secret not in stored
        view = (await rest.get(f"{wnode.api}/webhooks")).json()["data"]["webhooks"]
        assert view["url"] == hooks.url
        assert view["events"] == ["token.online", "token.offline"]
        assert view["authorize_url"] is None
        await screenshot(page, "10-webhooks-secret", full_page=False)

        # An event: its delivery shows in the log as delivered, signed with that secret.
        rows = page.locator("#delivery-rows tr")
        token = await new_token(rest, wnode)
        async with leap(wnode.ws_url, wnode.project_id, token):
            (online,) = await hooks.wait_types("token.online")
        assert online.signed_by(secret)
        event_id = online.json["id"]
        delivered = page.locator(f'#delivery-rows tr[data-event="{event_id}"]')
        await expect(delivered).to_have_attribute("data-status", "delivered")
        await expect(delivered).to_contain_text("token.online")
        await expect(delivered).to_contain_text("200")
        await expect(delivered).to_contain_text(hooks.url)
        offline = page.locator('#delivery-rows tr[data-type="token.offline"]')
        await expect(offline).to_have_attribute("data-status", "delivered")
        await expect(rows).to_have_count(2)
        await expect(page.locator("#webhook-log h2")).to_contain_text("(2)")

        # A failing receiver: the attempts show as retrying, then failed.
        hooks.answer = lambda _: 500  # type: ignore[assignment]
        async with leap(wnode.ws_url, wnode.project_id, token):
            await hooks.wait_types("token.online", count=4)
        failed = page.locator('#delivery-rows tr[data-type="token.online"][data-status="failed"]')
        retrying = page.locator(
            '#delivery-rows tr[data-type="token.online"][data-status="retrying"]'
        )
        await expect(failed).to_have_count(1)
        await expect(retrying).to_have_count(2)
        await expect(failed).to_contain_text("500")
        await expect(failed.locator("td").nth(2)).to_have_text("3")
        await expect(page.locator("#delivery-summary")).to_contain_text("failed")
        await screenshot(page, "11-webhooks-log")
        # Phone width: the page fits 390 px without sideways scrolling.
        await page.set_viewport_size({"width": 390, "height": 844})
        await expect(failed).to_be_visible()
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        await screenshot(page, "13-webhooks-phone", full_page=False)
        await page.set_viewport_size({"width": 1280, "height": 900})

        # Shown once: back on the page, only the hint.
        await page.get_by_role("link", name="Overview").click()
        await page.get_by_role("link", name="Webhooks").click()
        await expect(page.locator("#webhook-secret-hint")).to_have_text(hint)
        await expect(page.locator("#webhook-secret")).to_be_hidden()
        await expect(page.locator("#webhook-secret-value")).to_have_count(0)
        await expect(url).to_have_value(hooks.url)

        # Rotate asks first; Cancel keeps the secret, confirming shows the new one once.
        rotate = page.get_by_role("button", name="Rotate secret…")
        await rotate.click()
        confirm = page.get_by_role("dialog", name="Rotate the signing secret?")
        await expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(confirm).to_have_count(0)
        assert not [s for s in sent if s.startswith("POST") and "/webhooks/secret" in s]
        await rotate.click()
        await confirm.get_by_role("button", name="Rotate secret").click()
        await expect(page.locator("#webhook-secret-value")).not_to_have_text(secret)
        rotated = (await page.locator("#webhook-secret-value").text_content()) or ""
        assert rotated.startswith("whsec_") and rotated != secret
        await expect(page.locator("#webhook-secret-hint")).to_have_text(rotated[:10] + "…")
        await page.get_by_role("button", name="I have copied it").click()
        await expect(page.locator("#webhook-secret")).to_be_hidden()
        assert rotated not in await page.evaluate(
            "JSON.stringify([{...sessionStorage}, {...localStorage}])"
        )

        # Delete asks first; afterwards the page says so and the log stays.
        await page.get_by_role("button", name="Delete webhooks…").click()
        await page.get_by_role("dialog").get_by_role("button", name="Delete webhooks").click()
        await expect(page.locator("#webhook-state")).to_have_text(re.compile("^Not configured"))
        await expect(page.get_by_role("button", name="Delete webhooks…")).to_be_hidden()
        await expect(page.locator("#webhook-secret-row")).to_be_hidden()
        await expect(url).to_have_value("")
        await expect(rows).not_to_have_count(0)
        got = (await rest.get(f"{wnode.api}/webhooks")).json()["data"]
        assert got == {"webhooks": None}

        # Leaving the page stops its refresh.
        await page.get_by_role("link", name="Overview").click()
        await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        left = len([s for s in sent if "/webhooks/deliveries" in s])
        for _ in range(2):
            async with page.expect_request(re.compile(r"/v1/stats$")):
                pass
        assert len([s for s in sent if "/webhooks/deliveries" in s]) == left
        assert errors == []


async def test_a_restricted_token_is_told_what_it_lacks(browser: Any, node: Server) -> None:
    from playwright.async_api import expect

    assert node.node is not None
    almost = await node.node.service.create_project_token(
        node.project_id, ALL & ~Permission.MESSAGE_TOKEN
    )
    restricted = Server(node.base_url, node.project_id, almost, node=node.node)
    page, errors = await sign_in(browser, restricted)
    await page.get_by_role("link", name="Webhooks").click()
    banner = page.locator("#webhooks-permission")
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("cannot manage webhooks")
    await expect(banner).to_contain_text("every permission (all)")
    await expect(page.locator("#webhook-form")).to_be_hidden()
    await expect(page.locator("#webhook-log")).to_be_hidden()
    # Still signed in: a 403 is not a sign-out.
    await expect(page.locator("#live-status")).to_have_text("Live: connected")
    assert await page.evaluate("sessionStorage.length") == 1
    await screenshot(page, "12-webhooks-restricted", full_page=False)
    assert errors == []
