"""The settings and webhook-log part of the Store contract, on both stores."""

from __future__ import annotations

import msgspec
import pytest

from switchboard.exceptions import NotFound
from switchboard.server.models import Project
from switchboard.server.store import Store

pytestmark = pytest.mark.timeout(30)


def raw(value: object) -> msgspec.Raw:
    return msgspec.Raw(msgspec.json.encode(value))


async def test_a_setting_is_kept_replaced_and_removed(store: Store, project: Project) -> None:
    assert await store.get_project_setting(project.id, "webhooks") is None
    await store.set_project_setting(project.id, "webhooks", raw({"url": "a"}))
    await store.set_project_setting(project.id, "other", raw([1]))
    await store.set_project_setting(project.id, "webhooks", raw({"url": "b"}))
    got = await store.get_project_setting(project.id, "webhooks")
    assert got is not None and msgspec.json.decode(got) == {"url": "b"}
    everything = await store.project_settings(project.id)
    assert {k: msgspec.json.decode(v) for k, v in everything.items()} == {
        "other": [1],
        "webhooks": {"url": "b"},
    }
    await store.set_project_setting(project.id, "webhooks", None)
    assert await store.get_project_setting(project.id, "webhooks") is None
    assert list(await store.project_settings(project.id)) == ["other"]


async def test_settings_belong_to_one_project(store: Store, project: Project) -> None:
    other = await store.create_project("q")
    await store.set_project_setting(project.id, "webhooks", raw(1))
    assert await store.get_project_setting(other.id, "webhooks") is None
    assert await store.project_settings(other.id) == {}


async def test_a_setting_needs_its_project(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.set_project_setting("project_missing", "webhooks", raw(1))


async def test_the_delivery_log_keeps_the_newest(store: Store, project: Project) -> None:
    for n in range(7):
        await store.add_webhook_delivery(project.id, msgspec.json.encode({"n": n}), keep=5)
    entries = [msgspec.json.decode(e)["n"] for e in await store.webhook_deliveries(project.id, 10)]
    assert entries == [6, 5, 4, 3, 2]
    newest = await store.webhook_deliveries(project.id, 2)
    assert [msgspec.json.decode(e)["n"] for e in newest] == [6, 5]
    other = await store.create_project("q")
    assert await store.webhook_deliveries(other.id, 10) == []
