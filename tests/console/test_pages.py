"""The console's pages in a real headless Chromium, against an in-process server.

Token management (generate with expiry, search, edit, direct message, delete with a
confirmation, by keyboard), channels (generated ID, refused IDs, remove a grant, delete),
and a revoked project token sending the console back to sign-in.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import websockets

from tests.conftest import Server
from tests.console.conftest import screenshot
from tests.e2e.leap import Leap


async def sign_in(browser: Any, node: Server) -> tuple[Any, list[str]]:
    """A new tab, signed in by keyboard alone; returns it and its script errors."""
    from playwright.async_api import expect

    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(node.base_url + "/console")
    # Keyboard only: the token field has the focus; Enter submits.
    await expect(page.get_by_label("Project token")).to_be_focused()
    await page.keyboard.type(node.project_token)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    await expect(page.locator("#live-status")).to_have_text("Live: connected")
    return page, errors


async def test_manage_tokens(browser: Any, node: Server) -> None:
    from playwright.async_api import expect

    page, errors = await sign_in(browser, node)
    sent: list[str] = []
    page.on("request", lambda r: sent.append(f"{r.method} {r.url}"))
    await page.get_by_role("link", name="Tokens").click()

    # Bad JSON is refused before anything is sent.
    state = page.get_by_label("State (JSON object, optional)")
    await state.fill("{userId: alice}")
    await expect(page.locator("#token-state-msg")).to_contain_text("Invalid JSON")
    await page.get_by_role("button", name="Generate token").click()
    await expect(state).to_be_focused()
    assert not [s for s in sent if s.startswith("POST")]

    # Generate two tokens, one with an expiry (the browser runs in UTC).
    await state.fill('{"userId": "alice"}')
    await page.get_by_label("Expires at (optional, your local time)").fill("2099-01-02T03:04")
    await page.get_by_role("button", name="Generate token").click()
    await expect(page.locator("#new-token-id")).to_have_text(re.compile("^leap_token_"))
    alice = (await page.locator("#new-token-id").text_content()) or ""
    await page.get_by_label("Expires at (optional, your local time)").fill("")
    await state.fill('{"userId": "bob"}')
    await page.get_by_role("button", name="Generate token").click()
    await expect(page.locator("#new-token-id")).not_to_have_text(alice)
    bob = (await page.locator("#new-token-id").text_content()) or ""

    async with httpx.AsyncClient(headers=node.headers) as rest:
        got = (await rest.get(f"{node.api}/channels/tokens/{alice}")).json()["data"]["token"]
        assert got["state"] == {"userId": "alice"}
        assert got["expires_at"] == "2099-01-02T03:04:00.000Z"

    rows = page.locator("#token-rows tr")
    await expect(rows).to_have_count(2)
    await page.get_by_label("Search tokens").fill("bob")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-token", bob)
    await page.get_by_label("Search tokens").fill("")
    await expect(rows).to_have_count(2)

    async with websockets.connect(node.ws_url) as ws:
        client = Leap(ws)
        await client.identify(node.project_id, alice)
        alice_row = page.locator(f'#token-rows tr[data-token="{alice}"]')
        await expect(alice_row.locator(".online")).to_have_text("Online")

        # Manage: edit the state; the token's connection gets TOKEN_STATE_UPDATE.
        await alice_row.get_by_role("button", name="Manage").click()
        dialog = page.locator("#token-dialog")
        await expect(dialog).to_be_visible()
        await expect(dialog.locator(".online")).to_have_text("Online")
        await dialog.get_by_label("State (JSON object)").fill('{"userId": "alice", "plan": "pro"}')
        await dialog.get_by_role("button", name="Save state and expiry").click()
        update = await client.dispatch("TOKEN_STATE_UPDATE")
        assert update["d"] == {"state": {"userId": "alice", "plan": "pro"}}
        await expect(alice_row).to_contain_text('"plan":"pro"')

        # A direct message.
        await dialog.get_by_label("Event name").fill("NOTIFICATION")
        await dialog.get_by_label("Data (JSON)").fill('{"text": "Your turn"}')
        await dialog.get_by_role("button", name="Send direct message").click()
        direct = await client.dispatch("DIRECT_MESSAGE")
        assert direct["c"] is None and direct["d"] == {
            "e": "NOTIFICATION",
            "d": {"text": "Your turn"},
        }
        await screenshot(page, "06-token-dialog", full_page=False)

        # Escape closes the dialog; the focus goes back to the row.
        await page.keyboard.press("Escape")
        await expect(dialog).to_have_count(0)

        # Delete asks first: Cancel keeps the token, Delete (by keyboard) removes it
        # and cuts its connection off with 4001.
        await alice_row.get_by_role("button", name="Delete").click()
        confirm = page.get_by_role("dialog", name="Delete this token?")
        await expect(confirm).to_be_visible()
        await expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(confirm).to_have_count(0)
        await expect(alice_row).to_have_count(1)
        await alice_row.get_by_role("button", name="Delete").click()
        await expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
        await page.keyboard.press("Tab")
        await expect(confirm.get_by_role("button", name="Delete token")).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(alice_row).to_have_count(0)
        code, _ = await client.closed()
        assert code == 4001

    async with httpx.AsyncClient(headers=node.headers) as rest:
        assert (await rest.get(f"{node.api}/channels/tokens/{alice}")).status_code == 404
        assert (await rest.get(f"{node.api}/channels/tokens/{bob}")).status_code == 200
    assert errors == []


async def test_channels_list_grant_remove_delete(browser: Any, node: Server) -> None:
    from playwright.async_api import expect

    async with httpx.AsyncClient(headers=node.headers) as rest:
        created = (await rest.post(f"{node.api}/channels/tokens", json={})).json()
        token = created["data"]["token"]["id"]
        await rest.put(f"{node.api}/channels/lobby", json={"type": "public"})

    page, errors = await sign_in(browser, node)
    await page.get_by_role("link", name="Channels").click()
    lobby = page.locator('#channel-rows tr[data-channel="lobby"]')
    await expect(lobby).to_contain_text("public")
    await expect(lobby.locator(".num")).to_have_text("0")

    # A client in the lobby shows in its online count.
    async with websockets.connect(node.ws_url) as ws:
        client = Leap(ws)
        await client.identify(node.project_id, token)
        assert (await client.subscribe("lobby"))["e"] == "AVAILABLE"
        await expect(lobby.locator(".num")).to_have_text("1")
        await screenshot(page, "07-channels")

        # Refused IDs are said inline; nothing is created.
        channel_id = page.get_by_label("Channel ID (optional)")
        await channel_id.fill("tokens")
        await page.get_by_role("button", name="Create channel").click()
        await expect(page.locator("#channel-create .form-error")).to_contain_text("reserved")
        await expect(channel_id).to_have_attribute("aria-invalid", "true")
        await channel_id.fill("bad id!")
        await page.get_by_role("button", name="Create channel").click()
        await expect(page.locator("#channel-create .form-error")).to_contain_text("1 to 128")
        # An existing ID: the server's 409 is shown.
        await channel_id.fill("lobby")
        await page.get_by_role("button", name="Create channel").click()
        await expect(page.locator("#channel-create .form-error")).to_contain_text("lobby")

        # A generated ID: the new channel's page opens.
        await channel_id.fill("")
        await page.get_by_label("Type").select_option("unprotected")
        await page.get_by_role("button", name="Create channel").click()
        await expect(
            page.get_by_role("heading", name=re.compile("^Channel channel_"))
        ).to_be_visible()
        await page.get_by_role("link", name="Channels", exact=True).first.click()
        await expect(page.locator("#channel-rows tr")).to_have_count(2)

        # The lobby's page: the token subscribed itself (public); remove it, then delete.
        await lobby.get_by_role("link").click()
        await expect(page.locator("#channel-live")).to_have_text("watching")
        subscriber = page.locator(f'#subscriber-rows tr[data-token="{token}"]')
        await expect(subscriber.locator(".online")).to_have_text("Online")
        await subscriber.get_by_role("button", name="Remove").click()
        await page.get_by_role("dialog").get_by_role("button", name="Remove").click()
        await expect(subscriber).to_have_count(0)
        assert (await client.dispatch("UNAVAILABLE"))["c"] == "lobby"

        await page.get_by_role("button", name="Delete channel…").click()
        await page.get_by_role("dialog").get_by_role("button", name="Delete channel").click()
        await expect(page.get_by_role("heading", name="Channels", exact=True)).to_be_visible()
        await expect(page.locator("#channel-rows tr")).to_have_count(1)
    assert errors == []


async def test_revoked_project_token_goes_back_to_sign_in(browser: Any, node: Server) -> None:
    from playwright.async_api import expect

    page, errors = await sign_in(browser, node)
    assert node.node is not None
    store = node.node.store
    (info,) = await store.list_project_tokens(node.project_id)
    assert await store.revoke_project_token(info.id)

    # The overview's next poll gets 401: the console signs out and says why.
    await expect(page.locator("#signin-message")).to_contain_text("refused the project token")
    assert await page.evaluate("sessionStorage.length") == 0
    await expect(page.get_by_label("Project token")).to_be_visible()
    await screenshot(page, "08-signed-out-401")
    assert errors == []


async def test_overview_shows_the_tokens_permissions(browser: Any, node: Server) -> None:
    from playwright.async_api import expect

    from switchboard.server.permissions import ALL, Permission, names

    assert node.node is not None
    service = node.node.service
    # The full-access token of the project: every permission, by name.
    page, errors = await sign_in(browser, node)
    await expect(page.locator("#token-permissions")).to_have_text(", ".join(names(ALL)))
    await page.close()

    reader = await service.create_project_token(
        node.project_id, Permission.READ_CHANNELS | Permission.READ_LEAP_TOKENS
    )
    restricted = Server(node.base_url, node.project_id, reader, node=node.node)
    page, more = await sign_in(browser, restricted)
    await expect(page.locator("#token-permissions")).to_have_text("read_channels, read_leap_tokens")
    await screenshot(page, "09-overview-restricted-token")
    await page.close()

    # Without read_channels the console cannot work: sign-in says which permission.
    writer = await service.create_project_token(node.project_id, Permission.CREATE_CHANNEL)
    page = await browser.new_page()
    await page.goto(node.base_url + "/console")
    await page.get_by_label("Project token").fill(writer)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("alert")).to_contain_text("read_channels")
    assert await page.evaluate("sessionStorage.length") == 0
    assert errors == [] and more == []
