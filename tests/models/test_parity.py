"""Training and serving must feed the model identical tensors for the same bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.data import load_split
from models.preprocess import PreprocessConfig, decode_image, preprocess, preprocess_batch
from models.synthetic import generate_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("syn")
    generate_dataset(out, n=40, seed=3)
    return out


@pytest.mark.parametrize(
    "cfg",
    [
        PreprocessConfig(size=64),
        PreprocessConfig(
            size=48, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic"
        ),
    ],
)
def test_training_path_equals_serving_path(dataset: Path, cfg: PreprocessConfig) -> None:
    split = load_split(dataset, "train", cfg)
    trained_on = split.inputs(cfg)
    served = np.stack(
        [
            preprocess(decode_image((dataset / r["file"]).read_bytes(), max_pixels=10**8), cfg)
            for r in split.rows
        ]
    )
    assert trained_on.dtype == served.dtype == np.float32
    assert trained_on.shape == (len(split), 3, cfg.size, cfg.size)
    np.testing.assert_array_equal(trained_on, served)
    # The cached second load is the same too.
    np.testing.assert_array_equal(load_split(dataset, "train", cfg).inputs(cfg), served)


def test_preprocess_batch_equals_per_image(dataset: Path) -> None:
    cfg = PreprocessConfig(size=40)
    imgs = [
        decode_image(p.read_bytes(), max_pixels=10**8) for p in sorted(dataset.glob("*/*.*g"))[:5]
    ]
    np.testing.assert_array_equal(
        preprocess_batch(imgs, cfg), np.stack([preprocess(i, cfg) for i in imgs])
    )
    assert preprocess_batch([], cfg).shape == (0, 3, 40, 40)


def test_normalisation_values() -> None:
    from PIL import Image

    cfg = PreprocessConfig(size=8, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = preprocess(Image.new("RGB", (20, 10), (255, 0, 128)), cfg)
    assert x.shape == (3, 8, 8)
    np.testing.assert_allclose(x[:, 0, 0], [2.0, -2.0, (128 / 255 - 0.5) / 0.25], atol=1e-5)


def test_config_round_trip_and_validation() -> None:
    cfg = PreprocessConfig(size=96, interpolation="bicubic")
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="interpolation"):
        PreprocessConfig(size=96, interpolation="area")
