"""Which operation of ``/openapi.json`` a concrete request path is, read from the document alone.

A client (or a tool such as schemathesis) that has only the document must be able to
tell, for any URL, which operation it is. Path templates can overlap:
``/v1/channels/tokens`` fits both ``/v1/channels/tokens`` and ``/v1/channels/{channel_id}``,
and ``/v1/channels/tokens/state`` both ``/v1/channels/tokens/{token}`` and
``/v1/channels/{channel_id}/state``. The document settles it through the path parameters'
schemas (the channel ID's ``pattern`` excludes the reserved IDs), so this module matches
templates by their literal segments and then keeps the ones whose parameters validate.

Used by the REST fuzzer (each response is checked against the operation its URL really
is) and by ``tests/e2e/test_openapi.py`` (no URL fits two operations; every method a
path does not have is a 405 with ``Allow``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import jsonschema

METHODS = ("GET", "PUT", "POST", "PATCH", "DELETE")
"""The methods a client may try on any path (HEAD comes with GET; OPTIONS is CORS's)."""

_PARAM = re.compile(r"^{([^}]+)}$")


@dataclass(frozen=True)
class Route:
    """One path of the document: its template, methods and path parameters' validators."""

    template: str
    methods: frozenset[str]
    segments: tuple[str, ...]
    params: dict[str, Any]
    """Name -> a JSON Schema validator of the parameter (all methods share them)."""

    @property
    def allow(self) -> set[str]:
        """What an ``Allow`` header lists for this path: its methods, HEAD with GET."""
        return set(self.methods) | ({"HEAD"} if "GET" in self.methods else set())

    def fits(self, segments: list[str]) -> dict[str, str] | None:
        """The parameters, if ``segments`` (percent-decoded) fit the literal segments."""
        if len(segments) != len(self.segments):
            return None
        values: dict[str, str] = {}
        for mine, theirs in zip(self.segments, segments, strict=True):
            name = _PARAM.match(mine)
            if name is None:
                if mine != theirs:
                    return None
            elif theirs == "":
                return None  # an empty segment is no value (servers route it nowhere)
            else:
                values[name.group(1)] = theirs
        return values

    def valid(self, values: dict[str, str]) -> bool:
        """Whether every parameter's value validates against its schema."""
        return all(self.params[name].is_valid(value) for name, value in values.items())


@dataclass(frozen=True)
class Resolution:
    """The paths of the document a URL fits.

    ``valid``: those whose parameters validate; exactly one for an unambiguous URL.
    ``fitting``: those whose literal segments fit, whatever the parameters' values.
    """

    valid: list[Route]
    fitting: list[Route]

    @property
    def route(self) -> Route | None:
        """The one path the URL is, if it is exactly one."""
        return self.valid[0] if len(self.valid) == 1 else None


def routes(spec: dict[str, Any]) -> list[Route]:
    """Every path of ``spec``, with its methods and parameter validators."""
    found = []
    for template, item in spec["paths"].items():
        params: dict[str, Any] = {}
        for op in item.values():
            for param in op.get("parameters", []):
                if param["in"] == "path":
                    params[param["name"]] = jsonschema.Draft202012Validator(param["schema"])
        found.append(
            Route(
                template=template,
                methods=frozenset(m.upper() for m in item),
                segments=tuple(template.split("/")),
                params=params,
            )
        )
    return found


def segments_of(url: str) -> list[str]:
    """The path segments of ``url`` (a path, or a full URL), percent-decoded one by one
    (as servers route them: an encoded ``/`` stays inside its segment)."""
    return [unquote(segment) for segment in urlsplit(url).path.split("/")]


def resolve(table: list[Route], url: str) -> Resolution:
    """The paths of the document ``url`` (a path, or a full URL) fits."""
    segments = segments_of(url)
    fitting: list[Route] = []
    valid: list[Route] = []
    for route in table:
        values = route.fits(segments)
        if values is None:
            continue
        fitting.append(route)
        if route.valid(values):
            valid.append(route)
    return Resolution(valid=valid, fitting=fitting)


ORDINARY = {"channel_id": "game", "token": "leap_token_sample", "name": "index.html"}
"""A plain value for each path parameter of the document."""


def sample_urls(spec: dict[str, Any], extra: tuple[str, ...] = ()) -> list[str]:
    """Concrete URLs of every path of ``spec``, the ones most likely to be misread.

    Every path once with plain values; then each parameter in turn takes each literal
    segment another path of the same length has at its place (``tokens`` for
    ``/v1/channels/{channel_id}``, ``state`` for ``/v1/channels/tokens/{token}``: the
    words it could be confused with) and each of ``extra``, the others their plain value.
    """
    split = [template.split("/") for template in spec["paths"]]
    urls: list[str] = []
    for segments in split:
        names = {i: m.group(1) for i, s in enumerate(segments) if (m := _PARAM.match(s))}
        plain = {name: ORDINARY[name] for name in names.values()}
        template = "/".join(segments)
        urls.append(template.format(**plain))
        for i, name in names.items():
            words = {
                other[i]
                for other in split
                if len(other) == len(segments) and not _PARAM.match(other[i])
            }
            for word in sorted(words | set(extra)):
                urls.append(template.format(**{**plain, name: word}))
    return list(dict.fromkeys(urls))
