"""Serving the document: ``GET /openapi.json``, and ``GET /docs`` rendered from it.

``/docs`` is rendered here, on the server, from the same document: a plain HTML page
with no script and nothing fetched from elsewhere (it works offline).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from switchboard.server.api.openapi.document import document


@dataclass(slots=True)
class _Rendered:
    spec: bytes = b""
    page: bytes = b""
    ready: bool = False


RENDERED = web.AppKey("openapi_rendered", _Rendered)


def _render(app: web.Application) -> _Rendered:
    # Built on the first request, when every route of the app has been added.
    cached = app[RENDERED]
    if not cached.ready:
        doc = document(app)
        cached.spec = json.dumps(doc, indent=1).encode()
        cached.page = render_page(doc).encode()
        cached.ready = True
    return cached


async def openapi_json(request: web.Request) -> web.Response:
    """``GET /openapi.json``."""
    return web.Response(body=_render(request.app).spec, content_type="application/json")


async def docs_page(request: web.Request) -> web.Response:
    """``GET /docs``: the document as a page, with no script and nothing from elsewhere."""
    return web.Response(
        body=_render(request.app).page,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff",
        },
    )


def setup(app: web.Application) -> None:
    """Serve ``/openapi.json`` and ``/docs`` on ``app``."""
    app[RENDERED] = _Rendered()
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs_page)


# The page.

_CSS = """
body{font:15px/1.5 system-ui,sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{border-bottom:1px solid #ccc;margin-top:2.5rem}
.op{border:1px solid #ddd;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}
.m{display:inline-block;min-width:4.5rem;font-weight:bold;font-family:monospace}
.GET{color:#2a7}.POST{color:#27c}.PUT{color:#c80}.PATCH{color:#a5c}.DELETE{color:#c33}
code,pre{font-family:ui-monospace,monospace;font-size:13px}
pre{background:#f6f6f6;padding:.5rem;overflow:auto;border-radius:4px}
table{border-collapse:collapse}td,th{padding:.1rem .6rem;text-align:left;vertical-align:top}
a{color:#27c}
"""


def _schema_html(schema: Any) -> str:
    text = html.escape(json.dumps(schema, indent=2))
    # "$ref" values become links to the schema's section below.
    return re.sub(
        r"&quot;#/components/schemas/([A-Za-z0-9_]+)&quot;",
        r'<a href="#schema-\1">&quot;#/components/schemas/\1&quot;</a>',
        text,
    )


def render_page(doc: dict[str, Any]) -> str:
    """The document as a self-contained HTML page: routes, parameters, bodies, schemas."""
    esc = html.escape
    out = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{esc(doc['info']['title'])} API</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(doc['info']['title'])} API <small>{esc(doc['info']['version'])}</small></h1>",
        f"<p>{esc(doc['info']['description'])}</p>",
        '<p>The machine-readable form: <a href="/openapi.json">/openapi.json</a> (OpenAPI '
        f"{esc(doc['openapi'])}). Authenticated routes take the project token in the "
        "<code>Authorization</code> header.</p>",
    ]
    for tag in doc["tags"]:
        out.append(f"<h2>{esc(tag['name'])}</h2>")
        for path, item in doc["paths"].items():
            for method, op in item.items():
                if op["tags"] != [tag["name"]]:
                    continue
                out.append(_op_html(method.upper(), path, op))
    out.append("<h2>Schemas</h2>")
    for name, schema in doc["components"]["schemas"].items():
        out.append(f'<h3 id="schema-{esc(name)}">{esc(name)}</h3><pre>{_schema_html(schema)}</pre>')
    out.append("</body></html>")
    return "\n".join(out)


def _op_html(method: str, path: str, op: dict[str, Any]) -> str:
    esc = html.escape
    auth = "project token" if op["security"] else "no auth"
    parts = [
        f'<div class=op id="{esc(op["operationId"])}">',
        f'<div><span class="m {method}">{method}</span> <code>{esc(path)}</code>'
        f" — {esc(op['summary'])} <small>({auth})</small></div>",
    ]
    if op.get("parameters"):
        rows = "".join(
            f"<tr><td><code>{esc(p['name'])}</code></td><td>{esc(p['in'])}</td>"
            f"<td><code>{esc(json.dumps(p['schema']))}</code></td>"
            f"<td>{esc(p.get('description', ''))}</td></tr>"
            for p in op["parameters"]
        )
        parts.append(f"<p>Parameters</p><table>{rows}</table>")
    if "requestBody" in op:
        body = op["requestBody"]
        schema = body["content"]["application/json"]["schema"]
        need = "required" if body["required"] else "optional"
        parts.append(f"<p>Body ({need}, JSON)</p><pre>{_schema_html(schema)}</pre>")
    rows = ""
    for status, response in op["responses"].items():
        media: dict[str, Any] = next(iter(response.get("content", {}).values()), {})
        shown = f"<code>{_schema_html(media['schema'])}</code>" if "schema" in media else ""
        rows += (
            f"<tr><td>{esc(status)}</td><td>{esc(response['description'])}</td>"
            f"<td>{shown}</td></tr>"
        )
    parts.append(f"<p>Responses</p><table>{rows}</table></div>")
    return "".join(parts)
