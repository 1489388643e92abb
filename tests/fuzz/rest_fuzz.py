"""Schemathesis against a real server, from its own ``/openapi.json``.

Used by ``tests/fuzz/test_rest_fuzz.py`` (a few hundred cases) and by
``scripts/fuzz-rest`` (as many as you like). Every generated request is sent with a
valid project token; every response is checked, and a failure is counted rather than
raised, so one run reports them all:

- a 5xx is a server error;
- a schema violation is a response the document does not describe (schemathesis's
  status code, content type and response schema checks, and its check that invalid
  data is refused), or one that is not the JSON envelope with a code that fits its
  status.

Three passes per operation: valid data (``positive``), invalid data (``negative``), and
valid data aimed at a channel and a token that exist (``existing``), so the routes that
404 on a random ID also get exercised past the lookup.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

CODES = {
    400: "invalid_request",
    401: "invalid_auth",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "already_exists",
    413: "payload_too_large",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}
"""The error code that fits each status (SPEC §2)."""

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SEED_CHANNEL = "fuzz-seed"


@dataclass
class Report:
    """What a run found. ``problems`` holds one line (and a curl command) per failure."""

    cases: int = 0
    server_errors: int = 0
    violations: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"REST fuzz: {self.cases} cases, {self.server_errors} 5xx, "
            f"{self.violations} schema violations"
        )


def envelope_problem(status: int, content_type: str, content: bytes) -> str | None:
    """Why a response is not the JSON envelope with a fitting status, or ``None``."""
    if not content_type.startswith("application/json"):
        return f"content-type {content_type!r}, not JSON"
    try:
        body = json.loads(content)
    except ValueError:
        return "the body is not JSON"
    if not isinstance(body, dict):
        return "the body is not an object"
    if status == 200:
        if body.get("success") is not True or "data" not in body:
            return "a 200 that is not {success: true, data}"
        return None
    error = body.get("error")
    if body.get("success") is not False or not isinstance(error, dict):
        return "an error that is not {success: false, error}"
    if not isinstance(error.get("message"), str) or not error["message"]:
        return "an error without a message"
    if CODES.get(status) != error.get("code"):
        return f"status {status} with code {error.get('code')!r}"
    return None


def _json_operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    # The routes that answer with the envelope; /ws, /console and /docs do not.
    found = set()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            ok = op["responses"].get("200", {}).get("content", {}).get("application/json", {})
            if "$ref" in ok.get("schema", {}) and path != "/openapi.json":
                found.add((method.upper(), path))
    return found


def _query_names(spec: dict[str, Any], operation: Any) -> set[str]:
    op = spec["paths"][operation.path][operation.method.lower()]
    return {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}


def _case_runner(
    pass_name: str,
    check: Callable[[schemathesis.Case, str], None],
    seed_channel: Callable[[], None],
) -> Callable[[schemathesis.Case], None]:
    def one(case: schemathesis.Case) -> None:
        # /v1/channels/tokens is its own route, matched first (SPEC §2), and documented as
        # such: the reserved channel ID "tokens" is not a wrong request to the channel route.
        hypothesis.assume((case.path_parameters or {}).get("channel_id") != "tokens")
        if pass_name == "existing":
            seed_channel()
        check(case, pass_name)

    return one


def run(
    base_url: str,
    project_token: str,
    *,
    max_examples: int,
    seed: int | None = None,
    until: float | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> Report:
    """Fuzz every JSON operation of the server at ``base_url``; never raises on a finding.

    ``max_examples`` is per operation and pass. ``seed`` makes the run repeatable;
    ``until`` (a ``time.monotonic()`` value) stops starting new passes after it.
    """
    started = time.monotonic()
    headers = {"Authorization": project_token}
    spec = httpx.get(base_url + "/openapi.json").json()
    wanted = _json_operations(spec)
    # The server ignores query parameters it does not know (as HTTP APIs do, and as
    # Hop's SDKs rely on): an extra one is not invalid data. Every case carries the
    # valid project token, not a generated Authorization header (test_rest.py covers
    # bad ones).
    config = schemathesis.Config.from_dict(
        {"generation": {"allow-extra-parameters": False, "with-security-parameters": False}}
    )
    schema = schemathesis.openapi.from_dict(spec, config=config)
    token = httpx.post(base_url + "/v1/channels/tokens", headers=headers, json={}).json()
    project_id = token["data"]["token"]["project_id"]
    existing = {"channel_id": SEED_CHANNEL, "token": token["data"]["token"]["id"]}
    report = Report()
    session = requests.Session()

    def seed_channel() -> None:
        # Recreated before each "existing" case: an earlier case may have deleted it.
        session.put(
            f"{base_url}/v1/channels/{SEED_CHANNEL}",
            headers=headers,
            json={"type": "private", "state": {"seed": 1}},
        )

    def check(case: schemathesis.Case, pass_name: str) -> None:
        report.cases += 1
        try:
            response = case.call(base_url=base_url, session=session, headers=headers)
        except requests.RequestException as exc:
            report.server_errors += 1
            report.problems.append(f"{pass_name} {case.operation.label}: no response: {exc}")
            return
        report.statuses[response.status_code] += 1
        where = f"{pass_name} {case.operation.label} -> {response.status_code}"
        curl = case.as_curl_command(headers=headers)
        if response.status_code >= 500:
            report.server_errors += 1
            report.problems.append(f"{where} {response.content[:200]!r}\n    {curl}")
            return
        content_type = ", ".join(response.headers.get("content-type", []))
        problem = envelope_problem(response.status_code, content_type, response.content)
        checks = [*CHECKS, negative_data_rejection] if pass_name == "negative" else CHECKS
        if problem is None:
            try:
                case.validate_response(response, checks=checks, headers=headers)
            except FailureGroup as exc:
                problem = "; ".join(sorted({f.title for f in exc.exceptions}))
        if problem is not None:
            report.violations += 1
            report.problems.append(f"{where}: {problem} {response.content[:200]!r}\n    {curl}")

    settings = hypothesis.settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=seed is None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=hypothesis.Verbosity.quiet,
    )
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) not in wanted:
            continue
        params = {
            name: value for name, value in existing.items() if "{" + name + "}" in operation.path
        }
        # A random ?project= is refused with 403 before anything else is looked at; valid
        # data names the token's own project (invalid data may name any).
        query = {"project": project_id} if "project" in _query_names(spec, operation) else None
        positive = schemathesis.GenerationMode.POSITIVE
        passes: list[tuple[str, Any]] = [
            ("positive", operation.as_strategy(positive, query=query)),
            ("negative", operation.as_strategy(schemathesis.GenerationMode.NEGATIVE)),
        ]
        if params and operation.method.upper() != "DELETE":
            strategy = operation.as_strategy(positive, path_parameters=params, query=query)
            passes.append(("existing", strategy))
        for pass_name, strategy in passes:
            if until is not None and time.monotonic() > until:
                break

            test = settings(given(case=strategy)(_case_runner(pass_name, check, seed_channel)))
            if seed is not None:
                test = hypothesis.seed(seed)(test)
            # Unsatisfiable: nothing to make invalid (no parameters, no body).
            with contextlib.suppress(hypothesis.errors.Unsatisfiable):
                test()
            log(f"{pass_name:>8} {operation.label}: {report.cases} cases so far")
    report.seconds = time.monotonic() - started
    return report
