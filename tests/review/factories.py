"""Test data for review tests: users, images with real PNG bytes in the blob store,
submissions and their review items, created through the same functions the pipeline uses."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask.testing import FlaskClient
from PIL import Image as PILImage
from PIL import ImageDraw
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from cascade.context import Context
from cascade.db.schema import (
    Image,
    ReviewItem,
    ReviewReason,
    State,
    Submission,
    Tenant,
    User,
    utcnow,
)
from cascade.decisions import finalize, open_review
from cascade.policy import Decider, Outcome

PASSWORD = "correct horse battery"


def png_bytes(seed: int, size: tuple[int, int] = (240, 180)) -> bytes:
    """A small, distinct PNG per seed: a coloured background with a few shapes."""
    w, h = size
    img = PILImage.new("RGB", size, ((seed * 53) % 200 + 30, (seed * 97) % 200 + 30, 160))
    draw = ImageDraw.Draw(img)
    for k in range(4):
        x, y = (seed * 31 + k * 57) % (w - 60), (seed * 17 + k * 41) % (h - 60)
        colour = ((seed + k) * 71 % 256, (seed * 3 + k) * 43 % 256, (k * 89) % 256)
        shape = draw.ellipse if (seed + k) % 2 else draw.rectangle
        shape((x, y, x + 40 + k * 8, y + 40 + k * 5), fill=colour)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_user(ctx: Context, name: str, role: str = "moderator", password: str = PASSWORD) -> int:
    # scrypt with small work factors: the real verification path, without seconds per test.
    cheap = generate_password_hash(password, method="scrypt:1024:8:1")
    with ctx.sessions() as db:
        user = User(username=name, password_hash=cheap, role=role)
        db.add(user)
        db.commit()
        return user.id


def _tenant_id(db) -> int:  # type: ignore[no-untyped-def]
    tenant = db.scalars(select(Tenant).where(Tenant.name == "test")).first()
    if tenant is None:
        tenant = Tenant(name="test")
        db.add(tenant)
        db.flush()
    return int(tenant.id)


@dataclass(frozen=True)
class Made:
    item_id: int
    submission_id: str
    png: bytes


def make_item(
    ctx: Context,
    *,
    seed: int = 0,
    reason: str = "escalation",
    s1: float = 0.5,
    s2: float = 0.5,
    auto: str | None = None,
    labels_required: int = 1,
    age_s: float = 0.0,
    callback_url: str | None = None,
) -> Made:
    """An image, its submission and its review item. Audits are decided automatically first
    (``auto``, default allow), as the pipeline does; escalations wait in state review."""
    data = png_bytes(seed)
    sha, key = ctx.blobs.put(data)
    at: datetime = utcnow() - timedelta(seconds=age_s)
    with ctx.sessions() as db:
        if db.get(Image, sha) is None:
            db.add(
                Image(
                    sha256=sha,
                    phash=seed,
                    size_bytes=len(data),
                    width=240,
                    height=180,
                    format="png",
                    blob_key=key,
                )
            )
        sub = Submission(
            id=str(uuid.uuid4()),
            tenant_id=_tenant_id(db),
            image_sha256=sha,
            callback_url=callback_url,
            state=State.STAGE2,
            s1=s1,
            s2=s2,
            threshold_version=0,
            created_at=at,
        )
        db.add(sub)
        if reason == ReviewReason.AUDIT:
            sub.audit, sub.audit_p = True, 0.02
            finalize(sub, outcome=Outcome(auto or "allow"), decider=Decider.STAGE2, at=at)
        item = open_review(
            db, sub, reason=ReviewReason(reason), labels_required=labels_required, at=at
        )
        db.commit()
        return Made(item.id, sub.id, data)


def item_row(ctx: Context, item_id: int) -> ReviewItem:
    with ctx.sessions() as db:
        item = db.get(ReviewItem, item_id)
        assert item is not None
        _ = item.submission  # load before the session closes
        return item


def login(client: FlaskClient, name: str, password: str = PASSWORD) -> str:
    """Log in through the form; returns the session's CSRF token for later posts."""
    client.get("/review/login")
    with client.session_transaction() as sess:
        token = str(sess["csrf"])
    response = client.post(
        "/review/login", data={"username": name, "password": password, "csrf_token": token}
    )
    assert response.status_code == 302, response.data
    with client.session_transaction() as sess:
        return str(sess["csrf"])
