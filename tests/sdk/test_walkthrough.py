"""The Tokens walkthrough of ``docs/python-sdk.md``, run as a new user would run it:
the script in the docs, in its own process, against a real server."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

from switchboard import AsyncSwitchboard
from switchboard.client import connect
from tests.conftest import ROOT, Server

DOC = ROOT / "docs" / "python-sdk.md"


def doc_block(first_line: str) -> str:
    """The fenced block of the doc that starts with ``first_line``."""
    for block in re.findall(r"```(?:python)?\n(.*?)```", DOC.read_text(), re.DOTALL):
        if block.startswith(first_line):
            return str(block)
    raise AssertionError(f"no block starting {first_line!r} in {DOC}")


async def test_walkthrough_script_runs_as_documented(node: Server, tmp_path: Path) -> None:
    script = tmp_path / "walkthrough.py"
    script.write_text(doc_block("# walkthrough.py"))
    env = {
        **os.environ,
        "SWITCHBOARD_URL": node.base_url,
        "SWITCHBOARD_PROJECT_ID": node.project_id,
        "SWITCHBOARD_PROJECT_TOKEN": node.project_token,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    expected = doc_block("online before connecting")
    assert out.decode() == expected


async def test_walkthrough_steps_with_the_sync_sdk(node: Server) -> None:
    setup = doc_block("from switchboard import ChannelType, Switchboard")
    setup = setup.replace('"ptk_…"', repr(node.project_token))
    setup = setup.replace('"http://localhost:4000"', repr(node.base_url))
    steps = [
        doc_block("token = sb.channels.tokens.create"),
        doc_block("sb.channels.create(ChannelType.PRIVATE"),
        doc_block("sb.channels.subscribe_token"),
        doc_block("sb.channels.tokens.publish_direct_message"),
        doc_block("if sb.channels.tokens.is_online").replace("...", "raise AssertionError"),
    ]
    namespace: dict[str, Any] = {}

    def backend() -> None:  # sync SDK: in a thread, so the server keeps serving
        exec(setup, namespace)
        for step in steps:
            exec(step, namespace)
        namespace["sb"].close()

    await asyncio.to_thread(backend)
    token = namespace["token"]
    async with AsyncSwitchboard(node.project_token, node.base_url) as sb:
        assert (await sb.channels.get("game")).type == "private"
        assert [t.id for t in await sb.channels.get_all_tokens("game")] == [token.id]
        async with connect(node.project_id, token.id, url=node.ws_url) as client:
            assert client.metadata == {"user_id": "42"}
            assert client.channel_state("game") == {"round": 1}
            assert await sb.channels.tokens.is_online(token.id)
