"""Every `hop.channels` / `hop.channels.tokens` method of @onehop/js against a real server."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.compat.conftest import JS, Steps, run_blocking, skip_without_node
from tests.conftest import Server, launch, stop

pytestmark = pytest.mark.compat

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")
TOKEN_ID = re.compile(r"^leap_token_[A-Za-z0-9_-]{22,}$")
METHODS = [
    "setState",
    "patchState",
    "subscribeToken",
    "subscribeTokens",
    "removeToken",
    "publishMessage",
]


def channel_fields(channel: dict[str, Any]) -> dict[str, Any]:
    """The API's fields of a Channel the SDK returned (it adds its bound methods)."""
    for method in METHODS:
        assert channel.pop(method) == f"[function {method}]", channel
    return channel


def assert_channel(
    channel: dict[str, Any], server: Server, id_: str | None, type_: str, state: dict[str, Any]
) -> None:
    channel = channel_fields(dict(channel))
    assert set(channel) == {"id", "project", "state", "type", "capabilities", "created_at"}, channel
    if id_ is None:
        assert channel["id"].startswith("channel_"), channel
    else:
        assert channel["id"] == id_
    assert channel["type"] == type_
    assert channel["state"] == state
    assert channel["capabilities"] == 0
    assert channel["project"]["id"] == server.project_id
    assert channel["project"]["name"] == "default"
    assert ISO_UTC.match(channel["created_at"]), channel["created_at"]


def assert_token(
    token: dict[str, Any], server: Server, state: Any, *, online: bool = False
) -> None:
    assert set(token) == {"id", "project_id", "state", "is_online", "created_at", "expires_at"}, (
        token
    )
    assert TOKEN_ID.match(token["id"]), token["id"]
    assert token["project_id"] == server.project_id
    assert token["state"] == state
    assert token["is_online"] is online
    assert ISO_UTC.match(token["created_at"]), token["created_at"]
    assert token["expires_at"] is None


def assert_api_error(steps: Steps, step: str, status: int, code: str) -> None:
    error = steps.error(step)
    assert error["name"] == "HopAPIError" and error["isHopAPIError"], error
    assert error["status"] == status, error
    assert error["code"] == code, error
    assert error["message"], error
    assert error["data"] == {"success": False, "error": {"code": code, "message": error["message"]}}


@pytest.fixture(scope="module")
def rest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Steps]]:
    """One run of rest_sdk.cjs for the module's tests, against a `switchboard serve` process."""
    skip_without_node()
    server = launch(tmp_path_factory.mktemp("rest") / "data")
    try:
        yield server, run_blocking("rest_sdk.cjs", "channels", server)
    finally:
        stop(server, signal.SIGKILL)


@pytest.fixture
def steps(rest: tuple[Server, Steps]) -> Steps:
    return rest[1]


@pytest.fixture
def server(rest: tuple[Server, Steps]) -> Server:
    return rest[0]


def test_create(steps: Steps, server: Server) -> None:
    assert_channel(steps["create_with_id"], server, "lobby", "unprotected", {})
    assert steps["create_with_id_methods"] == {m: "function" for m in METHODS}
    assert_channel(
        steps["create_with_id_and_state"], server, "game", "private", {"round": 1, "players": ["a"]}
    )
    assert_channel(steps["create_generated"], server, None, "public", {})
    assert_channel(steps["create_generated_with_state"], server, None, "public", {"topic": "news"})
    assert steps["create_generated"]["id"] != steps["create_generated_with_state"]["id"]
    assert_api_error(steps, "create_duplicate", 409, "already_exists")
    assert_api_error(steps, "create_bad_type", 400, "invalid_request")
    # PUT /v1/channels/tokens: that path (the token list) has no PUT.
    assert_api_error(steps, "create_reserved_id", 405, "method_not_allowed")
    assert "'tokens' is reserved" in steps.error("create_reserved_id")["message"]
    # ?project= as the SDK sends it: the token's own project is fine, another is refused.
    assert_channel(steps["create_with_project"], server, "with-project", "public", {})
    assert_api_error(steps, "create_with_foreign_project", 403, "forbidden")


def test_get_and_get_all(steps: Steps, server: Server) -> None:
    created = steps["create_with_id_and_state"]
    assert steps["get"] == created
    assert_channel(steps["get"], server, "game", "private", {"round": 1, "players": ["a"]})
    all_ids = [c["id"] for c in steps["get_all"]]
    generated = [steps["create_generated"]["id"], steps["create_generated_with_state"]["id"]]
    assert sorted(all_ids) == sorted(["lobby", "game", *generated])
    for channel in steps["get_all"]:
        assert set(channel_fields(dict(channel))) == {
            "id",
            "project",
            "state",
            "type",
            "capabilities",
            "created_at",
        }
    assert steps["get_all_has_methods"] == [True] * 4
    assert_api_error(steps, "get_missing", 404, "not_found")
    assert steps["get_all_with_project"] == sorted([*generated, "game", "with-project"])


