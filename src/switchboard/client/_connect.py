"""`connect()`: make a :class:`~switchboard.client.Client` and wait until it is connected."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any

from switchboard.client import _wire as wire
from switchboard.client._client import Client, ConnectionState
from switchboard.client._lifecycle import GetToken
from switchboard.client._recovery import StreamPosition

__all__ = ["Connect", "connect"]


class Connect:
    """What :func:`connect` returns: await it, or use it with ``async with``."""

    def __init__(self, client: Client, open_timeout: float | None) -> None:
        self._client = client
        self._open_timeout = open_timeout

    async def _open(self) -> Client:
        client = self._client
        client.start()
        try:
            async with asyncio.timeout(self._open_timeout):
                await client.wait_connected()
        except TimeoutError:
            await client.close()
            last = client.last_close
            detail = f" (last attempt: {last[0]} {last[1]})" if last else ""
            raise TimeoutError(
                f"could not connect to {client.url} in {self._open_timeout}s{detail}"
            ) from None
        except BaseException:
            await client.close()
            raise
        return client

    def __await__(self) -> Generator[Any, None, Client]:
        return self._open().__await__()

    async def __aenter__(self) -> Client:
        return await self._open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.close()


def connect(
    project_id: str,
    token: str | None = None,
    *,
    url: str = wire.DEFAULT_URL,
    compression: str = "none",
    reconnect_delay: tuple[float, float] = (1.0, 30.0),
    open_timeout: float | None = 10.0,
    on_connection_state_change: Callable[[ConnectionState], Any] | None = None,
    get_token: GetToken | None = None,
    refresh_ahead: float = 30.0,
    recover: bool = True,
    positions: dict[str, StreamPosition] | None = None,
) -> Connect:
    """Connect a realtime client; returns once it is connected (INIT received).

    Use it as ``async with connect(project_id, token, url=...) as client:`` (closed at
    the end of the block) or ``client = await connect(...)`` (then ``await
    client.close()``). Arguments are those of :class:`Client`, plus:

    Args:
        open_timeout: seconds to wait for the first connection (retrying meanwhile);
            past it, :class:`TimeoutError`. ``None`` waits forever.

    Raises:
        AuthenticationFailed: the server refused the project ID or token (4001).
        TimeoutError: not connected within ``open_timeout``.
    """
    if open_timeout is not None and (
        isinstance(open_timeout, bool) or not isinstance(open_timeout, int | float)
    ):
        raise TypeError("open_timeout must be seconds or None")
    client = Client(
        project_id,
        token,
        url=url,
        compression=compression,
        reconnect_delay=reconnect_delay,
        on_connection_state_change=on_connection_state_change,
        get_token=get_token,
        refresh_ahead=refresh_ahead,
        recover=recover,
        positions=positions,
    )
    return Connect(client, open_timeout)
