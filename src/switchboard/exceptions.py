"""Every error Switchboard raises, server and SDKs alike.

The tree::

    SwitchboardError
    ├── APIError                    a REST call failed: ``status``, ``code``, ``message``
    │   ├── InvalidRequest          400 invalid_request
    │   ├── Unauthorized            401 invalid_auth
    │   │   └── StaleAccess         a node's cached project-token lookup is out of date
    │   ├── Forbidden               403 forbidden
    │   │   └── MissingPermission   403 missing_permission: ``permission``
    │   ├── NotFound                404 not_found
    │   ├── Conflict                409 already_exists
    │   │   └── InProgress          409 in_progress: a request with this idempotency key is running
    │   ├── PayloadTooLarge         413 payload_too_large
    │   ├── RateLimited             429 rate_limited
    │   ├── InternalError           500 internal_error
    │   └── Unavailable             503 unavailable
    ├── ProtocolViolation           a Leap client broke the protocol: ``close_code``, ``reason``
    └── ClientError                 raised by the realtime client (``switchboard.client``)
        ├── AuthenticationFailed    the server closed with 4001; the client stops
        ├── SubscriptionRefused     SUBSCRIBE answered with UNAVAILABLE: ``error_code``
        ├── TokenRefreshFailed      TOKEN_REFRESH answered with ERROR: ``code``, ``message``
        └── ConnectionClosed        the connection ended while a call waited on it

The server raises the :class:`APIError` subclasses from its service layer; the REST
layer turns one into the JSON error envelope in exactly one place
(``switchboard.server.api.envelope``). The server SDK raises the same classes when a
response carries that envelope, so ``except switchboard.NotFound`` works the same on
both sides of the wire. :class:`ProtocolViolation` becomes a WebSocket close frame in
exactly one place (``switchboard.server.protocol.session``).

This module imports nothing outside the standard library: the SDKs depend on it.
"""

from __future__ import annotations

__all__ = [
    "APIError",
    "AuthenticationFailed",
    "ClientError",
    "Conflict",
    "ConnectionClosed",
    "Forbidden",
    "InProgress",
    "InternalError",
    "InvalidRequest",
    "MissingPermission",
    "NotFound",
    "PayloadTooLarge",
    "ProtocolViolation",
    "RateLimited",
    "StaleAccess",
    "SubscriptionRefused",
    "SwitchboardError",
    "TokenRefreshFailed",
    "Unauthorized",
    "Unavailable",
    "api_error_for",
]


class SwitchboardError(Exception):
    """Base class of every error raised by Switchboard."""


class APIError(SwitchboardError):
    """A REST call failed.

    Attributes:
        status: HTTP status code of the response.
        code: machine-readable error code from the envelope (``not_found``, ...).
        message: human-readable explanation.
    """

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r}, message={self.message!r})"


class InvalidRequest(APIError):
    """The request was malformed or a value was out of range (400)."""

    status = 400
    code = "invalid_request"


class Unauthorized(APIError):
    """No project token, or an unknown or revoked one (401)."""

    status = 401
    code = "invalid_auth"


class StaleAccess(Unauthorized):
    """The server's own: a node's cached lookup of a project token is out of date (a
    project token of its project was revoked since). The node looks the token up again
    and retries; were it ever to escape, it refuses the call as a 401.
    """


class Forbidden(APIError):
    """The project token may not do this, e.g. ``?project=`` names another project (403)."""

    status = 403
    code = "forbidden"


class MissingPermission(Forbidden):
    """The project token lacks the permission this call needs (403).

    Attributes:
        permission: the permission's name (``read_channels``, ...), or ``None`` if the
            server did not say; the message names it too.
    """

    code = "missing_permission"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        permission: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.permission = permission


class NotFound(APIError):
    """No such route, channel, token or project in this project (404)."""

    status = 404
    code = "not_found"


class Conflict(APIError):
    """The thing being created exists already (409)."""

    status = 409
    code = "already_exists"


class InProgress(Conflict):
    """A request with the same idempotency key is still being carried out (409): retry
    it a little later to get its answer (docs/batch.md)."""

    code = "in_progress"


class PayloadTooLarge(APIError):
    """A body, message or state is larger than the configured limit (413)."""

    status = 413
    code = "payload_too_large"


class RateLimited(APIError):
    """Too many requests or messages in too short a time (429).

    Attributes:
        retry_after: seconds until a call would be accepted again, if known (the
            ``Retry-After`` header of the response).
    """

    status = 429
    code = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class InternalError(APIError):
    """The server failed; nothing about the request was wrong (500)."""

    status = 500
    code = "internal_error"


class Unavailable(APIError):
    """A backing service (store or broker) cannot be reached right now (503)."""

    status = 503
    code = "unavailable"


_BY_STATUS: dict[int, type[APIError]] = {
    cls.status: cls
    for cls in (
        InvalidRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        RateLimited,
        InternalError,
        Unavailable,
    )
}


def api_error_for(
    status: int, code: str, message: str, *, permission: str | None = None
) -> APIError:
    """Build the most specific :class:`APIError` for a response's status and code.

    ``permission`` is the error envelope's ``permission`` field, kept by
    :class:`MissingPermission`.
    """
    if status == Forbidden.status and code == MissingPermission.code:
        return MissingPermission(message, status=status, code=code, permission=permission)
    if status == InProgress.status and code == InProgress.code:
        return InProgress(message, status=status, code=code)
    cls = _BY_STATUS.get(status, APIError)
    return cls(message, status=status, code=code)


class ProtocolViolation(SwitchboardError):
    """A Leap client broke the protocol; its connection closes with ``close_code``."""

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(f"{close_code}: {reason}")
        self.close_code = close_code
        self.reason = reason


class ClientError(SwitchboardError):
    """Base class of errors raised by the realtime client."""


class AuthenticationFailed(ClientError):
    """The server refused the project ID or token (close code 4001). The client stops."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(f"authentication failed: {reason}" if reason else "authentication failed")
        self.reason = reason


class SubscriptionRefused(ClientError):
    """The server answered SUBSCRIBE with UNAVAILABLE.

    Attributes:
        channel: the channel that was refused.
        error_code: ``"NOT_GRANTED"`` or ``"UNKNOWN"`` (or ``None`` if the server gave none).
    """

    def __init__(self, channel: str, error_code: str | None) -> None:
        super().__init__(f"subscription to {channel!r} refused: {error_code}")
        self.channel = channel
        self.error_code = error_code


class TokenRefreshFailed(ClientError):
    """The server refused a token refresh (Switchboard's ``TOKEN_REFRESH``); the
    connection stays open.

    Attributes:
        code: the server's error code (``invalid_request``: not this connection's token).
        message: the server's explanation.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"token refresh refused: {code}: {message}")
        self.code = code
        self.message = message


class ConnectionClosed(ClientError):
    """The connection ended while a call was waiting on it."""

    def __init__(self, code: int | None = None, reason: str = "") -> None:
        super().__init__(f"connection closed ({code}): {reason}" if code else "connection closed")
        self.code = code
        self.reason = reason
