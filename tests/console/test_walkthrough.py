"""The console as a new user meets it, in a real headless Chromium against a real server.

``switchboard serve`` runs as a process on a fresh data dir; the test reads the console
URL and the project token from its banner and needs nothing else. Then: sign in, generate
a token, create a private channel, grant the token, connect a client with that token and
see it turn online, publish a message and see it in the live log, patch the state and see
it update, bad JSON refused inline, the phone width, sign out. Screenshots of the main
pages go to test-artifacts/console/.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import websockets

from tests.conftest import Server
from tests.console.conftest import screenshot
from tests.e2e.leap import Leap

CONSOLE_LINE = re.compile(r"Console:\s+(\S+)")
TOKEN_LINE = re.compile(r"Project token:\s+(\S+)")
SIGN_IN = "Sign in to the Switchboard console"

UNLABELLED_CONTROLS = """() => [...document.querySelectorAll('input, select, textarea, button')]
  .filter((el) => el.offsetParent !== null || el.closest('dialog[open]'))
  .filter((el) => {
    const name = el.labels && el.labels.length ? el.labels[0].textContent
      : el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')
      || (el.tagName === 'BUTTON' ? el.textContent : '');
    return !name || !name.trim();
  })
  .map((el) => el.outerHTML.slice(0, 120))"""


async def assert_labelled(page: Any) -> None:
    """Every visible form control has a label (or an accessible name)."""
    assert await page.evaluate(UNLABELLED_CONTROLS) == []


async def test_console_walkthrough(browser: Any, spawn_server: Callable[..., Server]) -> None:
    from playwright.async_api import expect

    server = spawn_server()
    banner = "".join(server.output)
    console_url = CONSOLE_LINE.search(banner)
    project_token = TOKEN_LINE.search(banner)
    assert console_url and project_token, banner
    console_url_s, ptk = console_url.group(1), project_token.group(1)

    page = await browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # Sign in: a wrong token is refused in place; the printed one works.
    await page.goto(console_url_s)
    await expect(page.get_by_role("heading", name=SIGN_IN)).to_be_visible()
    await assert_labelled(page)
    await screenshot(page, "01-sign-in")
    await page.get_by_label("Project token").fill("ptk_not-a-real-token")
    await page.get_by_label("Project token").press("Enter")
    await expect(page.locator("#signin-error")).to_contain_text("Refused")
    await page.get_by_label("Project token").fill(ptk)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    await expect(page.locator("#live-status")).to_have_text("Live: connected")
    project_id = (await page.locator("#project-id").text_content()) or ""
    assert project_id.startswith("project_")
    # The token lives in this tab's sessionStorage only: a reload stays signed in, a new
    # tab does not, and localStorage stays empty.
    assert await page.evaluate("Object.values(sessionStorage)") == [ptk]
    await page.reload()
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    assert await page.evaluate("localStorage.length") == 0
    other = await browser.new_page()
    await other.goto(console_url_s)
    await expect(other.get_by_role("heading", name=SIGN_IN)).to_be_visible()
    await other.close()

    # Tokens: generate one with state.
    await page.get_by_role("link", name="Tokens").click()
    await expect(page.get_by_role("heading", name="Tokens", exact=True)).to_be_visible()
    await page.get_by_label("State (JSON object, optional)").fill('{"userId": "user_42"}')
    await page.get_by_role("button", name="Generate token").click()
    new_token = page.locator("#new-token-id")
    await expect(new_token).to_have_text(re.compile(r"^leap_token_"))
    token = (await new_token.text_content()) or ""
    token_row = page.locator(f'#token-rows tr[data-token="{token}"]')
    await expect(token_row).to_contain_text('{"userId":"user_42"}')
    await expect(token_row.locator(".online")).to_have_text("Offline")
    await assert_labelled(page)

    # Channels: a private channel with a state; the page for it opens and goes live.
    await page.get_by_role("link", name="Channels").click()
    await page.get_by_label("Type").select_option("private")
    await page.get_by_label("Channel ID (optional)").fill("game")
    await page.get_by_label("Initial state (JSON object, optional)").fill('{"round": 1}')
    await page.get_by_role("button", name="Create channel").click()
    await expect(page.get_by_role("heading", name="Channel game")).to_be_visible()
    await expect(page.locator("#channel-live")).to_have_text("watching")
    await expect(page.locator("#channel-type-badge")).to_have_text("private")
    state_view = page.locator("#channel-state-view")
    await expect(state_view).to_contain_text('"round": 1')
    await assert_labelled(page)

    # Grant the token.
    await page.get_by_label("Token to grant").fill(token)
    await page.get_by_role("button", name="Grant").click()
    subscriber = page.locator(f'#subscriber-rows tr[data-token="{token}"]')
    await expect(subscriber.locator(".online")).to_have_text("Offline")

    # A client connects with that token: the indicator turns on, online_count is 1.
    async with websockets.connect(server.ws_url) as ws:
        client = Leap(ws)
        init = await client.identify(project_id, token)
        assert init["scope"] == "token"
        assert [c["id"] for c in init["channels"]] == ["game"]
        await expect(subscriber.locator(".online")).to_have_text("Online")
        await expect(page.locator("#channel-online")).to_have_text("1")

        # Publish from the console: the live log shows it, the client gets it.
        await page.get_by_label("Event name").fill("MOVE")
        await page.get_by_label("Data (JSON)").fill('{"x": 3, "y": 4}')
        await page.get_by_role("button", name="Publish").click()
        first = page.locator("#message-log li").first
        await expect(first.locator(".log-event")).to_have_text("MOVE")
        await expect(first.locator(".log-data")).to_contain_text('"x": 3')
        message = await client.dispatch("MESSAGE")
        assert message["c"] == "game" and message["d"] == {"e": "MOVE", "d": {"x": 3, "y": 4}}

        # A message from elsewhere (the REST API) shows in the live log too.
        async with httpx.AsyncClient(headers={"Authorization": ptk}) as rest:
            reply = await rest.post(
                f"{server.api}/channels/game/messages", json={"e": "FROM_API", "d": [1, 2]}
            )
            assert reply.status_code == 200
        await expect(page.locator("#message-log li").first.locator(".log-event")).to_have_text(
            "FROM_API"
        )
        assert (await client.dispatch("MESSAGE"))["d"]["e"] == "FROM_API"

        # Patch the state: the live state updates from STATE_UPDATE.
        editor = page.get_by_label("New state or keys to merge (JSON object)")
        await editor.fill('{"round": 2, "turn": "user_42"}')
        await page.get_by_role("button", name="Patch (merge keys)").click()
        await expect(state_view).to_contain_text('"round": 2')
        await expect(state_view).to_contain_text('"turn": "user_42"')
        update = await client.dispatch("STATE_UPDATE")
        assert update["d"] == {"state": {"round": 2, "turn": "user_42"}}

        # Bad JSON is refused inline: the editor says why and nothing is sent.
        patches_before = sum("/state" in url for url in requested)
        await editor.fill('{"round": 3,')
        message_line = page.locator("#channel-state-editor-msg")
        await expect(message_line).to_contain_text("Invalid JSON")
        await expect(editor).to_have_attribute("aria-invalid", "true")
        await page.get_by_role("button", name="Patch (merge keys)").click()
        await expect(editor).to_be_focused()
        await editor.fill("[1, 2]")
        await expect(message_line).to_contain_text("must be a JSON object")
        await page.get_by_role("button", name="Set (replace all)").click()
        assert sum("/state" in url for url in requested) == patches_before
        await expect(state_view).to_contain_text('"round": 2')
        await client.nothing(0.3)
        await editor.fill('{"round": 3,')
        await screenshot(page, "04-channel")  # with the inline refusal showing
        await editor.fill('{"round": 3}')
        await expect(message_line).to_have_text("Valid JSON object.")

        # The tokens page shows it online too.
        await page.get_by_role("link", name="Tokens").click()
        await expect(token_row.locator(".online")).to_have_text("Online")
        await screenshot(page, "03-tokens")

    # The client left: offline again.
    await expect(token_row.locator(".online")).to_have_text("Offline")

    # The overview counts what happened, with the message rate.
    await page.get_by_role("link", name="Overview").click()
    await expect(page.locator("#stat-channels")).to_have_text("1")
    await expect(page.locator("#stat-tokens")).to_have_text("1")
    await expect(page.locator("#rate-summary")).to_contain_text(re.compile(r"peak [1-9]"))
    await screenshot(page, "02-overview")

    # Phone width: the channel page fits 390 px without sideways scrolling.
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(console_url_s + "#/channels/game")
    await expect(page.locator("#channel-live")).to_have_text("watching")
    await expect(page.locator(f'#subscriber-rows tr[data-token="{token}"]')).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await screenshot(page, "05-channel-phone")
    await page.set_viewport_size({"width": 1280, "height": 900})

    # Sign out: back to sign-in; the token is gone from the tab, a reload stays out.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("#signin-message")).to_contain_text("Signed out")
    assert await page.evaluate("sessionStorage.length") == 0
    await page.reload()
    await expect(page.get_by_role("heading", name=SIGN_IN)).to_be_visible()

    # The project token never went into a URL.
    assert requested and not [url for url in requested if ptk in url]
    assert ptk not in page.url
    assert errors == []
