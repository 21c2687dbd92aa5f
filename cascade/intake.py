"""Accepting an image: validate at the door, decode it once, store it, answer from the cache or
queue it.

Decode once: a new image is decoded here and only here (a large JPEG at a reduced scale,
``cascade.derivative.draft_size``). What the stages read is the derivative made from those
pixels (each stage's resized input, ``cascade.derivative``), stored next to the original; the
perceptual hash comes from the same pixels. Bytes seen before (same SHA-256) are not decoded
again: their image row says they were valid.

The caller commits and, for a queued submission, enqueues stage 1 after the commit (so a worker
never sees a submission that is not in the database yet). The caller also checks the callback
URL (``cascade.netguard.check_callback_url``) once per request, before any image is stored;
delivery checks it again (``cascade.callbacks.deliver``), as DNS may have changed since.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from PIL.Image import Image as PILImage
from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.orm import Session

from cascade import derivative, metrics
from cascade.blobs import sha256_hex
from cascade.context import Context
from cascade.db.bulk import insert_new
from cascade.db.schema import Image, State, Submission, utcnow
from cascade.decisions import finalize
from cascade.errors import Conflict, InvalidImage, PayloadTooLarge
from cascade.neardup import NearDuplicateIndex
from cascade.phash import dhash
from cascade.policy import Decider, Outcome
from models.errors import ImageError, ImageTooLarge
from models.preprocess import PreprocessConfig, decode_image, probe_image

NEAREST = 500  # near-duplicate images whose decisions are read, nearest first


@dataclass
class Accepted:
    submission: Submission
    created: bool  # False: an Idempotency-Key replay of an earlier request
    cached: bool  # True: decided at once from an earlier decision on the same image
    callback_due: bool = False  # decided at once with a callback URL: send it after the commit


@dataclass(frozen=True)
class DecodedUpload:
    """A valid upload, decoded once."""

    image: PILImage  # RGB, EXIF orientation applied (a large JPEG maybe at a reduced scale)
    format: str
    width: int  # of the original, as displayed (EXIF orientation applied)
    height: int


def new_submission_id() -> str:
    return str(uuid.uuid4())


def check_size(data: bytes, *, max_bytes: int) -> None:
    if not data:
        raise InvalidImage("the upload is empty (0 bytes)")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the image is {len(data)} bytes; the limit is {max_bytes} bytes")


def decode_upload(
    data: bytes, *, max_bytes: int, max_pixels: int, draft_to: int = 0
) -> DecodedUpload:
    """Check the header (cheap; refuses bombs before any pixel is decoded), then decode once (a
    real decode check); a JPEG no smaller than ``draft_to`` a side (0: full size)."""
    check_size(data, max_bytes=max_bytes)
    try:
        info = probe_image(data, max_pixels=max_pixels)
        img = decode_image(data, max_pixels=max_pixels, draft_to=draft_to)
    except ImageTooLarge as exc:
        raise PayloadTooLarge(str(exc)) from None
    except ImageError as exc:
        raise InvalidImage(str(exc)) from None
    width, height = info.width, info.height
    if _turned(img.size, (width, height)):  # EXIF orientation swapped the sides
        width, height = height, width
    return DecodedUpload(img, info.format, width, height)


def _turned(decoded: tuple[int, int], header: tuple[int, int]) -> bool:
    """Whether ``decoded`` (maybe scaled down) is ``header`` turned by 90 degrees."""
    (dw, dh), (hw, hh) = decoded, header
    return abs(dw * hw - dh * hh) < abs(dw * hh - dh * hw)


def _find_replay(session: Session, tenant_id: int, key: str | None, sha: str) -> Submission | None:
    if not key:
        return None
    sub = session.scalars(
        select(Submission).where(
            Submission.tenant_id == tenant_id, Submission.idempotency_key == key
        )
    ).first()
    if sub is not None and sub.image_sha256 != sha:
        raise Conflict("this Idempotency-Key was already used with a different image")
    return sub


class HashedImage(Protocol):
    """What the decision cache needs of an image: an ``Image`` row, or its two columns."""

    @property
    def sha256(self) -> str: ...

    @property
    def phash(self) -> int: ...


# Built once: building a statement (and its cache key) cost SQLAlchemy three times what running
# it on SQLite does (~0.1 ms against ~0.03 ms), on every upload.
_IMAGES = Image.__table__.c
_KNOWN_IMAGE = select(_IMAGES.sha256, _IMAGES.phash).where(_IMAGES.sha256 == bindparam("sha"))


@dataclass(frozen=True)
class StoredImage:
    """The two columns of an image row just inserted (a ``HashedImage``)."""

    sha256: str
    phash: int


_INSERT_IMAGE = insert(cast(Table, Image.__table__))


def _known_image(session: Session, sha: str) -> HashedImage | None:
    """The stored image with these bytes, if any (two columns, no ORM object to load)."""
    row = session.execute(_KNOWN_IMAGE, {"sha": sha}).first()
    return cast(HashedImage, row) if row is not None else None


def _cached_decision(
    session: Session, image: HashedImage, near_distance: int, *, known: bool = True
) -> str | None:
    """An earlier final decision on the same (or a near-identical) image; humans win.

    ``known``: these bytes were stored before (a new image has no decision of its own yet, so
    its exact look-up is skipped). Near-duplicates come from the multi-index hashing look-up
    (``cascade.neardup``), nearest first."""
    rows = _decisions(session, [image.sha256]) if known else []
    if not rows and near_distance > 0:
        found = NearDuplicateIndex(session).find(image.phash, near_distance)
        near = [m.sha256 for m in found.matches if m.sha256 != image.sha256]
        rows = _decisions(session, near[:NEAREST]) if near else []
    human = [r[0] for r in rows if r[1] == Decider.HUMAN]
    if human:
        return str(human[0])
    return str(rows[0][0]) if rows else None


def _decisions(session: Session, shas: list[str]) -> list[tuple[str, str]]:
    """The latest final decisions on images ``shas``: (decision, decided_by), newest first."""
    return [
        (str(r[0]), str(r[1]))
        for r in session.execute(
            select(Submission.decision, Submission.decided_by)
            .where(Submission.image_sha256.in_(shas), Submission.state == State.DECIDED)
            .order_by(Submission.decided_at.desc())
            .limit(20)
        )
    ]


def accept(
    ctx: Context,
    session: Session,
    *,
    tenant_id: int,
    data: bytes,
    idempotency_key: str | None = None,
    callback_url: str | None = None,
    rng: random.Random | None = None,
    submission_id: str | None = None,
) -> Accepted:
    """Validate and record one upload (see the module docstring for the commit protocol); a new
    submission gets ``submission_id`` (default: a new one), e.g. the id the API reserved its
    stage-1 backlog place under."""
    s = ctx.settings
    check_size(data, max_bytes=s.max_upload_bytes)
    sha = sha256_hex(data)
    image = _known_image(session, sha)
    decoded, stages = None, derivative.stage_configs(s.model_dir)
    if image is None:  # new bytes: validate (a 4xx for a bad image comes before anything else)
        decoded = decode_upload(data, max_bytes=s.max_upload_bytes, max_pixels=s.max_pixels,
                                draft_to=derivative.draft_size(stages))  # fmt: skip
    replay = _find_replay(session, tenant_id, idempotency_key, sha)
    if replay is not None:
        return Accepted(replay, created=False, cached=False)
    if decoded is not None:
        image = _store_image(ctx, session, data, sha, decoded, stages)
    assert image is not None
    sub = Submission(
        id=submission_id or new_submission_id(),
        tenant_id=tenant_id,
        image_sha256=sha,
        idempotency_key=idempotency_key,
        callback_url=callback_url,
        state=State.QUEUED,
        created_at=utcnow(),
    )
    cached = _cached_decision(session, image, s.near_duplicate_distance, known=decoded is None)
    callback_due = False
    if cached is not None:
        callback_due = finalize(sub, outcome=Outcome(cached), decider=Decider.CACHE)
        metrics.observe_decision(route=cached, decider=Decider.CACHE, latency_seconds=0.0)
    # Audit sampling: a uniform draw with a known, recorded probability, for every image —
    # cache answers too (the caller then queues it for scoring), or the audit sample and the
    # certificate would not cover them.
    sub.audit_p = s.audit_rate
    sub.audit = (rng or random).random() < s.audit_rate
    insert_new(session, sub)  # after its image's row (the foreign key)
    return Accepted(sub, created=True, cached=cached is not None, callback_due=callback_due)


def _store_image(
    ctx: Context,
    session: Session,
    data: bytes,
    sha: str,
    decoded: DecodedUpload,
    stages: Sequence[PreprocessConfig],
) -> HashedImage:
    """The original and its derivative in the blob store (before the row that names them, so a
    worker never finds a row without its blobs), then the image row. No stages known here (no
    model directory): no derivative, the workers decode the original.

    The row goes in through Core, with no ORM object: nothing reads it back in this request
    but its hashes (an ORM object attached to the session cost ~0.1 ms more an upload)."""
    _, key = ctx.blobs.put(data, sha=sha)
    if stages:
        ctx.blobs.put_derivative(sha, derivative.encode(decoded.image, stages))
    phash = dhash(decoded.image)
    session.execute(
        _INSERT_IMAGE,
        {
            "sha256": sha, "phash": phash, "size_bytes": len(data), "width": decoded.width,
            "height": decoded.height, "format": decoded.format[:16], "blob_key": key,
        },
    )  # fmt: skip
    return StoredImage(sha, phash)