def test_set_and_patch_state(steps: Steps) -> None:
    assert steps.undefined("set_state")
    assert steps["set_state_read"] == {"round": 2, "score": {"a": 1}}
    assert steps.undefined("patch_state")
    # patch merges top-level keys: `score` is replaced whole, `winner: null` is kept as null.
    assert steps["patch_state_read"] == {"round": 2, "score": {"b": 2}, "winner": None}
    # Function forms: the SDK GETs the state, passes it in, then PUTs / PATCHes the result.
    assert steps.undefined("set_state_fn")
    assert steps["set_state_fn_old"] == {"round": 2, "score": {"b": 2}, "winner": None}
    assert steps["set_state_fn_read"] == {"round": 3}
    assert steps.undefined("patch_state_fn")
    assert steps["patch_state_fn_old"] == {"round": 3}
    assert steps["patch_state_fn_read"] == {"round": 30, "extra": True}
    # By Channel object, and the bound methods of a returned Channel.
    assert steps.undefined("set_state_by_object")
    assert steps.undefined("bound_set_state")
    assert steps.undefined("bound_patch_state")
    assert steps["bound_state_read"] == {"open": False, "n": 2}
    assert_api_error(steps, "set_state_missing", 404, "not_found")
    assert_api_error(steps, "patch_state_missing", 404, "not_found")
    assert_api_error(steps, "set_state_not_object", 400, "invalid_request")


def test_publish_message(steps: Steps) -> None:
    assert steps.undefined("publish_message")
    assert steps.undefined("publish_message_by_object")
    assert steps.undefined("bound_publish_message")
    assert_api_error(steps, "publish_message_missing", 404, "not_found")


def test_tokens(steps: Steps, server: Server) -> None:
    alice = steps["tokens_create"]
    assert_token(alice, server, {"userId": "alice"})
    bob = steps["tokens_create_default"]
    assert_token(bob, server, {})
    assert len({alice["id"], bob["id"], steps["tokens_create_carol"]["id"]}) == 3
    assert steps["tokens_get"] == alice
    # setState replaces the state and returns the token.
    assert_token(steps["tokens_set_state"], server, {"userId": "bob", "tier": "gold"})
    assert_token(steps["tokens_set_state_replaces"], server, {"userId": "bob"})
    assert steps["tokens_get_after_set_state"] == steps["tokens_set_state_replaces"]
    assert steps["tokens_get_after_set_state"]["id"] == bob["id"]
    assert steps["tokens_get_after_set_state"]["created_at"] == bob["created_at"]
    assert steps["tokens_is_online_by_id"] is False
    assert steps["tokens_is_online_by_object"] is False
    assert_api_error(steps, "tokens_get_missing", 404, "not_found")
    assert_api_error(steps, "tokens_is_online_missing", 404, "not_found")
    assert steps.undefined("tokens_publish_direct_message")
    assert_api_error(steps, "tokens_publish_direct_message_missing", 404, "not_found")
    assert steps.undefined("tokens_delete")
    assert_api_error(steps, "tokens_get_deleted", 404, "not_found")
    assert_api_error(steps, "tokens_delete_missing", 404, "not_found")
    assert_token(steps["tokens_create_with_project"], server, {"p": 1})


def test_subscribe_and_remove_tokens(steps: Steps, server: Server) -> None:
    alice, bob, carol = (
        steps["tokens_create"]["id"],
        steps["tokens_create_default"]["id"],
        steps["tokens_create_carol"]["id"],
    )
    assert steps.undefined("subscribe_token")
    assert steps.undefined("subscribe_token_again")  # idempotent
    # subscribeTokens settles every call and swallows the failure of the unknown token.
    assert steps.undefined("subscribe_tokens")
    subscribed = steps["get_all_tokens"]
    assert sorted(t["id"] for t in subscribed) == sorted([alice, bob, carol])
    for token in subscribed:
        assert set(token) == {"id", "project_id", "state", "is_online", "created_at", "expires_at"}
        assert token["project_id"] == server.project_id
    assert {t["id"]: t["state"] for t in subscribed} == {
        alice: {"userId": "alice"},
        bob: {"userId": "bob"},
        carol: {"userId": "carol"},
    }
    assert steps["get_all_tokens_by_object"] == subscribed
    assert steps.undefined("remove_token")
    assert sorted(t["id"] for t in steps["get_all_tokens_after_remove"]) == sorted([alice, carol])
    assert steps.undefined("remove_tokens")
    assert steps["get_all_tokens_after_remove_tokens"] == []
    assert steps.undefined("bound_subscribe_token")
    assert steps.undefined("bound_subscribe_tokens")
    assert steps.undefined("bound_remove_token")
    assert [t["id"] for t in steps["lobby_tokens"]] == [alice]
    assert_api_error(steps, "subscribe_token_missing_channel", 404, "not_found")
    assert_api_error(steps, "subscribe_token_missing_token", 404, "not_found")
    assert_api_error(steps, "get_all_tokens_missing", 404, "not_found")


