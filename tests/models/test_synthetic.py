"""The synthetic data set: deterministic, both classes, every format, a difficulty spectrum."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from models.preprocess import decode_image, probe_image
from models.synthetic import generate_dataset, generate_image, split_of


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "a", n=12, seed=5)
    generate_dataset(tmp_path / "b", n=12, seed=5)
    generate_dataset(tmp_path / "c", n=12, seed=6)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_classes_formats_sizes_and_difficulty(tmp_path: Path) -> None:
    manifest = generate_dataset(tmp_path, n=120, seed=0)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(rows) == 120
    assert set(Counter(r["label"] for r in rows)) == {"allow", "block"}
    assert {r["format"] for r in rows} == {"JPEG", "PNG"}
    assert any(r.get("mode") == "RGBA" for r in rows)
    assert any(r.get("exif_orientation") for r in rows)
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    sizes = [(r["width"], r["height"]) for r in rows]
    assert min(min(s) for s in sizes) >= 96 and max(max(s) for s in sizes) <= 640
    difficulty = np.array([r["difficulty"] for r in rows])
    assert difficulty.min() < 0.2 and difficulty.max() > 0.8  # a real spread
    # Look-alike distractors appear in allow images, and every block image has the cue.
    assert any(r["cues"] for r in rows if r["label"] == "allow")
    assert all(r["cues"][0]["kind"] == "x_ring" for r in rows if r["label"] == "block")
    assert not any(c["kind"] == "x_ring" for r in rows if r["label"] == "allow" for c in r["cues"])
    for r in rows[:30]:
        data = (tmp_path / r["file"]).read_bytes()
        assert probe_image(data, max_pixels=10**7).format == r["format"]
        # Decoding (EXIF applied) gives back the intended display geometry.
        assert decode_image(data, max_pixels=10**7).size == (r["width"], r["height"])


def test_exif_rotated_image_decodes_to_display_orientation() -> None:
    for i in range(200):
        data, meta = generate_image(np.random.default_rng([9, i]), harmful=True)
        if meta.get("exif_orientation") in (6, 8):
            with Image.open(__import__("io").BytesIO(data)) as raw:
                assert raw.size == (meta["height"], meta["width"])  # stored rotated
            assert decode_image(data, max_pixels=10**7).size == (meta["width"], meta["height"])
            return
    raise AssertionError("no 90-degree EXIF rotation in 200 images")


def test_generate_image_on_demand_is_seeded() -> None:
    a = generate_image(np.random.default_rng(1), harmful=True)
    b = generate_image(np.random.default_rng(1), harmful=True)
    assert a == b and a[1]["label"] == "block"
    assert generate_image(np.random.default_rng(1), harmful=False)[1]["label"] == "allow"


def test_split_is_stable_and_roughly_proportional() -> None:
    splits = Counter(split_of(i, 0) for i in range(5000))
    assert 0.66 < splits["train"] / 5000 < 0.74
    assert split_of(17, 0) == split_of(17, 0)
