"""The stage workers' read path: the derivative, never the original, unless the derivative is
missing, damaged or made for another geometry; and what it feeds a model is exactly what
``preprocess`` makes of the decoded image."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from cascade import derivative
from cascade.blobs import BlobStore
from cascade.derivative import stage_input
from models.preprocess import PreprocessConfig, decode_image, preprocess, resize_image

MAX_PIXELS = 10_000_000
STAGES = (PreprocessConfig(size=64), PreprocessConfig(size=128))


class CountingStore(BlobStore):
    """A real blob store that remembers which keys were read."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.read: list[str] = []

    def get(self, key: str) -> bytes:
        self.read.append(key)
        return super().get(key)


def _picture(size: tuple[int, int], seed: int = 0) -> PILImage.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
    return PILImage.fromarray(small).resize(size, PILImage.Resampling.BICUBIC)


def _upload(
    store: BlobStore, img: PILImage.Image, fmt: str, stages: tuple[PreprocessConfig, ...] = STAGES
) -> tuple[str, str, bytes]:
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=90)
    data = buf.getvalue()
    sha, key = store.put(data)
    decoded = decode_image(data, max_pixels=MAX_PIXELS, draft_to=derivative.draft_size(stages))
    store.put_derivative(sha, derivative.encode(decoded, stages))
    return sha, key, data


@pytest.fixture
def store(tmp_path: Path) -> CountingStore:
    return CountingStore(str(tmp_path / "blobs"))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("size", [(640, 480), (300, 900), (150, 150)])
def test_stages_read_the_derivative_and_get_preprocess_exactly(
    store: CountingStore, fmt: str, size: tuple[int, int]
) -> None:
    sha, key, data = _upload(store, _picture(size), fmt)
    draft = derivative.draft_size(STAGES)
    for cfg in STAGES:
        store.read.clear()
        tensor, original = stage_input(store, sha, key, cfg, max_pixels=MAX_PIXELS)
        assert not original and store.read == [BlobStore.derivative_key_for(sha)]
        decoded = decode_image(data, max_pixels=MAX_PIXELS, draft_to=draft)
        assert np.array_equal(tensor, preprocess(decoded, cfg))  # the same numbers, exactly


def test_a_draft_stays_close_to_the_full_decode(store: CountingStore) -> None:
    """Against decoding at full size, as training does: the draft's margin keeps it close."""
    sha, key, data = _upload(store, _picture((1600, 1200)), "JPEG")
    for cfg in STAGES:
        tensor, _ = stage_input(store, sha, key, cfg, max_pixels=MAX_PIXELS)
        full = preprocess(decode_image(data, max_pixels=MAX_PIXELS), cfg)
        assert float(np.abs(tensor - full).mean()) < 0.02  # normalised units (~1/255)


def test_a_reference_pipeline_turns_the_draft_off() -> None:
    imported = PreprocessConfig(size=224, resize_to=256, jpeg_quality=90)
    assert derivative.draft_size(STAGES) == 2 * 128
    assert derivative.draft_size((STAGES[0], imported)) == 0
    assert derivative.draft_size(()) == 0


def test_a_missing_derivative_falls_back_to_the_original(store: CountingStore) -> None:
    sha, key, data = _upload(store, _picture((200, 200)), "PNG")
    (Path(store.root) / BlobStore.derivative_key_for(sha)).unlink()
    tensor, original = stage_input(store, sha, key, STAGES[0], max_pixels=MAX_PIXELS)
    assert original and store.read[-1] == key
    assert np.array_equal(tensor, preprocess(decode_image(data, max_pixels=MAX_PIXELS), STAGES[0]))


def test_a_damaged_derivative_falls_back_to_the_original(store: CountingStore) -> None:
    sha, key, _ = _upload(store, _picture((200, 200)), "PNG")
    path = Path(store.root) / BlobStore.derivative_key_for(sha)
    path.write_bytes(path.read_bytes()[:100])
    _, original = stage_input(store, sha, key, STAGES[1], max_pixels=MAX_PIXELS)
    assert original


def test_a_model_with_another_geometry_reads_the_original(store: CountingStore) -> None:
    sha, key, _ = _upload(store, _picture((400, 400)), "JPEG")
    tensor, original = stage_input(
        store, sha, key, PreprocessConfig(size=224), max_pixels=MAX_PIXELS
    )
    assert original and tensor.shape == (3, 224, 224)


def test_garbage_is_not_a_derivative() -> None:
    with pytest.raises(ValueError, match="not a derivative"):
        derivative.pixels(b"PK\x03\x04 not really a zip", STAGES[0])
    buf = io.BytesIO()
    np.savez(buf, **{derivative.geometry_tag(STAGES[0]): np.zeros((4, 4), dtype=np.float32)})
    with pytest.raises(ValueError, match="not a derivative"):
        derivative.pixels(buf.getvalue(), STAGES[0])


def test_the_stages_come_from_the_models(tmp_path: Path) -> None:
    from models.testing import make_tiny_model_dir

    assert derivative.stage_configs(tmp_path / "none") == ()
    models = make_tiny_model_dir(tmp_path / "models", size=48)
    assert [c.size for c in derivative.stage_configs(models)] == [48, 48]


def test_a_derivative_stored_as_npz_is_still_read(store: CountingStore) -> None:
    """Derivatives written before the raw format (an ``.npz`` per image) keep working."""
    sha, key, data = _upload(store, _picture((300, 200)), "PNG")
    decoded = decode_image(data, max_pixels=MAX_PIXELS, draft_to=derivative.draft_size(STAGES))
    buf = io.BytesIO()
    np.savez(buf, **{derivative.geometry_tag(c): resize_image(decoded, c) for c in STAGES})
    (Path(store.root) / BlobStore.derivative_key_for(sha)).write_bytes(buf.getvalue())
    for cfg in STAGES:
        tensor, original = stage_input(store, sha, key, cfg, max_pixels=MAX_PIXELS)
        assert not original and np.array_equal(tensor, preprocess(decoded, cfg))


@pytest.mark.parametrize("cut", [5, 30, 100, -1])
def test_a_cut_derivative_is_not_a_derivative(cut: int) -> None:
    data = derivative.encode(_picture((200, 150)), STAGES)
    with pytest.raises(ValueError, match="not a derivative"):
        derivative.pixels(data[:cut], STAGES[1])
    with pytest.raises(ValueError, match="not a derivative"):
        derivative.pixels(data + b"x", STAGES[0])
