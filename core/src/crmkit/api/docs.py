"""``/openapi.json`` and ``/docs``, served without an API key.

Litestar's Swagger, ReDoc and Scalar pages load their scripts from a CDN, which a server
without Internet access (or a strict content policy) cannot use. ``/docs`` is instead one
self-contained HTML page rendered on the server from the same OpenAPI document: every
operation with its parameters, body fields and responses. No scripts, no external assets.
"""

from __future__ import annotations

import html
import json
from typing import Any

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler

from crmkit.api.auth import PUBLIC

METHODS = ("get", "post", "put", "patch", "delete")
STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:980px;padding:1.5rem;color:#222}
h2{margin-top:2rem;border-bottom:1px solid #ddd}
details{border:1px solid #ddd;border-radius:6px;margin:.4rem 0;padding:.3rem .7rem}
summary{cursor:pointer}
code,.path{font-family:ui-monospace,monospace}
.m{display:inline-block;min-width:4.2rem;font-weight:600;text-transform:uppercase}
.get{color:#0a6}.post{color:#06c}.patch{color:#c60}.delete{color:#c03}
table{border-collapse:collapse;margin:.3rem 0}td,th{text-align:left;padding:.15rem .6rem;border-bottom:1px solid #eee;vertical-align:top}
"""


def schema_document(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return request.app.openapi_schema.to_schema()


def _resolve(document: dict[str, Any], item: Any) -> Any:
    while isinstance(item, dict) and "$ref" in item:
        node: Any = document
        for part in item["$ref"].lstrip("#/").split("/"):
            node = node[part]
        item = node
    return item


def _type(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return " | ".join("null" if v is None else str(v) for v in schema["enum"])
    kind = schema.get("type", "any")
    text = " | ".join(kind) if isinstance(kind, list) else str(kind)
    if "array" in text and isinstance(schema.get("items"), dict):
        text = text.replace("array", f"array of {_type(schema['items'])}")
    return text + (f" ({schema['format']})" if "format" in schema else "")


def _fields_table(schema: dict[str, Any]) -> str:
    properties = schema.get("properties") or {}
    if not properties:
        return ""
    required = set(schema.get("required") or [])
    rows = "".join(
        f"<tr><td><code>{html.escape(name)}</code>{' *' if name in required else ''}</td><td>{html.escape(_type(field))}</td>"
        f"<td>{html.escape(field.get('description', ''))}</td></tr>"
        for name, field in properties.items()
    )
    return f"<table>{rows}</table>"


def _operation(document: dict[str, Any], method: str, path: str, op: dict[str, Any]) -> str:
    parts = [f"<details><summary><span class='m {method}'>{method}</span> <span class='path'>{html.escape(path)}</span> "
             f"— {html.escape(op.get('summary', ''))}</summary>"]
    if op.get("description"):
        parts.append(f"<p>{html.escape(op['description'])}</p>")
    parameters = [_resolve(document, p) for p in op.get("parameters", [])]
    if parameters:
        rows = "".join(f"<tr><td><code>{html.escape(p['name'])}</code>{' *' if p.get('required') else ''}</td><td>{p['in']}</td>"
                       f"<td>{html.escape(_type(p.get('schema', {})))}</td><td>{html.escape(p.get('description', ''))}</td></tr>"
                       for p in parameters)
        parts.append(f"<p><b>Parameters</b></p><table>{rows}</table>")
    body = _resolve(document, op.get("requestBody"))
    if isinstance(body, dict):
        schema = _resolve(document, body.get("content", {}).get("application/json", {}).get("schema", {}))
        parts.append(f"<p><b>Body</b> (JSON; * required)</p>{_fields_table(schema)}")
    responses = "".join(f"<tr><td>{status}</td><td>{html.escape(_resolve(document, response).get('description', ''))}</td></tr>"
                        for status, response in op.get("responses", {}).items())
    parts.append(f"<p><b>Responses</b></p><table>{responses}</table></details>")
    return "".join(parts)


def render(document: dict[str, Any]) -> str:
    info = document.get("info", {})
    sections: dict[str, list[str]] = {}
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                tag = (item[method].get("tags") or ["other"])[0]
                sections.setdefault(tag, []).append(_operation(document, method, path, item[method]))
    body = "".join(f"<h2>{html.escape(tag)}</h2>{''.join(ops)}" for tag, ops in sections.items())
    title = html.escape(f"{info.get('title', 'API')} {info.get('version', '')}")
    intro = html.escape(info.get("description", ""))
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style></head>"
            f"<body><h1>{title}</h1><p>{intro}</p><p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> "
            f"(OpenAPI {html.escape(document.get('openapi', ''))}).</p>{body}</body></html>")


def routes() -> list[HTTPRouteHandler]:
    @get("/openapi.json", include_in_schema=False, opt={PUBLIC: True}, sync_to_thread=False)
    def openapi_json(request: Request[Any, Any, Any]) -> Response[bytes]:
        return Response(json.dumps(schema_document(request)).encode(), media_type="application/json")

    @get("/docs", include_in_schema=False, opt={PUBLIC: True}, sync_to_thread=False)
    def docs_page(request: Request[Any, Any, Any]) -> Response[str]:
        return Response(render(schema_document(request)), media_type="text/html")

    return [openapi_json, docs_page]
