"""Schemathesis against a real server, from its own ``/openapi.json``.

Used by ``tests/fuzz/test_rest_fuzz.py`` (a few hundred cases) and by
``scripts/fuzz-rest`` (as many as you like). Every generated request is sent with a
valid project token; every response is checked, and a failure is counted rather than
raised, so one run reports them all:

- a 5xx is a server error;
- a schema violation is a response the document does not describe: schemathesis's
  status code, content type and response schema checks, its check that invalid data is
  refused, and these of ours:

  - the response is the JSON envelope with a code that fits its status;
  - the URL is one operation of the document, no more (``spec_routes.py``), and the
    response is checked against the operation the URL really is: a negative case that
    sends ``/v1/channels/tokens`` for ``GET /v1/channels/{channel_id}`` gets the token
    list, as the document says it should;
  - valid data is not refused with a 400, unless for one of the reasons a schema cannot
    say (``conformance.SEMANTIC_REFUSALS``); ``1146.0`` for an integer was refused;
  - every method the URL's path does not have is a 405 with ``Allow`` in the envelope.

Up to four passes per operation: valid data (``positive``), invalid data (``negative``),
valid data aimed at a channel and a token that exist (``existing``), so the routes that
404 on a random ID also get exercised past the lookup, and valid data with a reserved
channel ID (``reserved``), which the document says is another operation's URL.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from switchboard.server import ids
from tests.fuzz.conformance import envelope_problem, not_allowed_problem, refusal_problem
from tests.fuzz.spec_routes import METHODS, resolve, routes, segments_of

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
    probes: int = 0
    """Requests with a method the path does not have (each must be a 405)."""
    rerouted: int = 0
    """Cases whose URL is another operation than the one they were made for."""
    statuses: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"REST fuzz: {self.cases} cases (+{self.probes} method probes), "
            f"{self.server_errors} 5xx, {self.violations} schema violations"
        )


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


class Fuzzer:
    """The server at ``base_url``, its document, and what was found so far."""

    def __init__(self, base_url: str, project_token: str) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": project_token}
        self.spec = httpx.get(base_url + "/openapi.json").json()
        self.table = routes(self.spec)
        # The server ignores query parameters it does not know (as HTTP APIs do, and as
        # Hop's SDKs rely on): an extra one is not invalid data. Every case carries the
        # valid project token, not a generated Authorization header (test_rest.py covers
        # bad ones).
        config = schemathesis.Config.from_dict(
            {"generation": {"allow-extra-parameters": False, "with-security-parameters": False}}
        )
        self.schema = schemathesis.openapi.from_dict(self.spec, config=config)
        self.session = requests.Session()
        self.report = Report()
        self.probed: set[str] = set()
        token = httpx.post(base_url + "/v1/channels/tokens", headers=self.headers, json={})
        self.project_id = token.json()["data"]["token"]["project_id"]
        self.existing = {"channel_id": SEED_CHANNEL, "token": token.json()["data"]["token"]["id"]}

    def seed_channel(self) -> None:
        """Recreate the existing channel: an earlier case may have deleted it."""
        self.session.put(
            f"{self.base_url}/v1/channels/{SEED_CHANNEL}",
            headers=self.headers,
            json={"type": "private", "state": {"seed": 1}},
        )

    def check(self, case: schemathesis.Case, pass_name: str) -> None:
        """Send ``case``; count what is wrong with the answer (and its method probes)."""
        report = self.report
        report.cases += 1
        try:
            response = case.call(base_url=self.base_url, session=self.session, headers=self.headers)
        except requests.RequestException as exc:
            report.server_errors += 1
            report.problems.append(f"{pass_name} {case.operation.label}: no response: {exc}")
            return
        report.statuses[response.status_code] += 1
        where = f"{pass_name} {case.operation.label} -> {response.status_code}"
        curl = case.as_curl_command(headers=self.headers)
        if response.status_code >= 500:
            report.server_errors += 1
            report.problems.append(f"{where} {response.content[:200]!r}\n    {curl}")
            return
        url = response.request.url or ""
        problem = self._problem(case, pass_name, response, url)
        if problem is not None:
            report.violations += 1
            report.problems.append(f"{where}: {problem} {response.content[:200]!r}\n    {curl}")
        self._probe(url, pass_name, case.operation.label)

    def _problem(
        self, case: schemathesis.Case, pass_name: str, response: Response, url: str
    ) -> str | None:
        """Why ``response`` is not what the document says it is, or ``None``."""
        content_type = ", ".join(response.headers.get("content-type", []))
        status, content = response.status_code, response.content
        problem = envelope_problem(status, content_type, content)
        if problem is not None:
            return problem
        found = resolve(self.table, url)
        if len(found.valid) > 1:
            return f"the URL is {len(found.valid)} operations: {[r.template for r in found.valid]}"
        route, method = found.route, case.method.upper()
        if route is not None and route.template != case.operation.path:
            # Made for one operation (with a value its schema refuses), sent to another.
            self.report.rerouted += 1
            if method not in route.methods:
                return not_allowed_problem(route, status, response.headers, content)
            other = self.schema[route.template][method].Case(
                path_parameters=route.fits(segments_of(url)),
                query=case.query,
                body=case.body,
                media_type=case.media_type,
            )
            return _failures(other, response, CHECKS, self.headers)
        if pass_name != "negative" and (problem := refusal_problem(status, content)):
            return problem
        checks = [*CHECKS, negative_data_rejection] if pass_name == "negative" else CHECKS
        return _failures(case, response, checks, self.headers)

    def _probe(self, url: str, pass_name: str, label: str) -> None:
        """Every method the URL's path does not have must be a 405 with ``Allow``."""
        route = resolve(self.table, url).route
        path = url_path(url)
        if route is None or path in self.probed:
            return
        self.probed.add(path)
        for method in METHODS:
            if method in route.methods:
                continue
            self.report.probes += 1
            answer = self.session.request(method, url, headers=self.headers)
            problem = not_allowed_problem(route, answer.status_code, answer.headers, answer.content)
            if answer.status_code >= 500:
                self.report.server_errors += 1
            elif problem is None:
                continue
            else:
                self.report.violations += 1
            self.report.problems.append(
                f"{pass_name} {label}, probe {method} {path} -> {answer.status_code}: "
                f"{problem} {answer.content[:200]!r}"
            )


