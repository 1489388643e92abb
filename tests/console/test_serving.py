"""How the console is served, and ``GET /v1/stats`` (no browser needed)."""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path

import httpx
import websockets

from switchboard.server.fanout.activity import Activity
from tests.conftest import ROOT, Server
from tests.e2e.leap import Leap

SERVER_PKG = ROOT / "src" / "switchboard" / "server"
CONSOLE = SERVER_PKG / "console"
IMPORT = re.compile(r"""^\s*(?:import|export)\s[^;]*?from\s+["'](\.{1,2}/[^"']+)["']""", re.M)


async def test_console_page_and_files_are_served(node: Server) -> None:
    async with httpx.AsyncClient() as http:
        for path in ("/console", "/console/"):
            page = await http.get(node.base_url + path)
            assert page.status_code == 200
            assert page.headers["content-type"] == "text/html; charset=utf-8"
            csp = page.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert page.headers["referrer-policy"] == "no-referrer"
            assert page.headers["x-content-type-options"] == "nosniff"

        # Everything the page links to is there, with its type.
        for ref in re.findall(r'(?:src|href)="(/console/[^"]+)"', page.text):
            asset = await http.get(node.base_url + ref)
            assert asset.status_code == 200, ref
        js = await http.get(node.base_url + "/console/js/app.js")
        assert js.headers["content-type"] == "text/javascript; charset=utf-8"
        css = await http.get(node.base_url + "/console/console.css")
        assert css.headers["content-type"] == "text/css; charset=utf-8"

        # Caching: the ETag answers 304.
        again = await http.get(
            node.base_url + "/console/js/app.js", headers={"If-None-Match": js.headers["etag"]}
        )
        assert again.status_code == 304

        # Anything else is the JSON 404, and nothing outside the folder is reachable.
        for path in (
            "/console/nope.js",
            "/console/js/../../api/console.py",
            "/console/%2e%2e/cli.py",
        ):
            missing = await http.get(node.base_url + path)
            assert missing.status_code == 404, path
            assert missing.json()["success"] is False


def test_every_module_import_resolves() -> None:
    """The JavaScript module graph is whole: each relative import names a shipped file."""
    files = list(CONSOLE.rglob("*.js"))
    assert files
    for path in files:
        for target in IMPORT.findall(path.read_text()):
            assert (path.parent / target).resolve().is_file(), (path, target)


def test_package_data_ships_every_console_file() -> None:
    """pyproject's package-data globs (as setuptools expands them) cover the whole folder."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["switchboard.server"]
    shipped = {p for pattern in globs for p in SERVER_PKG.glob(pattern) if p.is_file()}
    on_disk = {p for p in CONSOLE.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert on_disk and on_disk <= shipped, sorted(str(p) for p in on_disk - shipped)


async def test_stats_needs_a_project_token(node: Server) -> None:
    async with httpx.AsyncClient() as http:
        reply = await http.get(node.api + "/stats")
        assert reply.status_code == 401
        assert reply.json()["error"]["code"] == "invalid_auth"
        reply = await http.get(node.api + "/stats", headers={"Authorization": "ptk_nope"})
        assert reply.status_code == 401


async def test_stats_counts_the_project(node: Server) -> None:
    async with httpx.AsyncClient(headers=node.headers) as http:
        token = (await http.post(node.api + "/channels/tokens", json={})).json()["data"]["token"]
        await http.post(node.api + "/channels/tokens", json={})
        await http.put(node.api + "/channels/room", json={"type": "unprotected"})

        async with (
            websockets.connect(node.ws_url) as a,
            websockets.connect(node.ws_url) as b,
            websockets.connect(node.ws_url) as c,
        ):
            user, anonymous, console = Leap(a), Leap(b), Leap(c)
            await user.identify(node.project_id, token["id"])
            await anonymous.identify(node.project_id)
            init = await console.identify(node.project_id, node.project_token)
            assert init["scope"] == "project"
            for leap in (user, anonymous, console):
                assert (await leap.subscribe("room"))["e"] == "AVAILABLE"

            data = (await http.get(node.api + "/stats")).json()["data"]
            assert data["project"]["id"] == node.project_id
            assert data["cluster"] is False
            assert data["connections"] == 2  # the console's own connection is apart
            assert data["console_connections"] == 1
            assert data["tokens"] == 2
            assert data["tokens_online"] == 1
            assert data["channels"] == 1
            assert data["channels_active"] == 1

            for i in range(3):
                await http.post(node.api + "/channels/room/messages", json={"e": "E", "d": i})
            await http.post(
                node.api + f"/channels/tokens/{token['id']}/messages", json={"e": "DM", "d": 1}
            )
            # The sampler closes a one-second interval; the rate shows within two.
            for _ in range(40):
                messages = (await http.get(node.api + "/stats")).json()["data"]["messages"]
                if sum(messages["series"]) == 4:
                    break
                await asyncio.sleep(0.1)
            assert messages["total"] == 4
            assert len(messages["series"]) == 300 and messages["interval_s"] == 1
            assert sum(messages["series"]) == 4
            assert messages["per_second"] == 0.4  # 4 messages over the last 10 s


async def test_stats_are_per_project(node: Server) -> None:
    assert node.node is not None
    other, secret = await node.node.service.create_project("other")
    async with httpx.AsyncClient() as http:
        await http.put(node.api + "/channels/mine", json={"type": "public"}, headers=node.headers)
        data = (await http.get(node.api + "/stats", headers={"Authorization": secret})).json()
        assert data["data"]["project"]["id"] == other.id
        assert data["data"]["channels"] == 0


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_activity_series() -> None:
    clock = FakeClock()
    activity = Activity(window=5, clock=clock)
    assert activity.series("p") == [0.0] * 5

    for _ in range(3):
        activity.count("p")
    clock.now += 1
    activity.sample()
    assert activity.series("p") == [0, 0, 0, 0, 3]
    assert activity.total("p") == 3

    # A late sample (a busy loop) spreads its count over the seconds it covered.
    for _ in range(4):
        activity.count("p")
    clock.now += 2
    activity.sample()
    assert activity.series("p") == [0, 0, 3, 2, 2]

    # Quiet for a whole window: the series is dropped (zeros again), the total stays.
    for _ in range(5):
        clock.now += 1
        activity.sample()
    assert activity.series("p") == [0.0] * 5
    assert activity.total("p") == 7
    assert activity.series("other") == [0.0] * 5


def test_console_folder_is_plain_files() -> None:
    """No build step: no bundler config or node_modules next to the console."""
    names = {p.name for p in Path(CONSOLE).rglob("*")}
    assert not names & {"package.json", "node_modules", "webpack.config.js", "vite.config.js"}
