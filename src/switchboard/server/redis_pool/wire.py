"""Raw connections to one Redis, for the two hot paths redis-py's machinery made costly.

The broker's subscription (``broker/subscription.py``) and the store's pipeline of publish
scripts (``redis_pool/pipeline.py``) each hold one connection of their own: an
:class:`asyncio.Protocol` that feeds every read straight into a ``hiredis.Reader`` and
hands each reply on from ``data_received``, with no task woken and no timeout object armed
per message, and commands written as RESP packed by hiredis. Everything else (the pool,
presence, the other scripts) stays on redis-py.

:func:`open_connection` makes such a connection the way redis-py would: from the settings
of a client's pool (``server/redis_pool.py``: the URL parsed by redis-py, so host, port, TLS
(``rediss://``), username, password, database and timeouts mean the same), or to the master
the Sentinels name now (``redis+sentinel://``); then ``AUTH``, ``SELECT`` and ``CLIENT
SETNAME`` as the URL asks, within its socket timeout. Failures raise redis-py's errors
(``ConnectionError``, ``AuthenticationError``, ``TimeoutError``), which the store and the
broker already turn into :class:`~switchboard.exceptions.Unavailable`.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import Callable
from typing import Any, TypeVar, cast

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio.connection import UnixDomainSocketConnection
from redis.asyncio.sentinel import SentinelManagedConnection
from redis.credentials import UsernamePasswordCredentialProvider
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse
from redis.exceptions import TimeoutError as RedisTimeoutError

pack_command: Callable[[tuple[Any, ...]], bytes] = hiredis.pack_command
"""One command as RESP (str, bytes and int arguments), packed in C."""


def new_reader() -> hiredis.Reader:
    """A reader whose error replies are redis-py's exceptions (``NoScriptError``, …)."""
    return hiredis.Reader(protocolError=InvalidResponse, replyError=BaseParser.parse_error)


class RespProtocol(asyncio.Protocol):
    """A connection that reads replies with hiredis; replies answer :meth:`request` in
    order. Subclasses take over :meth:`reply` once their own traffic starts."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = new_reader()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Done when the connection is closed, for whatever reason."""
        self._answers: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.where = "Redis"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        error = RedisConnectionError(
            f"connection to {self.where} lost" + (f": {exc}" if exc else "")
        )
        while self._answers:
            answer = self._answers.popleft()
            if not answer.done():
                answer.set_exception(error)
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            self.reply(reply)

    def reply(self, reply: Any) -> None:
        """One reply from Redis: the answer to the oldest :meth:`request` not answered."""
        if self._answers:
            answer = self._answers.popleft()
            if not answer.done():
                answer.set_result(reply)

    def write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise RedisConnectionError(f"connection to {self.where} closed")
        self.transport.write(data)

    def close(self) -> None:
        """Drop the connection now (its pending requests fail)."""
        if self.transport is not None:
            self.transport.abort()

    async def request(self, commands: list[tuple[Any, ...]], within_s: float | None) -> list[Any]:
        """Send ``commands`` in one write; their replies (error replies raised)."""
        loop = asyncio.get_running_loop()
        answers = [loop.create_future() for _ in commands]
        self.write(b"".join(pack_command(c) for c in commands))
        self._answers.extend(answers)
        try:
            async with asyncio.timeout(within_s):
                # gather, not one await each: a lost connection fails every answer, and
                # gather takes all their errors (none left "never retrieved").
                replies = await asyncio.gather(*answers)
        except TimeoutError:
            self.close()
            raise RedisTimeoutError(f"Timeout reading from {self.where}") from None
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies


P = TypeVar("P", bound=RespProtocol)


async def open_connection(client: Any, factory: Callable[[], P]) -> P:
    """A connection ``factory()`` to the Redis that redis-py ``client`` talks to, logged in
    and on its database (the module docstring). Not for a Redis Cluster's client."""
    pool = client.connection_pool
    settings: Any = pool.connection_class(**pool.connection_kwargs)  # settings only: unused
    if isinstance(settings, SentinelManagedConnection):
        settings.host, settings.port = await pool.get_master_address()
    unix = isinstance(settings, UnixDomainSocketConnection)
    where = settings.path if unix else f"{settings.host}:{settings.port}"
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(settings.socket_connect_timeout):
            if unix:
                _, protocol = await loop.create_unix_connection(factory, settings.path)
            else:
                args = settings._connection_arguments()  # host, port and the TLS context
                _, protocol = await loop.create_connection(factory, **args)
    except TimeoutError:
        raise RedisTimeoutError(f"Timeout connecting to {where}") from None
    except OSError as exc:
        raise RedisConnectionError(f"Error connecting to {where}: {exc}") from exc
    protocol.where = where
    try:
        _tune(protocol, settings)
        await _log_in(protocol, settings)
    except BaseException:
        protocol.close()
        raise
    return protocol


def _tune(protocol: RespProtocol, settings: Any) -> None:
    assert protocol.transport is not None
    sock = protocol.transport.get_extra_info("socket")
    if sock is None or sock.family == socket.AF_UNIX:
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if settings.socket_keepalive:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in (settings.socket_keepalive_options or {}).items():
            sock.setsockopt(socket.SOL_TCP, option, value)


async def _log_in(protocol: RespProtocol, settings: Any) -> None:
    """``AUTH``, ``SELECT`` and ``CLIENT SETNAME`` as redis-py's connection would send them."""
    commands: list[tuple[Any, ...]] = []
    provider = settings.credential_provider
    if provider is None and (settings.username or settings.password):
        provider = UsernamePasswordCredentialProvider(settings.username, settings.password)
    if provider is not None:
        commands.append(("AUTH", *(await provider.get_credentials_async())))
    if settings.db:
        commands.append(("SELECT", settings.db))
    if settings.client_name:
        commands.append(("CLIENT", "SETNAME", settings.client_name))
    if commands:
        await protocol.request(commands, settings.socket_timeout)