def test_stats_and_delete(steps: Steps) -> None:
    assert steps["get_stats"] == {"online_count": 0}
    assert_api_error(steps, "get_stats_missing", 404, "not_found")
    assert steps.undefined("delete")
    assert_api_error(steps, "get_deleted", 404, "not_found")
    assert_api_error(steps, "delete_missing", 404, "not_found")
    generated = [steps["create_generated"]["id"], steps["create_generated_with_state"]["id"]]
    assert steps["get_all_after_delete"] == sorted([*generated, "game"])


def test_auth_errors(steps: Steps) -> None:
    assert_api_error(steps, "unknown_project_token", 401, "invalid_auth")
    assert_api_error(steps, "unknown_project_token_tokens", 401, "invalid_auth")


def test_sdk_writes_are_what_the_api_reads(steps: Steps, server: Server) -> None:
    """What the SDK wrote is what the REST API serves (no SDK on the reading side)."""
    with httpx.Client(base_url=server.api, headers=server.headers) as http:
        game = http.get("/channels/game").json()["data"]["channel"]
        state = http.get("/channels/game/state").json()["data"]["state"]
        tokens = http.get("/channels/tokens").json()["data"]["tokens"]
    assert game["state"] == state == steps["patch_state_fn_read"]
    assert datetime.fromisoformat(game["created_at"].replace("Z", "+00:00"))
    # carol was deleted; alice, bob and the token made with ?project= remain.
    assert sorted(t["id"] for t in tokens) == sorted(
        [
            steps["tokens_create"]["id"],
            steps["tokens_create_default"]["id"],
            steps["tokens_create_with_project"]["id"],
        ]
    )


async def test_foreign_project_token(node: Server, js: JS) -> None:
    """A project token of another project sees none of this project's channels."""
    assert node.node is not None
    _other, other_secret = await node.node.service.create_project("other")
    async with httpx.AsyncClient(base_url=node.api, headers=node.headers) as http:
        r = await http.put("/channels/mine", json={"type": "public"})
        assert r.status_code == 200, r.text
    other = Server(node.base_url, _other.id, other_secret)
    steps = await js.run("rest_sdk.cjs", "foreign", other, SB_OTHER_PROJECT=node.project_id)
    assert_api_error(steps, "get_foreign_channel", 404, "not_found")
    assert_api_error(steps, "publish_foreign_channel", 404, "not_found")
    assert_api_error(steps, "get_all_with_foreign_project", 403, "forbidden")
    assert steps["get_all_own"] == []


async def test_a_missing_permission_is_a_hop_api_error(node: Server, js: JS) -> None:
    """@onehop/js throws its HopAPIError with status 403 and the server's message."""
    from switchboard.server.permissions import Permission

    assert node.node is not None
    reader = await node.node.service.create_project_token(node.project_id, Permission.READ_CHANNELS)
    async with httpx.AsyncClient(base_url=node.api, headers=node.headers) as http:
        r = await http.put("/channels/mine", json={"type": "public"})
        assert r.status_code == 200, r.text
    steps = await js.run(
        "rest_sdk.cjs", "restricted", Server(node.base_url, node.project_id, reader)
    )
    assert steps["restricted_get_all"] == ["mine"]
    for step, permission in [
        ("restricted_delete", "delete_channels"),
        ("restricted_tokens_create", "create_leap_token"),
    ]:
        error = steps.error(step)
        assert error["name"] == "HopAPIError" and error["isHopAPIError"], error
        assert error["status"] == 403 and error["code"] == "missing_permission", error
        assert permission in error["message"], error
        assert error["data"]["error"]["permission"] == permission
    assert steps["restricted_get_after"] == "mine"  # the refused delete deleted nothing


async def test_a_channel_with_history_reads_and_works_in_hop_s_sdk(node: Server, js: JS) -> None:
    """Switchboard's ``history`` key on a channel (docs/history.md) breaks nothing in
    @onehop/js: the channel comes back with it, and its bound methods work."""
    async with httpx.AsyncClient(base_url=node.api, headers=node.headers) as http:
        r = await http.put("/channels/kept", json={"type": "public", "history": {"size": 5}})
        assert r.status_code == 200, r.text
        steps = await js.run("rest_sdk.cjs", "history", node)
        kept = channel_fields(dict(steps["history_get"]))
        assert kept["history"] == {"size": 5, "ttl_s": 300}
        assert kept["id"] == "kept" and kept["type"] == "public"
        [listed] = steps["history_get_all"]
        assert channel_fields(dict(listed))["history"] == {"size": 5, "ttl_s": 300}
        assert steps.undefined("history_bound_publish")
        assert steps.undefined("history_bound_set_state")
        assert steps["history_state_read"] == {"round": 2}
        messages = (await http.get("/channels/kept/messages")).json()["data"]["messages"]
        assert [(m["offset"], m["e"], m["d"]) for m in messages] == [(1, "MOVE", {"x": 1})]
