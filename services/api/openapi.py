"""The OpenAPI 3.1 document of the upload API, written by hand and kept next to the views; its
enums (states, decisions, deciders) come from the code's own enums.

It is exact enough for schemathesis to fuzz the API from it (``tests/api/test_fuzz.py``); a view
that changes its status codes or bodies must change this document too.
"""

from __future__ import annotations

from typing import Any

from cascade.config import Settings
from cascade.db.schema import State
from cascade.policy import Decider, Outcome

JSON = "application/json"
RAW_MEDIA = ("application/octet-stream", "image/jpeg", "image/png", "image/gif", "image/webp")
STATES = [s.value for s in State]
DECISIONS = [o.value for o in Outcome]
DECIDERS = [d.value for d in Decider]


_ERROR_DETAIL = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}, **extra}


def _error(description: str, *, retry: bool = False) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if retry:
        extra["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return _json(_ref("Error"), description, **extra)


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def _schemas(settings: Settings) -> dict[str, Any]:
    binary = {"type": "string", "format": "binary"}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": _ERROR_DETAIL},
        },
        "Submission": {
            "type": "object",
            "required": ["id", "state", "links"],
            "properties": {
                "id": {"type": "string"},
                "state": {"type": "string", "enum": STATES},
                "decision": {"type": "string", "enum": DECISIONS},
                "decided_by": {"type": "string", "enum": DECIDERS},
                "links": {
                    "type": "object",
                    "required": ["self"],
                    "properties": {"self": {"type": "string"}},
                },
            },
        },
        "SubmissionDetail": {
            "allOf": [_ref("Submission")],
            "type": "object",
            "required": ["decision", "scores", "threshold_version", "timings"],
            "properties": {
                "decision": _nullable("string", enum=[*DECISIONS, None]),
                "decided_by": _nullable("string", enum=[*DECIDERS, None]),
                "scores": {
                    "type": "object",
                    "properties": {"stage1": _nullable("number"), "stage2": _nullable("number")},
                },
                "threshold_version": _nullable("integer"),
                "timings": {
                    "type": "object",
                    "properties": {
                        "created_at": _nullable("string", format="date-time"),
                        "stage1_at": _nullable("string", format="date-time"),
                        "stage2_at": _nullable("string", format="date-time"),
                        "decided_at": _nullable("string", format="date-time"),
                        "seconds_to_decision": {"type": "number"},
                    },
                },
                "error": _nullable("string"),
            },
        },
        "BatchResult": {
            "type": "object",
            "required": ["items"],
            "properties": {
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["index", "status"],
                        "properties": {
                            "index": {"type": "integer"},
                            "filename": _nullable("string"),
                            "status": {"type": "integer"},
                            "id": {"type": "string"},
                            "state": {"type": "string", "enum": STATES},
                            "error": _ERROR_DETAIL,
                        },
                    },
                }
            },
        },
        "MultipartUpload": {
            "type": "object",
            "description": "Send `image` (one file) or `images` (a batch), not both.",
            "properties": {
                "image": binary,
                "images": {"type": "array", "items": binary, "maxItems": settings.max_batch_images},
                "callback_url": {"type": "string", "format": "uri", "maxLength": 2000},
                "idempotency_key": {"type": "string", "maxLength": 195},
            },
        },
    }


def _upload_operation(settings: Settings) -> dict[str, Any]:
    raw = {media: {"schema": {"type": "string", "format": "binary"}} for media in RAW_MEDIA}
    return {
        "operationId": "submitImages",
        "summary": "Submit an image (raw body or multipart), or a batch (multipart `images`)",
        "description": (
            "The bytes decide the format (JPEG, PNG, GIF, WebP, BMP, TIFF; first frame of "
            f"animations). Limits: {settings.max_upload_bytes} bytes and "
            f"{settings.max_pixels} pixels per image, {settings.max_batch_images} images per "
            "batch. A batch item's idempotency key is `<Idempotency-Key>:<index>`."
        ),
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "maxLength": 195},
                "description": "Repeat a request safely: the same key returns the first result.",
            },
            {
                "name": "callback_url",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "format": "uri", "maxLength": 2000},
                "description": "POSTed the decision; public http(s) hosts only.",
            },
        ],
        "requestBody": {
            "required": True,
            "content": raw | {"multipart/form-data": {"schema": _ref("MultipartUpload")}},
        },
        "responses": {
            "200": _json(_ref("Submission"), "Decided at once from the cache, or a replay"),
            "202": _json(_ref("Submission"), "Queued for moderation"),
            "207": _json(_ref("BatchResult"), "Batch: every item with its own status"),
            "400": _error("Malformed request, multipart or callback URL"),
            "401": _error("Missing, invalid or revoked API key"),
            "409": _error("Idempotency-Key reused with a different image"),
            "413": _error("Body, image or pixel count over the limits"),
            "415": _error("Content-Type not accepted"),
            "422": _error("Not a decodable image"),
            "429": _error("Rate limit exceeded", retry=True),
            "503": _error("Queue full (backpressure) or database unavailable", retry=True),
        },
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The document served at ``/v1/openapi.json``."""
    public: list[dict[str, Any]] = []
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Cascade moderation API",
            "version": "1.0.0",
            "description": "Submit images for cascade moderation and read their decisions.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}],
        "paths": {
            "/v1/images": {"post": _upload_operation(settings)},
            "/v1/images/{submission_id}": {
                "get": {
                    "operationId": "getImage",
                    "summary": "A submission of this key's tenant: state, decision, scores",
                    "parameters": [
                        {
                            "name": "submission_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": _json(_ref("SubmissionDetail"), "The submission"),
                        "401": _error("Missing, invalid or revoked API key"),
                        "404": _error("No such submission for this tenant"),
                        "429": _error("Rate limit exceeded", retry=True),
                        "503": _error("Database unavailable for a moment", retry=True),
                    },
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "operationId": "getOpenApi",
                    "summary": "This document",
                    "security": public,
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document")},
                }
            },
            "/v1/docs": {
                "get": {
                    "operationId": "getDocs",
                    "summary": "This document as a plain HTML page",
                    "security": public,
                    "responses": {
                        "200": {
                            "description": "HTML",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "csk_… key"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "headers": {
                "RetryAfter": {
                    "description": "Seconds to wait before retrying",
                    "schema": {"type": "integer", "minimum": 1},
                }
            },
            "schemas": _schemas(settings),
        },
    }
