"""``GET /v1/openapi.json`` and ``GET /v1/docs`` (a plain HTML listing; no CDN, no scripts)."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from markupsafe import escape

from services.api import bp
from services.api.openapi import openapi_document
from services.web import context

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
code,pre{{background:#f4f4f4;padding:.1rem .3rem}}h2{{margin-top:2rem}}</style></head>
<body><h1>{title}</h1><p>{description}</p>
<p>Authenticate with <code>Authorization: Bearer csk_…</code> or <code>X-API-Key: csk_…</code>.
Errors are JSON: <code>{{"error": {{"code": …, "message": …}}}}</code>.
Machine-readable: <a href="openapi.json">openapi.json</a>.</p>
{operations}</body></html>"""


def _operation_html(path: str, method: str, op: dict[str, Any]) -> str:
    params = "".join(
        f"<li><code>{escape(p['name'])}</code> ({escape(p['in'])}): "
        f"{escape(p.get('description', ''))}</li>"
        for p in op.get("parameters", [])
    )
    bodies = ", ".join(escape(m) for m in op.get("requestBody", {}).get("content", {}))
    responses = "".join(
        f"<li><code>{escape(code)}</code> {escape(r['description'])}</li>"
        for code, r in op.get("responses", {}).items()
    )
    return (
        f"<h2><code>{escape(method.upper())} {escape(path)}</code></h2>"
        f"<p>{escape(op.get('summary', ''))}</p><p>{escape(op.get('description', ''))}</p>"
        + (f"<h3>Parameters</h3><ul>{params}</ul>" if params else "")
        + (f"<h3>Body</h3><p>{bodies}</p>" if bodies else "")
        + f"<h3>Responses</h3><ul>{responses}</ul>"
    )


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(openapi_document(context().settings))


@bp.get("/docs")
def docs_page() -> Response:
    doc = openapi_document(context().settings)
    operations = "".join(
        _operation_html(path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
    )
    html = _PAGE.format(
        title=escape(doc["info"]["title"]),
        description=escape(doc["info"]["description"]),
        operations=operations,
    )
    return Response(html, mimetype="text/html")


__all__ = ["docs_page", "openapi_json"]
