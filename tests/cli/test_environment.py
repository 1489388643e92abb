"""Every flag that has an environment variable is set by it, under the name it had.

README.md: "Every flag has an environment variable (``SWITCHBOARD_HOST``,
``SWITCHBOARD_PORT``, ``SWITCHBOARD_DATA``, …)". The names are a contract with
deployments (unit files, compose files), so they are listed here one by one rather than
derived from the flags: a renamed flag must not rename its variable unnoticed.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from switchboard.server.cli import main
from switchboard.server.config import Limits, Settings

# The module, not the command of the same name that cli/__init__.py imports from it.
serve_module = importlib.import_module("switchboard.server.cli.serve")

SERVE_ENVIRONMENT = {
    "SWITCHBOARD_HOST": "10.1.2.3",
    "SWITCHBOARD_PORT": "4123",
    "SWITCHBOARD_DATA": "/srv/switchboard",
    "SWITCHBOARD_REDIS_URL": "redis://cache:6380/2",
    "SWITCHBOARD_REDIS_PREFIX": "app:",
    "SWITCHBOARD_PUBLIC_URL": "https://rt.example",
    "SWITCHBOARD_HEARTBEAT_INTERVAL": "1234",
    "SWITCHBOARD_IDENTIFY_TIMEOUT": "2.5",
    "SWITCHBOARD_MAX_PAYLOAD_BYTES": "1000",
    "SWITCHBOARD_CLIENT_MESSAGES_PER_SECOND": "5",
    "SWITCHBOARD_MAX_CONNECTIONS_PER_IP": "4",
    "SWITCHBOARD_MAX_CONNECTIONS_PER_TOKEN": "3",
    "SWITCHBOARD_MAX_BUFFERED_BYTES": "2048",
    "SWITCHBOARD_CLIENT_FRAMES_PER_SECOND": "9",
    "SWITCHBOARD_REST_REQUESTS_PER_SECOND": "6",
    "SWITCHBOARD_HTTP_HEADER_TIMEOUT": "3",
    "SWITCHBOARD_HTTP_BODY_TIMEOUT": "4",
    "SWITCHBOARD_CORS_ORIGINS": "https://a.example, https://b.example",
    "SWITCHBOARD_WS_ORIGINS": "https://c.example",
    "SWITCHBOARD_METRICS": "1",
    "SWITCHBOARD_HISTORY_SIZE": "10",
    "SWITCHBOARD_HISTORY_TTL": "60",
    "SWITCHBOARD_WEBHOOK_TIMEOUT": "2",
    "SWITCHBOARD_WEBHOOK_RETRIES": "3",
    "SWITCHBOARD_WEBHOOK_RETRY_BASE": "0.5",
    "SWITCHBOARD_WEBHOOK_AUTHORIZE_TIMEOUT": "1",
    "SWITCHBOARD_WEBHOOK_LOG_SIZE": "7",
    "SWITCHBOARD_SHUTDOWN_GRACE": "1.5",
    "SWITCHBOARD_WORKERS": "1",
    "SWITCHBOARD_REDIS_MIN_REPLICAS": "1",
    "SWITCHBOARD_LOG_LEVEL": "debug",
}

SERVE_SETTINGS = Settings(
    host="10.1.2.3",
    port=4123,
    data_dir=Path("/srv/switchboard"),
    redis_url="redis://cache:6380/2",
    redis_prefix="app:",
    redis_min_replicas=1,
    public_url="https://rt.example",
    heartbeat_interval_ms=1234,
    identify_timeout_s=2.5,
    shutdown_grace_s=1.5,
    cors_origins=("https://a.example", "https://b.example"),
    ws_origins=("https://c.example",),
    metrics=True,
    webhook_timeout_s=2.0,
    webhook_retries=3,
    webhook_retry_base_s=0.5,
    webhook_authorize_timeout_s=1.0,
    webhook_log_size=7,
    limits=Limits(
        max_payload_bytes=1000,
        client_messages_per_second=5.0,
        max_connections_per_ip=4,
        max_connections_per_token=3,
        max_buffered_bytes=2048,
        client_frames_per_second=9.0,
        rest_requests_per_second=6.0,
        http_header_timeout_s=3.0,
        http_body_timeout_s=4.0,
        history_size=10,
        history_ttl_s=60,
    ),
)

STORE_ENVIRONMENT = {"SWITCHBOARD_DATA", "SWITCHBOARD_REDIS_URL", "SWITCHBOARD_REDIS_PREFIX"}


def envvars(command: click.Command) -> set[str]:
    return {
        p.envvar
        for p in command.params
        if isinstance(p, click.Option) and isinstance(p.envvar, str)
    }


def commands(group: click.Group = main, path: str = "") -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found.update(commands(command, f"{path}{name} "))
        else:
            found[f"{path}{name}"] = command
    return found


def test_serve_is_configured_by_its_environment_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(serve_module, "run", lambda settings: seen.update(settings=settings))
    monkeypatch.setattr(serve_module.logs, "configure", lambda level: seen.update(level=level))
    result = CliRunner().invoke(main, ["serve"], env=SERVE_ENVIRONMENT)
    assert result.exit_code == 0, result.output
    assert seen == {"settings": SERVE_SETTINGS, "level": "debug"}


def test_each_command_has_exactly_its_variables() -> None:
    # No variable lost, none gained (--json, --state, -o… have none).
    project = {"SWITCHBOARD_PROJECT"}
    assert {name: envvars(command) for name, command in commands().items()} == {
        "serve": set(SERVE_ENVIRONMENT),
        "projects create": STORE_ENVIRONMENT,
        "projects list": STORE_ENVIRONMENT,
        "project-tokens create": STORE_ENVIRONMENT | project,
        "project-tokens list": STORE_ENVIRONMENT | project,
        "project-tokens revoke": STORE_ENVIRONMENT,
        "tokens create": STORE_ENVIRONMENT | project,
        "export": STORE_ENVIRONMENT,
        "import": STORE_ENVIRONMENT,
    }


def test_every_variable_is_in_help() -> None:
    runner = CliRunner()
    for name, command in commands().items():
        text = runner.invoke(main, [*name.split(), "--help"], terminal_width=200).output
        for var in envvars(command):
            assert var in text, (name, var)


def test_store_commands_take_the_store_and_project_from_the_environment(
    tmp_path: Path, redis_url: str
) -> None:
    runner = CliRunner()
    on_sqlite = {"SWITCHBOARD_DATA": str(tmp_path / "data")}
    made = runner.invoke(main, ["projects", "create", "shop", "--json"], env=on_sqlite)
    assert made.exit_code == 0, made.output
    listed = runner.invoke(main, ["projects", "list"], env=on_sqlite)
    assert "shop" in listed.output
    project_id = listed.output.split()[0]
    tokens = runner.invoke(
        main, ["project-tokens", "list"], env={**on_sqlite, "SWITCHBOARD_PROJECT": project_id}
    )
    assert tokens.exit_code == 0 and tokens.output.startswith("ptkid_"), tokens.output

    on_redis = {"SWITCHBOARD_REDIS_URL": redis_url, "SWITCHBOARD_REDIS_PREFIX": "envtest:"}
    made = runner.invoke(main, ["projects", "create", "cluster-shop"], env=on_redis)
    assert made.exit_code == 0, made.output
    assert "cluster-shop" in runner.invoke(main, ["projects", "list"], env=on_redis).output
    elsewhere = {**on_redis, "SWITCHBOARD_REDIS_PREFIX": "other:"}
    assert "cluster-shop" not in runner.invoke(main, ["projects", "list"], env=elsewhere).output
