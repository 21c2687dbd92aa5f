"""The quality gate: broken models (constant output, shuffled labels) are refused by
`cascade train` and `cascade export`, never loaded by an engine, and --force accepts them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from models.artifact import ModelRefused, read_meta, stage_dir
from models.engines import load_engine
from models.quality import QualityBar, assess, bucket_table, max_confident_error_rate, verdict_of
from tests.models.test_train import make_easy_dataset

GOOD_TEST = {"n": 400, "accuracy": 0.95, "majority_share": 0.5, "buckets": []}


def metrics(**test: object) -> dict[str, object]:
    return {"test": GOOD_TEST | test, "epochs_planned": 10, "epochs_run": 10,
            "calibration_val": {"accuracy": 0.9}}  # fmt: skip


def test_a_good_model_passes() -> None:
    assert assess(metrics(), temperature=1.3).passed


def test_chance_level_accuracy_is_refused() -> None:
    verdict = assess(metrics(accuracy=0.52), temperature=1.0)
    assert not verdict.passed and "better than chance" in verdict.reasons[0]
    # Accuracy equal to the majority share is a constant model on imbalanced data.
    assert not assess(metrics(accuracy=0.9, majority_share=0.9), temperature=1.0).passed


def test_confidently_wrong_bucket_is_refused_small_buckets_are_not_judged() -> None:
    bucket = {"band": "medium", "label": "block", "confident_error_rate": 0.2}
    verdict = assess(metrics(buckets=[bucket | {"n": 80}]), temperature=1.0)
    assert not verdict.passed and "medium/block" in verdict.reasons[0]
    assert assess(metrics(buckets=[bucket | {"n": 10}]), temperature=1.0).passed
    assert assess(metrics(buckets=[bucket | {"n": 80}]), 1.0, QualityBar(max_confident_error_rate=0.3)).passed  # fmt: skip


def test_clipped_temperature_and_unfinished_schedule_are_refused() -> None:
    assert "clip" in assess(metrics(), temperature=20.0).reasons[0]
    assert "clip" in assess(metrics(), temperature=0.05).reasons[0]
    separable = metrics() | {"calibration_val": {"accuracy": 1.0}}
    assert assess(separable, temperature=0.05).passed  # the best T of a perfect split is 0
    stopped = metrics() | {"epochs_run": 4}
    assert "epoch 4 of 10" in assess(stopped, temperature=1.0).reasons[0]


def test_bucket_table_counts_confident_errors_per_band_and_label() -> None:
    probs = np.array([0.95, 0.2, 0.05, 0.6, 0.5, 0.99])
    labels = np.array([0, 0, 1, 1, 1, 1])
    bands = np.array(["easy", "easy", "easy", "easy", "ambiguous", "ambiguous"])
    table = {(r["band"], r["label"]): r for r in bucket_table(probs, labels, bands)}
    assert table[("easy", "allow")]["confident_error_rate"] == 0.5
    assert table[("easy", "block")]["confident_error_rate"] == 0.5
    assert table[("ambiguous", "block")] | {} == {
        "band": "ambiguous", "label": "block", "n": 2, "accuracy": 1.0,
        "mean_score": 0.745, "confident_error_rate": 0.0,
    }  # fmt: skip
    assert max_confident_error_rate(list(table.values()), min_bucket=2) == 0.5
    assert max_confident_error_rate(list(table.values()), min_bucket=3) is None


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The easy data set with its labels shuffled: nothing to learn, a broken model results."""
    root = make_easy_dataset(tmp_path_factory.mktemp("shuffled"), n=140, seed=3)
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    labels = np.random.default_rng(0).permutation([r["label"] for r in rows])
    text = "\n".join(
        json.dumps(r | {"label": str(lab)}) for r, lab in zip(rows, labels, strict=True)
    )
    (root / "manifest.jsonl").write_text(text + "\n")
    return root


def test_cli_refuses_a_model_trained_on_shuffled_labels_and_force_accepts_it(
    shuffled: Path, tmp_path: Path
) -> None:
    from services.cli import main

    runner = CliRunner()
    models = tmp_path / "models"
    train = ["train", "--stage", "1", "--data", str(shuffled), "--out", str(models),
             "--preset", "demo", "--model", "mobilenetv3_small_050", "--size", "32",
             "--epochs", "2", "--no-progress"]  # fmt: skip
    result = runner.invoke(main, train)
    assert result.exit_code != 0
    assert "refused by the quality gate" in result.output
    assert "better than chance" in result.output
    directory = stage_dir(models, 1)
    verdict = verdict_of(directory)
    assert verdict is not None and not verdict.servable
    # No engine loads it: workers, benchmarks and the demo all go through read_meta.
    with pytest.raises(ModelRefused, match="quality gate"):
        load_engine(directory, "torch")
    export = ["export", "--model-dir", str(models), "--stage", "1", "--no-int8"]
    result = runner.invoke(main, export)
    assert result.exit_code != 0 and "refused by the quality gate" in result.output
    assert not (directory / "model.onnx").exists()

    result = runner.invoke(main, [*export, "--force"])
    assert result.exit_code == 0, result.output
    assert (directory / "model.onnx").is_file()
    assert read_meta(directory).metrics["quality"]["forced"] is True
    assert load_engine(directory, "onnx").predict(np.zeros((1, 3, 32, 32), np.float32)).shape == (
        1,
    )


def test_constant_model_is_refused(tmp_path: Path) -> None:
    """lr = 0 leaves the zero-initialised head: P(block) = 0.5 for every image."""
    from models.registry import StageSpec
    from models.train import train_stage

    data = make_easy_dataset(tmp_path / "easy", n=140)
    spec = StageSpec(1, "mobilenetv3_small_050", 32, epochs=1, batch_size=32, lr=0.0)
    meta = train_stage(data, tmp_path / "models", spec, progress=False)
    quality = meta.metrics["quality"]
    assert quality["passed"] is False
    assert any("better than chance" in r for r in quality["reasons"])
    with pytest.raises(ModelRefused):
        read_meta(stage_dir(tmp_path / "models", 1))
