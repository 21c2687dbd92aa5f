"""Reading an upload request: raw bytes, one multipart file, or a multipart batch.

The content is judged by its bytes, never by its name or declared type: a JPEG sent as
``image/png`` or named ``cat.gif`` is still a JPEG. The declared type only chooses how the
body is read.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import request

from cascade.config import Settings
from cascade.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

RAW_TYPES = ("application/octet-stream",)
ACCEPTED = "image/*, application/octet-stream or multipart/form-data"
MAX_IDEMPOTENCY_KEY = 200
_BATCH_SUFFIX = 5  # ":<index>" appended per batch item, up to 4 digits


@dataclass(frozen=True)
class Upload:
    """One file of a request: its bytes, or the reason it was refused before intake."""

    data: bytes
    filename: str | None = None
    refused: PayloadTooLarge | None = None


@dataclass(frozen=True)
class UploadRequest:
    items: list[Upload]
    batch: bool
    callback_url: str | None
    idempotency_key: str | None

    def item_key(self, index: int) -> str | None:
        """The idempotency key of batch item ``index`` (``<key>:<index>``)."""
        if self.idempotency_key is None:
            return None
        return f"{self.idempotency_key}:{index}" if self.batch else self.idempotency_key


def is_raw_upload() -> bool:
    """Whether the request's body is one image's bytes: known before the body is read, so the
    upload's admission can reserve its one place at once."""
    mimetype = request.mimetype
    return mimetype.startswith("image/") or mimetype in RAW_TYPES


def read_upload_request(settings: Settings) -> UploadRequest:
    """Parse the current request; raises 415/400/413 with a message that says what to send."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        return _read_multipart(settings)
    if is_raw_upload():
        return _read_raw(settings)
    if not mimetype:
        raise UnsupportedMediaType(f"missing Content-Type; send {ACCEPTED}")
    if mimetype == "application/json" or mimetype.endswith("+json"):
        raise UnsupportedMediaType(
            "JSON bodies are not accepted: send the image bytes as the body "
            "(Content-Type image/* or application/octet-stream) or as multipart/form-data"
        )
    raise UnsupportedMediaType(f"Content-Type {mimetype!r} is not accepted; send {ACCEPTED}")


def _clean(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return value.strip()


def _idempotency_key(value: str | None, *, batch: bool) -> str | None:
    key = _clean(value)
    if key is None:
        return None
    limit = MAX_IDEMPOTENCY_KEY - (_BATCH_SUFFIX if batch else 0)
    if len(key) > limit:
        raise BadRequest(f"Idempotency-Key is longer than {limit} characters")
    if not key.isprintable():
        raise BadRequest("Idempotency-Key must be printable text")
    return key


def _read_raw(settings: Settings) -> UploadRequest:
    length = request.content_length
    if length is not None and length > settings.max_upload_bytes:
        raise PayloadTooLarge(
            f"the image is {length} bytes; the limit is {settings.max_upload_bytes} bytes"
        )
    return UploadRequest(
        items=[Upload(request.get_data(cache=False))],
        batch=False,
        callback_url=_clean(request.args.get("callback_url")),
        idempotency_key=_idempotency_key(request.headers.get("Idempotency-Key"), batch=False),
    )


def _read_file(storage: object, max_bytes: int) -> Upload:
    name = getattr(storage, "filename", None) or None
    data = storage.read(max_bytes + 1)  # type: ignore[attr-defined]
    if len(data) > max_bytes:
        where = f"'{name}'" if name else "the file"
        return Upload(b"", name, PayloadTooLarge(f"{where} is over the {max_bytes}-byte limit"))
    return Upload(bytes(data), name)


def _read_multipart(settings: Settings) -> UploadRequest:
    # Werkzeug parses malformed multipart (bad boundary, cut-off parts) into nothing; a body
    # with neither file field is then answered 400, whatever the cause.
    files = request.files
    singles, many = files.getlist("image"), files.getlist("images")
    if singles and many:
        raise BadRequest("send either one 'image' file or several 'images' files, not both")
    if not singles and not many:
        raise BadRequest(
            "the multipart body has no 'image' file (or 'images' files for a batch); "
            "it may be malformed or cut off"
        )
    if len(singles) > 1:
        raise BadRequest("several 'image' parts: use the field name 'images' for a batch")
    if len(many) > settings.max_batch_images:
        raise PayloadTooLarge(
            f"the batch has {len(many)} images; the limit is {settings.max_batch_images}"
        )
    batch = bool(many)
    form_key = request.form.get("idempotency_key")
    return UploadRequest(
        items=[_read_file(f, settings.max_upload_bytes) for f in (many or singles)],
        batch=batch,
        callback_url=_clean(request.form.get("callback_url") or request.args.get("callback_url")),
        idempotency_key=_idempotency_key(
            request.headers.get("Idempotency-Key") or form_key, batch=batch
        ),
    )
