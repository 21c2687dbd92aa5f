"""`cascade distill`: a stage-1 screener learned from a trained stage 2's scores, no labels needed.

Tiny and fast on purpose: synthetic images with an obvious cue (a large red disc is harmful, a
blue one is not, on noisy backgrounds) that a small model learns at 32 px in a few epochs, so the
teacher passes the quality gate and the test is about distillation, not about training.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from models.artifact import read_meta
from models.distill import distill
from models.engines import load_engine
from models.export import export_onnx
from models.preprocess import decode_image, preprocess_batch
from models.registry import StageSpec
from models.samples import folder_samples

STUDENT = StageSpec(1, "mobilenetv3_small_050", 32, epochs=8, batch_size=16, lr=3e-3)


def disc_dataset(root: Path, n: int = 240, seed: int = 0) -> Path:
    """ImageFolder + manifest.jsonl (the synthetic data set's layout), mixed sizes and formats."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "block" if i % 2 else "allow"
        w, h = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        img = Image.fromarray(rng.integers(60, 190, (h, w, 3)).astype(np.uint8))
        r = int(min(w, h) * rng.uniform(0.3, 0.45))
        cx, cy = int(rng.integers(r, w - r + 1)), int(rng.integers(r, h - r + 1))
        color = (220, 30, 30) if label == "block" else (30, 30, 220)
        ImageDraw.Draw(img).ellipse((cx - r, cy - r, cx + r, cy + r), fill=color)
        fmt = "PNG" if i % 3 == 0 else "JPEG"
        name = f"{label}/{i:04d}.{fmt.lower()}"
        (root / label).mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        img.save(buf, fmt)
        (root / name).write_bytes(buf.getvalue())
        split = ("train", "train", "train", "val", "test")[i % 5]
        rows.append(json.dumps({"file": name, "label": label, "split": split, "difficulty": 0.1}))
    (root / "manifest.jsonl").write_text("\n".join(rows) + "\n")
    return root


def images_of(data: Path) -> list[Path]:
    return sorted([*data.glob("allow/*"), *data.glob("block/*")])


def assert_learned_the_teacher(test: dict) -> None:
    """Agreement well above what a constant student gets (the teacher's majority share)."""
    constant = max(test["teacher_block_share"], 1 - test["teacher_block_share"])
    assert test["agreement"] >= max(0.9, constant + 0.15), test


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A trained stage 2 (the real training code, gate included) and its data set."""
    from models.train import train_stage

    data = disc_dataset(tmp_path_factory.mktemp("discs"))
    models = tmp_path_factory.mktemp("teacher")
    spec = StageSpec(2, "mobilenetv3_small_050", 32, epochs=8, batch_size=16, lr=3e-3)
    train_stage(data, models, spec, progress=False)
    assert read_meta(models / "stage2").metrics["test"]["accuracy"] >= 0.9
    export_onnx(models / "stage2")
    return data, models / "stage2"


def test_student_agrees_with_its_teacher_and_is_calibrated_on_the_audit_labels(
    teacher: tuple[Path, Path], tmp_path: Path
) -> None:
    data, teacher_dir = teacher
    meta = distill(folder_samples(data), teacher_dir, tmp_path / "models", STUDENT)
    report = meta.metrics["distill"]
    assert (meta.stage, meta.model_name, meta.preprocess.size) == (1, "mobilenetv3_small_050", 32)
    assert report["n_images"] == 240 and sum(report["split"].values()) == 240
    assert report["calibrated_on"].startswith("audit labels")
    assert report["teacher"]["stage"] == 2
    test = report["test"]
    assert test["n"] == report["split"]["test"] and test["n_labelled"] == test["n"]
    assert_learned_the_teacher(test)
    assert test["accuracy_student"] >= 0.85 and test["accuracy_teacher"] >= 0.85
    # The student is an ordinary stage: every CPU engine loads it and they agree.
    stage = tmp_path / "models" / "stage1"
    images = [decode_image(p.read_bytes(), max_pixels=10**8) for p in images_of(data)[:8]]
    x = preprocess_batch(images, meta.preprocess)
    np.testing.assert_allclose(
        load_engine(stage, "onnx").predict(x), load_engine(stage, "torch").predict(x), atol=1e-4
    )


def test_without_any_label_the_student_is_calibrated_to_the_teacher(
    teacher: tuple[Path, Path], tmp_path: Path
) -> None:
    data, teacher_dir = teacher
    plain = tmp_path / "traffic"  # no manifest, no allow/block folders: nothing is labelled
    plain.mkdir()
    for i, path in enumerate(images_of(data)):
        shutil.copy(path, plain / f"{i:04d}{path.suffix}")
    samples = folder_samples(plain)
    assert all(s.label is None for s in samples)
    report = distill(samples, teacher_dir, tmp_path / "models", STUDENT).metrics["distill"]
    assert report["calibrated_on"].startswith("teacher scores")
    assert report["test"]["n_labelled"] == 0 and "accuracy_student" not in report["test"]
    assert_learned_the_teacher(report["test"])


def test_too_few_images_is_a_clear_error(teacher: tuple[Path, Path], tmp_path: Path) -> None:
    data, teacher_dir = teacher
    with pytest.raises(ValueError, match="at least 20"):
        distill(folder_samples(data)[:5], teacher_dir, tmp_path / "models", STUDENT)
    assert not (tmp_path / "models" / "stage1").exists()
