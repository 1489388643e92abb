"""Bad arguments raise TypeError/ValueError before any request is made.

The clients point at a port where nothing listens and never retry: had a request
been made, the error would be ``Unavailable`` instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from switchboard import AsyncSwitchboard, Switchboard, Unavailable
from tests.conftest import free_port

BAD_CALLS: list[tuple[str, Callable[[Any], Any], type[Exception]]] = [
    ("type not a str", lambda c: c.create(123), TypeError),
    ("unknown type", lambda c: c.create("secret"), ValueError),
    ("id not a str", lambda c: c.create("private", 5), TypeError),
    ("empty id", lambda c: c.create("private", ""), ValueError),
    ("reserved id", lambda c: c.create("private", "tokens"), ValueError),
    ("state a list", lambda c: c.create("private", "x", [1]), TypeError),
    ("state not JSON", lambda c: c.create("private", "x", {"a": object()}), TypeError),
    ("state NaN", lambda c: c.create("private", "x", {"a": float("nan")}), ValueError),
    ("state int key", lambda c: c.create("private", "x", {1: "a"}), TypeError),
    ("get None", lambda c: c.get(None), TypeError),
    ("get empty", lambda c: c.get(""), ValueError),
    ("delete int", lambda c: c.delete(7), TypeError),
    ("get_state bytes", lambda c: c.get_state(b"game"), TypeError),
    ("set_state str", lambda c: c.set_state("game", "x"), TypeError),
    ("patch_state int", lambda c: c.patch_state("game", 5), TypeError),
    ("event int", lambda c: c.publish_message("game", 5, {}), TypeError),
    ("event empty", lambda c: c.publish_message("game", "", {}), ValueError),
    ("data not JSON", lambda c: c.publish_message("game", "E", {1, 2}), TypeError),
    ("subscribe token int", lambda c: c.subscribe_token("game", 5), TypeError),
    ("subscribe lone str", lambda c: c.subscribe_tokens("game", "leap_token_x"), TypeError),
    ("subscribe bad item", lambda c: c.subscribe_tokens("game", ["leap_token_x", 5]), TypeError),
    ("subscribe bad channel", lambda c: c.subscribe_tokens(None, []), TypeError),
    ("remove token empty", lambda c: c.remove_token("game", ""), ValueError),
    ("remove lone str", lambda c: c.remove_tokens("game", "leap_token_x"), TypeError),
    ("tokens of int", lambda c: c.get_all_tokens(1), TypeError),
    ("stats of list", lambda c: c.get_stats(["game"]), TypeError),
    ("token state str", lambda c: c.tokens.create("x"), TypeError),
    ("naive expiry", lambda c: c.tokens.create(expires_at=datetime(2099, 1, 1)), ValueError),
    ("expiry not ISO", lambda c: c.tokens.create(expires_at="tomorrow"), ValueError),
    ("expiry no zone", lambda c: c.tokens.create(expires_at="2099-01-01T00:00:00"), ValueError),
    ("expiry int", lambda c: c.tokens.create(expires_at=5), TypeError),
    ("token get int", lambda c: c.tokens.get(5), TypeError),
    ("token set_state list", lambda c: c.tokens.set_state("leap_token_x", [1]), TypeError),
    ("token delete None", lambda c: c.tokens.delete(None), TypeError),
    ("is_online empty", lambda c: c.tokens.is_online(""), ValueError),
    ("dm event None", lambda c: c.tokens.publish_direct_message("leap_token_x", None), TypeError),
]


def nowhere() -> str:
    return f"http://127.0.0.1:{free_port()}"


# One client of each kind for the whole module: making an httpx client costs ~50 ms.


@pytest.fixture(scope="module")
def sync_sb() -> Iterator[Switchboard]:
    with Switchboard("ptk_x", nowhere(), max_retries=0) as sb:
        yield sb


@pytest.fixture(scope="module")
def async_sb() -> Iterator[AsyncSwitchboard]:
    sb = AsyncSwitchboard("ptk_x", nowhere(), max_retries=0)
    yield sb
    asyncio.run(sb.aclose())


@pytest.mark.parametrize(("name", "call", "error"), BAD_CALLS, ids=[b[0] for b in BAD_CALLS])
async def test_bad_arguments_async(
    async_sb: AsyncSwitchboard, name: str, call: Callable[[Any], Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await call(async_sb.channels)


@pytest.mark.parametrize(("name", "call", "error"), BAD_CALLS, ids=[b[0] for b in BAD_CALLS])
def test_bad_arguments_sync(
    sync_sb: Switchboard, name: str, call: Callable[[Any], Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        call(sync_sb.channels)


async def test_nowhere_really_is_unreachable(
    sync_sb: Switchboard, async_sb: AsyncSwitchboard
) -> None:
    # The premise of the tests above: a request would have failed differently.
    with pytest.raises(Unavailable) as caught:
        await async_sb.channels.get("game")
    assert caught.value.code == "unreachable"
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    with pytest.raises(Unavailable):
        sync_sb.channels.get("game")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"project_token": None}, TypeError),
        ({"project_token": ""}, ValueError),
        ({"base_url": "localhost:4000"}, ValueError),
        ({"base_url": 4000}, TypeError),
        ({"timeout": "1"}, TypeError),
        ({"timeout": True}, TypeError),
        ({"max_retries": -1}, ValueError),
        ({"max_retries": 1.5}, TypeError),
        ({"retry_backoff": -1}, ValueError),
        ({"project": 5}, TypeError),
    ],
)
@pytest.mark.parametrize("cls", [Switchboard, AsyncSwitchboard])
def test_bad_settings(cls: type[Any], kwargs: dict[str, Any], error: type[Exception]) -> None:
    args = {"project_token": "ptk_x", "base_url": "http://127.0.0.1:1"} | kwargs
    with pytest.raises(error):
        cls(**args)


def test_wrong_http_client_kind() -> None:
    with httpx.Client() as sync_client, pytest.raises(TypeError):
        AsyncSwitchboard("ptk_x", http_client=sync_client)  # type: ignore[arg-type]
