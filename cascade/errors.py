"""One small error hierarchy. Each error carries the HTTP status and a stable code.

Views turn a ``CascadeError`` into ``{"error": {"code": ..., "message": ...}}`` with its status;
anything else is logged with its traceback and answered with a generic 500.
"""

from __future__ import annotations


class CascadeError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class BadRequest(CascadeError):
    status, code = 400, "bad_request"


class InvalidImage(CascadeError):
    status, code = 422, "invalid_image"


class Unauthorized(CascadeError):
    status, code = 401, "unauthorized"


class Forbidden(CascadeError):
    status, code = 403, "forbidden"


class NotFound(CascadeError):
    status, code = 404, "not_found"


class Conflict(CascadeError):
    status, code = 409, "conflict"


class PayloadTooLarge(CascadeError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(CascadeError):
    status, code = 415, "unsupported_media_type"


class TooManyRequests(CascadeError):
    status, code = 429, "rate_limited"


class ServiceUnavailable(CascadeError):
    status, code = 503, "unavailable"
