"""The chat page as a user drives it: one Chromium context per user, through the visible UI.

Besides the page, each user keeps what the page said on its own: console lines (Hop's
client logs why a socket closed), uncaught errors, and every WebSocket the page opened
to Switchboard with the frames it sent, so a test can tell a reconnect from a new page
and a resubscribe from none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A reconnect after a server restart: the client retries about once a second, and a
# process start takes one or two on a loaded machine.
RECONNECT_TIMEOUT_MS = 20_000


@dataclass
class LeapSocket:
    """One WebSocket the page opened to Switchboard, and the Leap payloads it sent."""

    url: str
    sent: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False

    def dispatches(self, event: str) -> list[dict[str, Any]]:
        """Client dispatches (op 0) of this event, e.g. SUBSCRIBE or MESSAGE."""
        return [f["d"] for f in self.sent if f.get("op") == 0 and f["d"].get("e") == event]


@dataclass
class User:
    name: str
    page: Any
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    sockets: list[LeapSocket] = field(default_factory=list)

    def _on_console(self, message: Any) -> None:
        self.console.append(message.text)
        if message.type in ("error", "warning"):
            self.warnings.append(message.text)

    def _on_websocket(self, ws: Any) -> None:
        if "/ws" not in ws.url or "token=" in ws.url:  # not Vite's own dev socket
            return
        socket = LeapSocket(ws.url)
        self.sockets.append(socket)

        def sent(payload: str | bytes) -> None:
            if isinstance(payload, str):
                socket.sent.append(json.loads(payload))

        ws.on("framesent", sent)
        ws.on("close", lambda _ws: setattr(socket, "closed", True))

    async def join(self, url: str) -> None:
        """Open the app at ``url`` and join with this user's name."""
        await self.page.goto(url)
        await self.page.get_by_label("Your name").fill(self.name)
        await self.page.get_by_role("button", name="Join").click()

    async def sign_in(self, url: str) -> None:
        """Join, and wait until connected with the room available."""
        from playwright.async_api import expect

        await self.join(url)
        await expect(self.connection).to_have_text("connected")
        await expect(self.subscription).to_have_text("available")

    # What the page shows.
    @property
    def connection(self) -> Any:
        return self.page.get_by_test_id("connection")

    @property
    def subscription(self) -> Any:
        return self.page.get_by_test_id("subscription")

    @property
    def topic(self) -> Any:
        return self.page.get_by_test_id("topic")

    @property
    def members(self) -> Any:
        return self.page.get_by_test_id("members").get_by_role("listitem")

    @property
    def messages(self) -> Any:
        return self.page.get_by_test_id("messages").get_by_role("listitem")

    @property
    def direct(self) -> Any:
        return self.page.get_by_test_id("direct").get_by_role("listitem")

    @property
    def revoked(self) -> Any:
        return self.page.get_by_test_id("revoked")

    # What the user does.
    async def say(self, text: str) -> None:
        """A room message, sent from the page by @onehop/client (a client MESSAGE)."""
        await self.page.get_by_label("Message", exact=True).fill(text)
        await self.page.get_by_role("button", name="Send", exact=True).click()

    async def send_direct(self, to: str, text: str) -> None:
        """A direct message, which the page asks the backend to send."""
        await self.page.get_by_label("Recipient").select_option(to)
        await self.page.get_by_label("Direct message").fill(text)
        await self.page.get_by_role("button", name="Send privately").click()

    async def set_topic(self, topic: str) -> None:
        """The room's topic, a state patch by the backend (STATE_UPDATE to everyone)."""
        await self.page.get_by_label("Topic").fill(topic)
        await self.page.get_by_role("button", name="Set topic").click()


class ChatBrowser:
    """One Chromium; a fresh context (cookies, storage, Hop's client) for each user."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.users: list[User] = []

    async def user(self, name: str) -> User:
        context = await self.browser.new_context(viewport={"width": 1000, "height": 800})
        context.set_default_timeout(10_000)
        user = User(name, await context.new_page())
        user.page.on("console", user._on_console)
        user.page.on("pageerror", lambda error: user.errors.append(str(error)))
        user.page.on("request", lambda request: user.requests.append(request.url))
        user.page.on("websocket", user._on_websocket)
        self.users.append(user)
        return user

    async def screenshots(self, directory: Path, test_name: str) -> None:
        """Every user's page as it is now (called when a test failed)."""
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in test_name)
        for user in self.users:
            try:
                await user.page.screenshot(path=str(directory / f"{safe}-{user.name}.png"))
            except Exception as error:  # a closed page must not hide the test's own failure
                print(f"no screenshot of {user.name}: {error}")
