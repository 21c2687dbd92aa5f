"""The synthetic world: deterministic, both classes, every format, three difficulty bands whose
ambiguous one is ambiguous by construction."""

from __future__ import annotations

import colorsys
import hashlib
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models import synthetic
from models.preprocess import decode_image, probe_image
from models.synthetic import (
    BANDS,
    SMALL_CROSS,
    TRAFFIC,
    band_shares,
    generate_dataset,
    generate_image,
    split_of,
)
from models.synthetic_draw import RED_HUES, clutter_color, sign_patch


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_whatever_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate_dataset(tmp_path / "a", n=12, seed=5, workers=1)
    monkeypatch.setattr(synthetic, "MIN_PER_WORKER", 4)  # a pool even for 12 images
    generate_dataset(tmp_path / "b", n=12, seed=5, workers=2)
    generate_dataset(tmp_path / "c", n=12, seed=6, workers=1)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_classes_formats_sizes_and_bands(tmp_path: Path) -> None:
    manifest = generate_dataset(tmp_path, n=60, seed=0)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(rows) == 60
    assert set(Counter(r["label"] for r in rows)) == {"allow", "block"}
    assert {r["format"] for r in rows} == {"JPEG", "PNG"}
    assert any(r.get("mode") == "RGBA" for r in rows)
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert {r["band"] for r in rows} == set(BANDS)
    sizes = [(r["width"], r["height"]) for r in rows]
    assert min(min(s) for s in sizes) >= 96 and max(max(s) for s in sizes) <= 640
    # Every block image carries the cue, no allow image does; look-alikes appear in both.
    assert all(any(c["kind"] == "x_ring" for c in r["cues"]) for r in rows if r["label"] == "block")
    assert not any(c["kind"] == "x_ring" for r in rows if r["label"] == "allow" for c in r["cues"])
    assert any(r["cues"] for r in rows if r["label"] == "allow")
    for r in rows[:20]:
        data = (tmp_path / r["file"]).read_bytes()
        assert probe_image(data, max_pixels=10**7).format == r["format"]
        assert decode_image(data, max_pixels=10**7).size == (r["width"], r["height"])
    info = json.loads((tmp_path / "dataset.json").read_text())
    assert info["mix"] == "training" and info["prevalence"] == 0.5


def test_a_held_out_set_in_one_split(tmp_path: Path) -> None:
    manifest = generate_dataset(tmp_path, n=10, seed=9, prevalence=0.05, mix="traffic", split="traffic")  # fmt: skip
    assert {json.loads(line)["split"] for line in manifest.read_text().splitlines()} == {"traffic"}
    assert not synthetic.ensure_dataset(tmp_path, n=10, seed=9, prevalence=0.05, mix="traffic", split="traffic")  # fmt: skip


def test_band_shares_of_traffic_need_every_tier() -> None:
    for prevalence in (0.01, 0.05, 0.1):
        shares = band_shares(prevalence)
        assert sum(shares.values()) == pytest.approx(1.0)
        assert shares["easy"] >= 0.8
        assert shares["medium"] >= 0.10
        assert 0.01 <= shares["ambiguous"] <= 0.05
    for label in (True, False):
        assert sum(TRAFFIC[label].values()) == pytest.approx(1.0)


def test_medium_signs_differ_by_shape_only_and_covered_signs_not_at_all() -> None:
    """Same random stream, other kind: the uncovered X and + differ, covered ones are the
    same pixels — the ambiguous band carries no information about the label."""

    def patch(kind: str, covered: bool) -> np.ndarray:
        return np.asarray(sign_patch(np.random.default_rng(4), kind, 40, covered=covered))

    assert np.abs(patch("x_ring", False).astype(int) - patch("plus_ring", False)).max() > 100
    covered = patch("x_ring", True)
    assert np.array_equal(covered, patch("plus_ring", True))
    assert np.array_equal(covered, patch("empty_ring", True))


def test_medium_signs_cross_is_subpixel_at_stage_1s_size_and_shows_at_stage_2s() -> None:
    """A medium-band sign spans 5-7 px at stage 1's 64 px and 11-14 px at stage 2's 128: its
    thin inner strokes make the X and the + differ much less at the former than a sign drawn
    with full strokes does, and much more at the latter."""

    def differ(diameter: int, cross: float) -> float:
        def patch(kind: str, seed: int) -> np.ndarray:
            rng = np.random.default_rng(seed)
            return np.asarray(sign_patch(rng, kind, diameter, covered=False, cross=cross))

        return float(np.mean([
            np.abs(patch("x_ring", s).astype(int) - patch("plus_ring", s))[..., :3].max()
            for s in range(20)
        ]))  # fmt: skip

    assert differ(6, SMALL_CROSS) < 0.65 * differ(6, 1.0)
    assert differ(12, SMALL_CROSS) > 1.4 * differ(6, SMALL_CROSS)


def test_clutter_is_never_a_saturated_sign_red() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5000):
        hue, saturation, value = colorsys.rgb_to_hsv(*(c / 255 for c in clutter_color(rng)))
        assert saturation <= 0.3 or value <= 60 / 255 or RED_HUES[0] < 360 * hue < RED_HUES[1]


def test_exif_rotated_image_decodes_to_display_orientation() -> None:
    for i in range(200):
        data, meta = generate_image(np.random.default_rng([9, i]), harmful=True, band="easy")
        if meta.get("exif_orientation") in (6, 8):
            with Image.open(io.BytesIO(data)) as raw:
                assert raw.size == (meta["height"], meta["width"])  # stored rotated
            assert decode_image(data, max_pixels=10**7).size == (meta["width"], meta["height"])
            return
    raise AssertionError("no 90-degree EXIF rotation in 200 images")


def test_generate_image_on_demand_is_seeded_and_keeps_the_band() -> None:
    a = generate_image(np.random.default_rng(1), harmful=True)
    b = generate_image(np.random.default_rng(1), harmful=True)
    assert a == b and a[1]["label"] == "block"
    benign = generate_image(np.random.default_rng(1), harmful=False, band="medium")[1]
    assert benign["label"] == "allow" and benign["band"] == "medium"
    with pytest.raises(ValueError, match="band"):
        generate_image(np.random.default_rng(1), harmful=False, band="nope")


def test_split_is_stable_and_roughly_proportional() -> None:
    splits = Counter(split_of(i, 0) for i in range(5000))
    assert 0.66 < splits["train"] / 5000 < 0.74
    assert split_of(17, 0) == split_of(17, 0)
