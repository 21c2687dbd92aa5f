"""The stage workers' read path: the derivative, never the original, unless the derivative is
missing, damaged or too small; and what it feeds a model stays close to the original's pixels."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from cascade import derivative
from cascade.blobs import BlobStore
from cascade.derivative import StoredImage, stage_input
from models.preprocess import PreprocessConfig, decode_image, preprocess

MAX_PIXELS = 10_000_000


class CountingStore(BlobStore):
    """A real blob store that remembers which keys were read."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.read: list[str] = []

    def get(self, key: str) -> bytes:
        self.read.append(key)
        return super().get(key)


def _upload(store: BlobStore, img: PILImage.Image, fmt: str, side: int) -> StoredImage:
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=90)
    data = buf.getvalue()
    sha, key = store.put(data)
    decoded = decode_image(data, max_pixels=MAX_PIXELS, draft_to=side)
    store.put_derivative(sha, derivative.encode(derivative.shrink(decoded, side)))
    return StoredImage(sha, key, img.width, img.height)


def _picture(size: tuple[int, int], seed: int = 0) -> PILImage.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
    return PILImage.fromarray(small).resize(size, PILImage.Resampling.BICUBIC)


@pytest.fixture
def store(tmp_path: Path) -> CountingStore:
    return CountingStore(str(tmp_path / "blobs"))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("size", [(640, 480), (300, 900), (150, 150)])
def test_stages_read_the_derivative_and_see_the_same_picture(
    store: CountingStore, fmt: str, size: tuple[int, int]
) -> None:
    img = _picture(size)
    stored = _upload(store, img, fmt, side=128)
    for cfg in (PreprocessConfig(size=64), PreprocessConfig(size=128)):
        store.read.clear()
        tensor, original = stage_input(store, stored, cfg, max_pixels=MAX_PIXELS)
        assert not original and store.read == [BlobStore.derivative_key_for(stored.sha256)]
        # Against decoding the original at full size, as training does: a resampling apart.
        full = preprocess(decode_image(store.get(stored.blob_key), max_pixels=MAX_PIXELS), cfg)
        assert tensor.shape == full.shape == (3, cfg.size, cfg.size)
        assert float(np.abs(tensor - full).mean()) < 0.05  # normalised units (~3/255)


def test_a_missing_derivative_falls_back_to_the_original(store: CountingStore) -> None:
    stored = _upload(store, _picture((200, 200)), "PNG", side=64)
    (Path(store.root) / BlobStore.derivative_key_for(stored.sha256)).unlink()
    _, original = stage_input(store, stored, PreprocessConfig(size=64), max_pixels=MAX_PIXELS)
    assert original and store.read[-1] == stored.blob_key


def test_a_damaged_derivative_falls_back_to_the_original(store: CountingStore) -> None:
    stored = _upload(store, _picture((200, 200)), "PNG", side=64)
    path = Path(store.root) / BlobStore.derivative_key_for(stored.sha256)
    path.write_bytes(path.read_bytes()[:100])
    _, original = stage_input(store, stored, PreprocessConfig(size=64), max_pixels=MAX_PIXELS)
    assert original


def test_a_derivative_too_small_for_a_larger_model_is_not_used(store: CountingStore) -> None:
    stored = _upload(store, _picture((400, 400)), "JPEG", side=64)
    tensor, original = stage_input(store, stored, PreprocessConfig(size=224), max_pixels=MAX_PIXELS)
    assert original and tensor.shape == (3, 224, 224)


def test_a_small_original_is_its_own_derivative(store: CountingStore) -> None:
    stored = _upload(store, _picture((50, 40)), "PNG", side=128)
    _, original = stage_input(store, stored, PreprocessConfig(size=128), max_pixels=MAX_PIXELS)
    assert not original  # never enlarged, and nothing more to be had from the original


def test_the_derivative_is_lossless_and_refuses_anything_else() -> None:
    img = _picture((33, 17))
    assert np.array_equal(np.asarray(derivative.decode(derivative.encode(img))), np.asarray(img))
    buf = io.BytesIO()
    np.save(buf, np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="not a derivative"):
        derivative.decode(buf.getvalue())


def test_the_derivative_side_comes_from_the_models(tmp_path: Path) -> None:
    from models.testing import make_tiny_model_dir

    assert derivative.model_side(tmp_path / "none") == derivative.DEFAULT_SIDE
    models = make_tiny_model_dir(tmp_path / "models", size=48)
    assert derivative.model_side(models) == 48
