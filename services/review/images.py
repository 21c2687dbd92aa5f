"""Images for moderators only: short-lived signed URLs bound to one user, bytes from the blob
store, never a public path, never cached."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, url_for
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from cascade.db.schema import Image, ReviewItem, Role
from services.auth import current_user
from services.review import bp
from services.web import context, db

SALT = "cascade.review.image"
MIMETYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "jpg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "bmp": "image/bmp",
}


def _serializer(secret: str, issued_at: int | None = None) -> URLSafeTimedSerializer:
    signer: type[TimestampSigner] = TimestampSigner
    if issued_at is not None:  # tests mint tokens in the past to check expiry
        stamp: int = issued_at

        class _IssuedAt(TimestampSigner):
            def get_timestamp(self) -> int:
                return stamp

        signer = _IssuedAt
    return URLSafeTimedSerializer(secret, salt=SALT, signer=signer)


def sign_image_token(
    secret: str, *, item_id: int, user_id: int, issued_at: int | None = None
) -> str:
    """A token naming one review item's image for one user."""
    return str(_serializer(secret, issued_at).dumps({"i": item_id, "u": user_id}))


def read_image_token(secret: str, token: str, max_age_s: int) -> dict[str, int] | None:
    """The token's payload, or None when it is forged, altered or older than ``max_age_s``."""
    try:
        data = _serializer(secret).loads(token, max_age=max_age_s)
    except (SignatureExpired, BadSignature):
        return None
    if not isinstance(data, dict) or not {"i", "u"} <= data.keys():
        return None
    return {"i": int(data["i"]), "u": int(data["u"])}


def image_url(item_id: int, user_id: int) -> str:
    token = sign_image_token(context().settings.secret_key, item_id=item_id, user_id=user_id)
    return url_for("review.image", token=token)


@bp.get("/image/<token>")
def image(token: str) -> Any:
    """The bytes, to the logged-in moderator the URL was signed for, within its TTL."""
    user = current_user()
    if user is None:
        abort(401)
    if user.role not in (Role.MODERATOR, Role.ADMIN):
        abort(403)
    ctx = context()
    data = read_image_token(ctx.settings.secret_key, token, ctx.settings.signed_url_ttl_s)
    if data is None or data["u"] != user.id:
        abort(403)
    item = db().get(ReviewItem, data["i"])
    img = db().get(Image, item.submission.image_sha256) if item is not None else None
    if img is None:
        abort(404)
    body = ctx.blobs.get(img.blob_key)
    fmt = img.format.lower()
    response = Response(body, mimetype=MIMETYPES.get(fmt, "application/octet-stream"))
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'"
    return response
