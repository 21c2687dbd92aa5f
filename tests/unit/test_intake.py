"""Intake decodes a new upload once, stores the original and its derivative, hashes the same
pixels; bytes seen before are not decoded again; near-duplicates answer from the index."""

from __future__ import annotations

import dataclasses
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageFilter

from cascade import derivative, intake
from cascade.apikeys import ensure_tenant
from cascade.blobs import BlobStore
from cascade.context import Context
from cascade.db.schema import Image, State, Submission, utcnow
from cascade.errors import InvalidImage, PayloadTooLarge
from cascade.phash import dhash, distance
from models.preprocess import PreprocessConfig, decode_image, resize_image


def _photo(size: tuple[int, int], seed: int = 0) -> PILImage.Image:
    """A smooth picture (a dHash of noise would not survive any change)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
    return PILImage.fromarray(small).resize(size, PILImage.Resampling.BICUBIC)


def _encode(img: PILImage.Image, fmt: str, **save: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


@pytest.fixture
def tenant(context: Context) -> int:
    with context.sessions() as session:
        tid = ensure_tenant(session, name="acme").id
        session.commit()
    return tid


def _with(ctx: Context, settings: dict[str, object]) -> Context:
    return dataclasses.replace(ctx, settings=ctx.settings.model_copy(update=settings))


def _accept(ctx: Context, tenant: int, data: bytes) -> intake.Accepted:
    with ctx.sessions() as session:
        accepted = intake.accept(ctx, session, tenant_id=tenant, data=data, rng=random.Random(1))
        session.commit()
    return accepted


STAGES = (PreprocessConfig(size=32), PreprocessConfig(size=64))


def _stages(ctx: Context, tmp_path: Path, stages: tuple[PreprocessConfig, ...] = STAGES) -> Context:
    """``ctx`` with a model directory whose stages have ``stages``' preprocessing (only their
    ``meta.json``: intake reads nothing else)."""
    for n, cfg in enumerate(stages, start=1):
        folder = tmp_path / "models" / f"stage{n}"
        folder.mkdir(parents=True)
        (folder / "meta.json").write_text(json.dumps({"preprocess": cfg.to_dict()}))
    return _with(ctx, {"model_dir": tmp_path / "models"})


def _derivative(ctx: Context, sha: str, cfg: PreprocessConfig) -> np.ndarray | None:
    return derivative.pixels(ctx.blobs.get(BlobStore.derivative_key_for(sha)), cfg)


def test_a_new_image_is_stored_with_its_derivative_and_hash(
    context: Context, tenant: int, tmp_path: Path
) -> None:
    ctx = _stages(context, tmp_path)
    data = _encode(_photo((300, 200)), "JPEG", quality=95)
    sub = _accept(ctx, tenant, data).submission
    with ctx.sessions() as session:
        image = session.get(Image, sub.image_sha256)
        assert image is not None
        assert (image.width, image.height, image.format) == (300, 200, "JPEG")
        assert ctx.blobs.get(image.blob_key) == data  # the original, byte for byte
    decoded = decode_image(data, max_pixels=10**8, draft_to=derivative.draft_size(STAGES))
    for cfg in STAGES:  # each stage's own resize of the one decode
        assert np.array_equal(_derivative(ctx, sub.image_sha256, cfg), resize_image(decoded, cfg))
    assert image.phash == dhash(decoded)  # the hash of the same pixels


def test_without_models_there_is_no_derivative(context: Context, tenant: int) -> None:
    sub = _accept(context, tenant, _encode(_photo((64, 64)), "PNG")).submission
    assert not context.blobs.exists(BlobStore.derivative_key_for(sub.image_sha256))


def test_exif_rotation_is_applied_and_reported(
    context: Context, tenant: int, tmp_path: Path
) -> None:
    ctx = _stages(context, tmp_path, (PreprocessConfig(size=32, resize="shorter", resize_to=48),))
    exif = PILImage.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    picture = _photo((300, 200))
    data = _encode(picture, "JPEG", exif=exif.tobytes(), quality=95)
    sub = _accept(ctx, tenant, data).submission
    with ctx.sessions() as session:
        image = session.get(Image, sub.image_sha256)
        assert image is not None and (image.width, image.height) == (200, 300)
    (cfg,) = derivative.stage_configs((tmp_path / "models").resolve())
    upright = resize_image(picture.transpose(PILImage.Transpose.ROTATE_270), cfg)
    assert np.abs(_derivative(ctx, sub.image_sha256, cfg) - upright.astype(float)).mean() < 3


def test_bytes_seen_before_are_not_decoded_again(
    context: Context, tenant: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _encode(_photo((64, 64)), "PNG")
    first = _accept(context, tenant, data)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded twice")

    monkeypatch.setattr(intake, "decode_image", refuse)
    second = _accept(context, tenant, data)
    assert second.created and second.submission.image_sha256 == first.submission.image_sha256


@pytest.mark.parametrize(
    ("data", "error"),
    [(b"", InvalidImage), (b"not an image at all", InvalidImage), (b"\x89PNG" * 10, InvalidImage)],
)
def test_bad_bytes_are_refused_and_nothing_is_stored(
    context: Context, tenant: int, data: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error):
        _accept(context, tenant, data)
    with context.sessions() as session:
        assert session.query(Image).count() == 0


def test_a_bomb_is_refused_before_decoding(
    context: Context, tenant: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = _with(context, {"max_pixels": 100 * 100})
    monkeypatch.setattr(intake, "decode_image", pytest.fail)
    with pytest.raises(PayloadTooLarge):
        _accept(ctx, tenant, _encode(_photo((200, 200)), "PNG"))


def _decide(ctx: Context, sub_id: str, decision: str, by: str) -> None:
    with ctx.sessions() as session:
        sub = session.get(Submission, sub_id)
        assert sub is not None
        sub.state, sub.decision, sub.decided_by, sub.decided_at = (
            State.DECIDED, decision, by, utcnow(),
        )  # fmt: skip
        session.commit()


def test_a_near_duplicate_is_answered_from_the_index(context: Context, tenant: int) -> None:
    ctx = _with(context, {"near_duplicate_distance": 6, "audit_rate": 0.0})
    picture = _photo((256, 256), seed=3)
    first = _accept(ctx, tenant, _encode(picture, "PNG")).submission
    _decide(ctx, first.id, "block", "stage2")
    # The same picture re-encoded, slightly blurred: other bytes, a hash a few bits away.
    twin = _encode(picture.filter(ImageFilter.GaussianBlur(1)), "JPEG", quality=80)
    second = _accept(ctx, tenant, twin)
    with ctx.sessions() as session:
        a, b = (session.get(Image, s.image_sha256) for s in (first, second.submission))
        assert a is not None and b is not None and a.sha256 != b.sha256
        assert distance(a.phash, b.phash) <= 6
    assert second.cached and second.submission.decision == "block"
    assert second.submission.decided_by == "cache"
    # A different picture is not answered from the cache.
    other = _accept(ctx, tenant, _encode(_photo((256, 256), seed=4), "PNG"))
    assert not other.cached and other.submission.state == State.QUEUED


def test_a_human_decision_wins_over_a_machine_one(context: Context, tenant: int) -> None:
    data = _encode(_photo((64, 64), seed=5), "PNG")
    machine = _accept(context, tenant, data).submission
    human = _accept(context, tenant, data).submission
    _decide(context, human.id, "allow", "human")
    _decide(context, machine.id, "block", "stage1")
    third = _accept(context, tenant, data)
    assert third.cached and third.submission.decision == "allow"
