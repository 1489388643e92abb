"""What the SDKs are made of: their imports, their public names, the generated sync client."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import switchboard
import switchboard.client
from switchboard._rest import _unasync

SDK_ROOT = Path(switchboard.__file__).parent
SDK_DIRS = [SDK_ROOT / "_rest", SDK_ROOT / "client"]
ALLOWED_THIRD_PARTY = {"httpx", "websockets"}
ALLOWED_OWN = (
    "switchboard._rest",
    "switchboard.client",
    "switchboard.exceptions",
    "switchboard._channel_type",
    "switchboard._leap_ops",
)


def test_sync_client_is_generated_from_the_async_one() -> None:
    # Every hand-written async module is a source.
    rest = SDK_ROOT / "_rest"
    written = {rest / "_async_api.py", *rest.glob("*_async.py")} - {rest / "_io_async.py"}
    assert set(_unasync.SOURCES) == written
    for source in _unasync.SOURCES:
        target = _unasync.target_of(source)
        expected = _unasync.generate(source.read_text(), source.name)
        assert target.read_text() == expected, (
            f"{target.name} is stale: run python -m switchboard._rest._unasync"
        )
    assert _unasync.main(["--check"]) == 0


def test_sdk_modules_import_only_the_stdlib_httpx_and_websockets() -> None:
    files = [SDK_ROOT / "__init__.py", SDK_ROOT / "exceptions.py", SDK_ROOT / "_channel_type.py"]
    files += [SDK_ROOT / "_leap_ops.py", SDK_ROOT / "webhooks.py"]
    files += [path for folder in SDK_DIRS for path in folder.glob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "switchboard":
                    assert name == "switchboard" or name.startswith(ALLOWED_OWN), (path, name)
                else:
                    assert top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY, (
                        path,
                        name,
                    )


def test_sdks_work_without_the_server_dependencies() -> None:
    code = """
import sys
for name in ("aiohttp", "msgspec", "click", "redis", "uvloop"):
    sys.modules[name] = None  # any import of these now fails
import switchboard
import switchboard.client
from switchboard import AsyncSwitchboard, ChannelType, Switchboard
from switchboard.client import connect
from switchboard.webhooks import verify
Switchboard("ptk_x").close()
loaded = sorted(m for m in sys.modules if m.startswith("switchboard.server"))
assert not loaded, loaded
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_public_names() -> None:
    sdk = {"Switchboard", "AsyncSwitchboard", "ChannelType", "Channel", "Token", "Stats"}
    errors = {
        "APIError",
        "NotFound",
        "Unauthorized",
        "Forbidden",
        "Conflict",
        "RateLimited",
        "Unavailable",
        "AuthenticationFailed",
        "SubscriptionRefused",
        "ConnectionClosed",
    }
    assert sdk | errors <= set(switchboard.__all__)
    for name in switchboard.__all__:
        assert hasattr(switchboard, name), name
    assert set(switchboard.client.__all__) == {
        "DEFAULT_URL",
        "INBOX",
        "Available",
        "Client",
        "ClientStatistics",
        "ConnectionState",
        "DirectMessage",
        "ErrorEvent",
        "Event",
        "Init",
        "LeapChannel",
        "Member",
        "Message",
        "PresenceJoin",
        "PresenceLeave",
        "PresenceSnapshot",
        "Recovery",
        "StateUpdate",
        "TokenExpiring",
        "TokenRefreshed",
        "TokenStateUpdate",
        "Unavailable",
        "UnknownDispatch",
        "connect",
    }
    for name in switchboard.client.__all__:
        assert hasattr(switchboard.client, name), name
