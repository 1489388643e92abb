"""Client configuration, request assembly and the retry policy, shared by both clients."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx

from switchboard._rest._calls import Call, check_str
from switchboard.exceptions import Unavailable

DEFAULT_BASE_URL = "http://127.0.0.1:4000"
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 2
DEFAULT_RETRY_BACKOFF = 0.5

TimeoutTypes = float | httpx.Timeout | None

RETRY_IF_IDEMPOTENT = frozenset({502, 503, 504})
MAX_RETRY_AFTER_S = 30.0

# Failures where the request certainly never reached the server: safe to retry any call.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _user_agent() -> str:
    try:
        sdk = version("switchboard")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        sdk = "dev"
    return f"switchboard-python/{sdk} httpx/{httpx.__version__}"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a client was configured with, checked once."""

    project_token: str
    base_url: str
    """The server's root, without ``/v1``."""
    project: str | None
    timeout: httpx.Timeout
    max_retries: int
    retry_backoff: float

    @classmethod
    def create(
        cls,
        project_token: object,
        base_url: object,
        *,
        project: object,
        timeout: object,
        max_retries: object,
        retry_backoff: object,
    ) -> Settings:
        project_token = check_str(project_token, "project_token")
        base_url = check_str(base_url, "base_url")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        root = base_url.rstrip("/")
        # Accept the API prefix too: people paste the "REST API" line of the banner.
        root = root.removesuffix("/v1")
        project_id = None if project is None else check_str(project, "project")
        if timeout is not None and not isinstance(timeout, int | float | httpx.Timeout):
            raise TypeError(f"timeout must be seconds, an httpx.Timeout or None, got {timeout!r}")
        if isinstance(timeout, bool):
            raise TypeError("timeout must be seconds, not a bool")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int):
            raise TypeError(f"max_retries must be an int, got {type(max_retries).__name__}")
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        if isinstance(retry_backoff, bool) or not isinstance(retry_backoff, int | float):
            raise TypeError(f"retry_backoff must be seconds, got {type(retry_backoff).__name__}")
        if retry_backoff < 0:
            raise ValueError("retry_backoff must be 0 or more")
        return cls(
            project_token=project_token,
            base_url=root,
            project=project_id,
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            max_retries=max_retries,
            retry_backoff=float(retry_backoff),
        )

    def headers(self) -> dict[str, str]:
        """Headers of every request. The token goes raw, as Hop's SDKs send it."""
        return {
            "Authorization": self.project_token,
            "Accept": "application/json",
            "User-Agent": _user_agent(),
        }

    def request_args(self, call: Call[Any]) -> dict[str, Any]:
        """Arguments of ``httpx.Client.build_request`` for ``call``."""
        params = list(call.params)
        if self.project is not None:
            params.append(("project", self.project))
        headers = {"Content-Type": "application/json"} if call.body is not None else {}
        return {
            "method": call.method,
            "url": f"{self.base_url}/v1{call.path}",
            "params": params,
            "content": call.body,
            "headers": headers,
        }

    def retry_delay(
        self,
        call: Call[Any],
        attempt: int,
        *,
        response: httpx.Response | None = None,
        error: Exception | None = None,
    ) -> float | None:
        """Seconds to wait before sending ``call`` again, or ``None`` to stop here.

        ``attempt`` counts retries already made. A 429, or a failure to connect, is
        retried for every call (the server did nothing); other network failures and
        502/503/504 only for idempotent calls.
        """
        if attempt >= self.max_retries:
            return None
        retry_after: float | None = None
        if error is not None:
            if not (isinstance(error, _NOT_SENT) or call.idempotent):
                return None
        elif response is not None:
            status = response.status_code
            if not (status == 429 or (status in RETRY_IF_IDEMPOTENT and call.idempotent)):
                return None
            retry_after = _retry_after(response.headers.get("Retry-After"))
        else:
            return None
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_S)
        # Exponential with jitter, so clients that failed together do not retry together.
        base = self.retry_backoff * 2.0**attempt
        return base * (0.5 + random.random() / 2)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    seconds: float = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds)


def unreachable(settings: Settings, call: Call[Any], error: Exception) -> Unavailable:
    """The error for a call that got no answer: the server was not reached or did not reply."""
    what = type(error).__name__
    return Unavailable(
        f"{call.method} {settings.base_url}/v1{call.path} failed: {what}: {error}",
        code="unreachable",
    )
