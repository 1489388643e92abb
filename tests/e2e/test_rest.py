"""The REST API over real HTTP: every route, the envelope, and every kind of bad input."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Server


def data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["success"] is True
    return body["data"]


def error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == code, body
    message: str = body["error"]["message"]
    assert message
    return message


async def test_channel_lifecycle(http: httpx.AsyncClient, node: Server) -> None:
    channel = data(await http.put("/channels/game", json={"type": "private", "state": {"a": 1}}))
    channel = channel["channel"]
    assert channel["id"] == "game"
    assert channel["type"] == "private"
    assert channel["state"] == {"a": 1}
    assert channel["capabilities"] == 0
    assert channel["project"]["id"] == node.project_id
    assert channel["created_at"].endswith("Z")

    generated = data(await http.post("/channels", json={"type": "public"}))["channel"]
    assert generated["id"].startswith("channel_") and generated["state"] == {}

    assert data(await http.get("/channels/game"))["channel"] == channel
    listing = data(await http.get("/channels"))
    assert listing["total_count"] == 2
    assert {c["id"] for c in listing["channels"]} == {"game", generated["id"]}

    assert data(await http.get("/channels/game/state")) == {"state": {"a": 1}}
    assert data(await http.put("/channels/game/state", json={"b": 2})) == {}
    assert data(await http.patch("/channels/game/state", json={"c": 3})) == {}
    assert data(await http.get("/channels/game/state")) == {"state": {"b": 2, "c": 3}}
    assert data(await http.get("/channels/game/stats")) == {"stats": {"online_count": 0}}
    assert data(await http.post("/channels/game/messages", json={"e": "x", "d": {"y": 1}})) == {}

    assert data(await http.delete("/channels/game")) == {}
    error(await http.get("/channels/game"), 404, "not_found")
    error(await http.delete("/channels/game"), 404, "not_found")


async def test_pagination(http: httpx.AsyncClient) -> None:
    for i in range(5):
        data(await http.put(f"/channels/c{i}", json={"type": "unprotected"}))
    page = data(await http.get("/channels", params={"page": 2, "pageSize": 2}))
    assert page["page_size"] == 2 and page["total_count"] == 5
    assert [c["id"] for c in page["channels"]] == ["c2", "c3"]
    page = data(
        await http.get(
            "/channels", params={"page": 1, "pageSize": 3, "orderBy": "desc", "sortBy": "id"}
        )
    )
    assert [c["id"] for c in page["channels"]] == ["c4", "c3", "c2"]
    assert data(await http.get("/channels", params={"page": 9}))["channels"] == []
    error(await http.get("/channels", params={"page": 0}), 400, "invalid_request")
    error(await http.get("/channels", params={"pageSize": "x"}), 400, "invalid_request")
    error(await http.get("/channels", params={"sortBy": "state"}), 400, "invalid_request")
    error(await http.get("/channels", params={"orderBy": "up"}), 400, "invalid_request")


async def test_subscribers_and_tokens(http: httpx.AsyncClient, node: Server) -> None:
    data(await http.put("/channels/game", json={"type": "private"}))
    token = data(await http.post("/channels/tokens", json={"state": {"user": "42"}}))["token"]
    assert token["id"].startswith("leap_token_")
    assert token["project_id"] == node.project_id
    assert token["state"] == {"user": "42"}
    assert token["is_online"] is False
    assert token["expires_at"] is None
    assert data(await http.put(f"/channels/game/subscribers/{token['id']}")) == {}
    assert data(await http.put(f"/channels/game/subscribers/{token['id']}")) == {}  # idempotent
    [listed] = data(await http.get("/channels/game/tokens"))["tokens"]
    assert listed["id"] == token["id"]
    assert data(await http.delete(f"/channels/game/subscribers/{token['id']}")) == {}
    assert data(await http.get("/channels/game/tokens")) == {"tokens": []}

    got = data(await http.get(f"/channels/tokens/{token['id']}"))["token"]
    assert got == token
    assert [t["id"] for t in data(await http.get("/channels/tokens"))["tokens"]] == [token["id"]]
    updated = data(
        await http.patch(f"/channels/tokens/{token['id']}", json={"state": {"user": "43"}})
    )["token"]
    assert updated["state"] == {"user": "43"}
    assert (
        data(
            await http.post(f"/channels/tokens/{token['id']}/messages", json={"e": "hi", "d": None})
        )
        == {}
    )
    assert data(await http.delete(f"/channels/tokens/{token['id']}")) == {}
    error(await http.get(f"/channels/tokens/{token['id']}"), 404, "not_found")


async def test_token_create_with_empty_body_and_expiry(http: httpx.AsyncClient) -> None:
    token = data(await http.post("/channels/tokens"))["token"]
    assert token["state"] == {}
    token = data(
        await http.post(
            "/channels/tokens", json={"state": None, "expires_at": "2099-01-02T03:04:05+01:00"}
        )
    )
    assert token["token"]["expires_at"] == "2099-01-02T02:04:05.000Z"
    # The JS SDK's PATCH spells it expiresAt.
    patched = data(
        await http.patch(f"/channels/tokens/{token['token']['id']}", json={"expiresAt": None})
    )["token"]
    assert patched["expires_at"] is None
    error(
        await http.post("/channels/tokens", json={"expires_at": "yesterday"}),
        400,
        "invalid_request",
    )
    error(
        await http.post("/channels/tokens", json={"expires_at": "2000-01-01T00:00:00Z"}),
        400,
        "invalid_request",
    )
    # Found by scripts/fuzz-rest: "" was taken as no expiry on create (a 400 on PATCH),
    # and a time that leaves the calendar in UTC (year 1 at +03:00) was a 500.
    tid = token["token"]["id"]
    for bad in ("", "0001-01-01T02:00:00+03:00", "9999-12-31T23:00:00-03:00"):
        for spelling in ("expires_at", "expiresAt"):
            error(await http.post("/channels/tokens", json={spelling: bad}), 400, "invalid_request")
            error(
                await http.patch(f"/channels/tokens/{tid}", json={spelling: bad}),
                400,
                "invalid_request",
            )
    assert len(data(await http.get("/channels/tokens"))["tokens"]) == 2


async def test_auth_forms(node: Server) -> None:
    async with httpx.AsyncClient(base_url=node.api) as client:
        error(await client.get("/channels"), 401, "invalid_auth")
        error(
            await client.get("/channels", headers={"Authorization": "ptk_nope"}),
            401,
            "invalid_auth",
        )
        error(
            await client.get("/channels", headers={"Authorization": "leap_token_x"}),
            401,
            "invalid_auth",
        )
        bearer = {"Authorization": f"Bearer {node.project_token}"}
        assert data(await client.get("/channels", headers=bearer))["total_count"] == 0
        ok = await client.get(
            "/channels", headers=node.headers, params={"project": node.project_id}
        )
        data(ok)
        error(
            await client.get(
                "/channels", headers=node.headers, params={"project": "project_other"}
            ),
            403,
            "forbidden",
        )


async def test_revoked_project_token_is_cut_off(node: Server) -> None:
    assert node.node is not None
    store = node.node.store
    service = node.node.service
    second = await service.create_project_token(node.project_id)
    async with httpx.AsyncClient(base_url=node.api) as client:
        data(await client.put("/channels/c", json={"type": "public"}, headers=node.headers))
        publish = {"json": {"e": "m", "d": 1}, "headers": {"Authorization": second}}
        data(await client.get("/channels", headers={"Authorization": second}))
        data(await client.post("/channels/c/messages", **publish))  # its lookup cached
        [_, info] = await store.list_project_tokens(node.project_id)
        assert await store.revoke_project_token(info.id)
        error(await client.post("/channels/c/messages", **publish), 401, "invalid_auth")
        error(await client.get("/channels", headers={"Authorization": second}), 401, "invalid_auth")
        data(await client.get("/channels", headers=node.headers))
        data(await client.post("/channels/c/messages", json={"e": "m"}, headers=node.headers))


async def test_nothing_crosses_projects(http: httpx.AsyncClient, node: Server) -> None:
    assert node.node is not None
    other, other_secret = await node.node.service.create_project("other")
    data(await http.put("/channels/mine", json={"type": "private"}))
    mine = data(await http.post("/channels/tokens"))["token"]["id"]
    async with httpx.AsyncClient(
        base_url=node.api, headers={"Authorization": other_secret}
    ) as theirs:
        error(await theirs.get("/channels/mine"), 404, "not_found")
        error(await theirs.get("/channels/mine/state"), 404, "not_found")
        error(await theirs.post("/channels/mine/messages", json={"e": "x"}), 404, "not_found")
        error(await theirs.delete("/channels/mine"), 404, "not_found")
        error(await theirs.get(f"/channels/tokens/{mine}"), 404, "not_found")
        error(await theirs.delete(f"/channels/tokens/{mine}"), 404, "not_found")
        error(
            await theirs.post(f"/channels/tokens/{mine}/messages", json={"e": "x"}),
            404,
            "not_found",
        )
        assert data(await theirs.get("/channels/tokens"))["tokens"] == []
        assert data(await theirs.get("/channels"))["channels"] == []
        # Their channel with the same ID, and our token in it: refused.
        data(await theirs.put("/channels/mine", json={"type": "private"}))
        error(await theirs.put(f"/channels/mine/subscribers/{mine}"), 404, "not_found")
    assert data(await http.get("/channels/mine"))["channel"]["project"]["id"] == node.project_id
    assert data(await http.get(f"/channels/tokens/{mine}"))["token"]["id"] == mine
    assert other.id != node.project_id


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("PUT", "/channels/x", b"{not json", 400, "invalid_request"),
        ("PUT", "/channels/x", b"", 400, "invalid_request"),
        ("PUT", "/channels/x", b"[]", 400, "invalid_request"),
        ("PUT", "/channels/x", b'{"type": 5}', 400, "invalid_request"),
        ("PUT", "/channels/x", b'{"type": "secret"}', 400, "invalid_request"),
        ("PUT", "/channels/x", b'{"type": "private", "state": [1]}', 400, "invalid_request"),
        ("PUT", "/channels/x", b'{"type": "private", "state": "s"}', 400, "invalid_request"),
        # Not a channel called "tokens": that path has no PUT (a reserved ID).
        ("PUT", "/channels/tokens", b'{"type": "private"}', 405, "method_not_allowed"),
        ("PUT", "/channels/tokens/state", b"{}", 405, "method_not_allowed"),
        ("PUT", "/channels/tokens/subscribers/t", None, 404, "not_found"),
        ("PUT", "/channels/has%20space", b'{"type": "private"}', 400, "invalid_request"),
        # A trailing newline is not a channel ID (the document's pattern says so too).
        ("PUT", "/channels/game%0A", b'{"type": "private"}', 400, "invalid_request"),
        ("PUT", "/channels/" + "x" * 129, b'{"type": "private"}', 400, "invalid_request"),
        ("POST", "/channels", b'{"state": {}}', 400, "invalid_request"),
        ("POST", "/channels/tokens", b'{"state": 5}', 400, "invalid_request"),
        ("POST", "/channels/tokens", b'{"state": {}, "expires_at": 5}', 400, "invalid_request"),
        ("GET", "/nowhere", None, 404, "not_found"),
        ("GET", "/channels/x/nowhere", None, 404, "not_found"),
        ("POST", "/channels/x/stats", b"{}", 405, "method_not_allowed"),
        ("DELETE", "/channels", None, 405, "method_not_allowed"),
    ],
)
async def test_bad_requests_get_the_envelope(
    http: httpx.AsyncClient, method: str, path: str, body: bytes | None, status: int, code: str
) -> None:
    error(await http.request(method, path, content=body), status, code)
    # Nothing half-written: no channel appeared.
    assert data(await http.get("/channels"))["total_count"] == 0


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/channels/game/state", b'"not an object"'),
        ("PATCH", "/channels/game/state", b"[1]"),
        ("PUT", "/channels/game/state", b"{oops"),
        ("POST", "/channels/game/messages", b'{"d": 1}'),
        ("POST", "/channels/game/messages", b'{"e": 1}'),
        ("POST", "/channels/game/messages", b'{"e": ""}'),
        ("POST", "/channels/game/messages", ('{"e": "%s"}' % ("x" * 129)).encode()),
    ],
)
async def test_bad_writes_change_nothing(
    http: httpx.AsyncClient, method: str, path: str, body: bytes
) -> None:
    data(await http.put("/channels/game", json={"type": "private", "state": {"keep": 1}}))
    error(await http.request(method, path, content=body), 400, "invalid_request")
    assert data(await http.get("/channels/game/state")) == {"state": {"keep": 1}}


async def test_oversize_payloads_are_refused_whole(http: httpx.AsyncClient) -> None:
    big = "x" * (64 * 1024)
    data(await http.put("/channels/game", json={"type": "private", "state": {"keep": 1}}))
    error(
        await http.put("/channels/big", json={"type": "private", "state": {"s": big}}),
        413,
        "payload_too_large",
    )
    error(await http.get("/channels/big"), 404, "not_found")
    error(await http.put("/channels/game/state", json={"s": big}), 413, "payload_too_large")
    # A patch whose result would pass the limit changes nothing either.
    half = "y" * (40 * 1024)
    data(await http.patch("/channels/game/state", json={"a": half}))
    error(await http.patch("/channels/game/state", json={"b": half}), 413, "payload_too_large")
    assert data(await http.get("/channels/game/state"))["state"] == {"keep": 1, "a": half}
    error(
        await http.post("/channels/game/messages", json={"e": "x", "d": big}),
        413,
        "payload_too_large",
    )
    error(await http.post("/channels/tokens", json={"state": {"s": big}}), 413, "payload_too_large")
    assert data(await http.get("/channels/tokens"))["tokens"] == []
    # Past the request body limit (1 MiB) the server does not even read it.
    error(
        await http.post("/channels/game/messages", content=b"x" * (2 * 1024 * 1024)),
        413,
        "payload_too_large",
    )


async def test_ids_with_unusual_characters_round_trip(http: httpx.AsyncClient) -> None:
    for channel_id in ["a.b:c@d-e_f", "UPPER", "0"]:
        created = data(await http.put(f"/channels/{channel_id}", json={"type": "public"}))
        assert created["channel"]["id"] == channel_id
        assert data(await http.get(f"/channels/{channel_id}"))["channel"]["id"] == channel_id


async def test_conflict_on_existing_channel(http: httpx.AsyncClient) -> None:
    data(await http.put("/channels/game", json={"type": "private", "state": {"v": 1}}))
    error(
        await http.put("/channels/game", json={"type": "public", "state": {"v": 2}}),
        409,
        "already_exists",
    )
    channel = data(await http.get("/channels/game"))["channel"]
    assert (channel["type"], channel["state"]) == ("private", {"v": 1})


async def test_missing_things_are_404(http: httpx.AsyncClient) -> None:
    token = data(await http.post("/channels/tokens"))["token"]["id"]
    data(await http.put("/channels/game", json={"type": "private"}))
    for method, path in [
        ("GET", "/channels/none/state"),
        ("PUT", "/channels/none/subscribers/" + token),
        ("PUT", "/channels/game/subscribers/leap_token_none"),
        ("DELETE", "/channels/game/subscribers/leap_token_none"),
        ("GET", "/channels/none/tokens"),
        ("GET", "/channels/none/stats"),
        ("GET", "/channels/tokens/leap_token_none"),
        ("PATCH", "/channels/tokens/leap_token_none"),
    ]:
        body = b'{"state": {}}' if method == "PATCH" else None
        error(await http.request(method, path, content=body), 404, "not_found")


async def test_health_and_readiness(node: Server) -> None:
    async with httpx.AsyncClient(base_url=node.base_url) as client:
        assert data(await client.get("/healthz")) == {"status": "ok"}
        assert data(await client.get("/readyz")) == {"status": "ready", "workers": 1}
