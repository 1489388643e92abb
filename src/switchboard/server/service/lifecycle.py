"""Token lifecycle on a live connection (Switchboard's ``TOKEN_REFRESH``).

A refresh re-reads the connection's own token so that the connection takes the token's
current expiry, without reconnecting. Only the same token may be presented: a token is
the connection's identity (its durable subscriptions, its presence, its count against
the per-token connection limit), and Leap has no way to change those on an open socket
but a new IDENTIFY, which is a reconnect. A refresh is therefore no new connection and
never counts against ``max_connections_per_token``.
"""

from __future__ import annotations

from switchboard.exceptions import InvalidRequest, Unauthorized
from switchboard.server.models import Token
from switchboard.server.service._base import ServiceBase, expired
from switchboard.server.service.leap import Identity


class LifecycleOperations(ServiceBase):
    """What a connection asks about its token after IDENTIFY."""

    async def refresh_token(self, identity: Identity, secret: str | None) -> Token:
        """The connection's token as stored now, for a ``TOKEN_REFRESH`` presenting ``secret``.

        Raises InvalidRequest (no token, not this connection's token: the gateway answers
        with an ``ERROR`` and keeps the connection) or Unauthorized (the token was deleted
        or has expired: closed with 4001, as its deletion or expiry would).
        """
        current = identity.token
        if current is None:
            raise InvalidRequest("only a connection identified with a token can refresh it")
        if secret is None:
            raise InvalidRequest('TOKEN_REFRESH needs d: {"token": "leap_token_…"}')
        if secret != current.id:
            # Refused without a lookup: nothing about another token is revealed.
            raise InvalidRequest(
                "a refresh must present this connection's own token; "
                "to connect as another token, reconnect with it"
            )
        token = await self.store.get_token(identity.project.id, current.id)
        if token is None:
            raise Unauthorized("unknown token")
        if expired(token):
            raise Unauthorized("token expired")
        return token