def url_path(url: str) -> str:
    """The path of ``url``, as sent (percent-encoded)."""
    return urlsplit(url).path


def _failures(
    case: schemathesis.Case, response: Response, checks: list[Any], headers: dict[str, str]
) -> str | None:
    try:
        case.validate_response(response, checks=checks, headers=headers)
    except FailureGroup as exc:
        return "; ".join(sorted({f.title for f in exc.exceptions}))
    return None


def _passes(fuzzer: Fuzzer, operation: Any) -> list[tuple[str, Any]]:
    """The strategies of one operation's passes.

    ``positive`` and ``negative`` always (``negative`` where the operation has anything
    that can be invalid); ``existing`` where it names a channel or token (not DELETE);
    ``reserved`` where it names a channel: valid data sent with a reserved ID as the
    channel's, so the URL is the token routes' (``/v1/channels/tokens/…``).
    """
    params = {
        name: value for name, value in fuzzer.existing.items() if "{" + name + "}" in operation.path
    }
    # A random ?project= is refused with 403 before anything else is looked at; valid
    # data names the token's own project (invalid data may name any).
    query = (
        {"project": fuzzer.project_id}
        if "project" in _query_names(fuzzer.spec, operation)
        else None
    )
    positive = schemathesis.GenerationMode.POSITIVE
    passes: list[tuple[str, Any]] = [("positive", operation.as_strategy(positive, query=query))]
    if _can_be_invalid(fuzzer.spec, operation):
        passes.append(("negative", operation.as_strategy(schemathesis.GenerationMode.NEGATIVE)))
    if params and operation.method.upper() != "DELETE":
        passes.append(
            ("existing", operation.as_strategy(positive, path_parameters=params, query=query))
        )
    if "channel_id" in params:
        for reserved in sorted(ids.RESERVED_CHANNEL_IDS):
            strategy = operation.as_strategy(
                positive, path_parameters={**params, "channel_id": reserved}, query=query
            )
            passes.append(("reserved", strategy))
    return passes


def _can_be_invalid(spec: dict[str, Any], operation: Any) -> bool:
    """Whether any request to ``operation`` is invalid data (a body, or a parameter that
    is more than any string): else the negative pass only spins, looking for one."""
    op = spec["paths"][operation.path][operation.method.lower()]
    if "requestBody" in op:
        return True
    plain = {"type", "minLength", "description"}
    return any(
        p["schema"].get("type") != "string" or set(p["schema"]) - plain
        for p in op.get("parameters", [])
    )


def _case_runner(fuzzer: Fuzzer, pass_name: str) -> Callable[[schemathesis.Case], None]:
    def one(case: schemathesis.Case) -> None:
        if pass_name == "existing":
            fuzzer.seed_channel()
        fuzzer.check(case, pass_name)

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
    fuzzer = Fuzzer(base_url, project_token)
    wanted = _json_operations(fuzzer.spec)
    settings = hypothesis.settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=seed is None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=hypothesis.Verbosity.quiet,
    )
    for result in fuzzer.schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) not in wanted:
            continue
        for pass_name, strategy in _passes(fuzzer, operation):
            if until is not None and time.monotonic() > until:
                break
            test = settings(given(case=strategy)(_case_runner(fuzzer, pass_name)))
            if seed is not None:
                test = hypothesis.seed(seed)(test)
            # Unsatisfiable: nothing to make invalid (no parameters, no body).
            with contextlib.suppress(hypothesis.errors.Unsatisfiable):
                test()
            log(f"{pass_name:>8} {operation.label}: {fuzzer.report.cases} cases so far")
    fuzzer.report.seconds = time.monotonic() - started
    return fuzzer.report
