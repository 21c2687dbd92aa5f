"""Training, calibration and export on a tiny, easy data set (seconds, CPU)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.artifact import read_meta, stage_dir
from models.calibrate import expected_calibration_error, fit_temperature
from models.data import load_split
from models.engines import load_engine
from models.export import export_stage, onnx_max_abs_diff
from models.registry import StageSpec
from models.train import train_stage

SPEC = StageSpec(1, "mobilenetv3_small_050", 32, epochs=6, batch_size=16, lr=3e-3)


def make_easy_dataset(root: Path, n: int = 140, seed: int = 0) -> Path:
    """block = reddish noise, allow = bluish noise; mixed sizes and formats."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "block" if i % 2 else "allow"
        h, w = int(rng.integers(24, 48)), int(rng.integers(24, 48))
        img = rng.integers(0, 120, (h, w, 3)).astype(np.uint8)
        img[..., 0 if label == "block" else 2] += 120
        fmt = "PNG" if i % 3 == 0 else "JPEG"
        name = f"{label}/{i:04d}.{fmt.lower()}"
        (root / label).mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, fmt)
        (root / name).write_bytes(buf.getvalue())
        split = ("train", "train", "train", "val", "test")[i % 5]
        rows.append(json.dumps({"file": name, "label": label, "split": split}))
    (root / "manifest.jsonl").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    data = make_easy_dataset(tmp_path_factory.mktemp("easy"))
    models = tmp_path_factory.mktemp("trained")
    train_stage(data, models, SPEC, progress=False)
    return data, models


def test_training_converges_and_writes_the_contract(trained: tuple[Path, Path]) -> None:
    _, models = trained
    meta = read_meta(stage_dir(models, 1))
    m = meta.metrics
    history = m["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert max(h["val_accuracy"] for h in history) >= 0.9
    # The whole schedule ran, and the kept weights are the best epoch's.
    assert m["epochs_run"] == m["epochs_planned"] == SPEC.epochs
    assert m["best_epoch"] == 1 + min(range(len(history)), key=lambda i: history[i]["val_nll"])
    assert m["test"]["accuracy"] >= 0.9
    assert {(b["band"], b["label"]) for b in m["test"]["buckets"]} == {("all", "allow"), ("all", "block")}  # fmt: skip
    assert m["quality"] == {"passed": True, "reasons": [], "forced": False}
    assert meta.temperature > 0 and meta.data_fingerprint
    assert (stage_dir(models, 1) / "model.pt").is_file()


def test_export_matches_pytorch_and_int8_runs(trained: tuple[Path, Path]) -> None:
    data, models = trained
    directory = stage_dir(models, 1)
    report = export_stage(directory, data_dir=data, int8=True, calibration_samples=32)
    assert report["onnx_max_abs_diff"] <= 1e-3
    assert set(report["int8"]) >= {"test_accuracy_fp32", "test_accuracy_int8", "delta_points"}
    metrics = read_meta(directory).metrics
    # The export's own figures, and the out-of-distribution gate fitted with it, recorded apart.
    assert metrics["export"] == {k: v for k, v in report.items() if k != "ood"}
    assert metrics["ood"] == report["ood"] and (directory / report["ood"]["graph"]).is_file()
    test = load_split(data, "test", read_meta(directory).preprocess)
    x = test.inputs(read_meta(directory).preprocess)
    torch_p = load_engine(directory, "torch").predict(x)
    np.testing.assert_allclose(load_engine(directory, "onnx").predict(x), torch_p, atol=1e-4)
    int8_p = load_engine(directory, "onnx-int8").predict(x)
    assert np.mean((int8_p >= 0.5) == (torch_p >= 0.5)) >= 0.9
    from models.artifact import load_model

    assert onnx_max_abs_diff(load_model(directory), directory / "model.onnx", 32, batch=5) <= 1e-3


def test_fit_temperature_recovers_known_temperature() -> None:
    rng = np.random.default_rng(0)
    true_margin = rng.normal(0, 2, 4000)
    labels = (rng.random(4000) < 1 / (1 + np.exp(-true_margin))).astype(np.int64)
    logits = np.stack([np.zeros(4000), true_margin * 3.0], axis=1)  # 3x over-confident
    t = fit_temperature(logits, labels)
    assert 2.6 < t < 3.4
    before = expected_calibration_error(1 / (1 + np.exp(-logits[:, 1])), labels)
    after = expected_calibration_error(1 / (1 + np.exp(-logits[:, 1] / t)), labels)
    assert after < before / 2


def test_ece_of_perfectly_calibrated_scores_is_small() -> None:
    rng = np.random.default_rng(1)
    p = rng.random(20000)
    labels = (rng.random(20000) < p).astype(np.int64)
    assert expected_calibration_error(p, labels) < 0.02
    assert expected_calibration_error(np.ones(100), np.zeros(100)) == pytest.approx(1.0)


def test_weighted_loss_equals_torch_cross_entropy_on_hard_labels() -> None:
    import torch

    from models.train import weighted_cross_entropy

    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(64, 2, generator=gen), torch.randint(0, 2, (64,), generator=gen)
    for w in (1.0, 4.0):
        expected = torch.nn.functional.cross_entropy(logits, labels, weight=torch.tensor([1.0, w]))
        assert float(weighted_cross_entropy(logits, labels.float(), w)) == pytest.approx(
            float(expected), rel=1e-6
        )


def test_undoing_the_positive_weight_recovers_the_unweighted_fit() -> None:
    """Weighting harmful examples by w moves the fitted logit by log w; the head's bias gives
    it back (what ``positive_weight`` relies on to keep scores probabilities)."""
    import torch

    from models.train import _undo_weight, weighted_cross_entropy

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(1, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

        def get_classifier(self) -> torch.nn.Module:
            return self.fc

    rng = np.random.default_rng(0)
    y = (rng.random(20000) < 0.3).astype(np.float32)
    x = torch.from_numpy((rng.normal(0, 1, 20000) + 1.5 * y).astype(np.float32)[:, None])
    target = torch.from_numpy(y)

    def fitted(w: float) -> Head:
        torch.manual_seed(0)
        head = Head()
        opt = torch.optim.LBFGS(head.parameters(), lr=0.5, max_iter=200)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = weighted_cross_entropy(head(x), target, w)
            loss.backward()
            return loss

        opt.step(closure)
        return head

    def margin(head: Head) -> np.ndarray:
        grid = torch.linspace(-2, 3, 11)[:, None]
        with torch.no_grad():
            z = head(grid)
        return (z[:, 1] - z[:, 0]).numpy()

    plain, weighted = fitted(1.0), fitted(4.0)
    assert margin(weighted) - margin(plain) == pytest.approx(np.full(11, np.log(4.0)), abs=0.05)
    _undo_weight(weighted, 4.0)
    assert margin(weighted) == pytest.approx(margin(plain), abs=0.05)


def test_training_targets_are_the_base_rate_where_no_model_can_decide() -> None:
    from models.data import Split

    labels = np.array([1, 0, 1, 0, 0, 1, 0])
    bands = ["easy", "easy", "ambiguous", "ambiguous", "ambiguous", "medium", "ambiguous"]
    split = Split(np.zeros((7, 2, 2, 3), np.uint8), labels, [{"band": b} for b in bands])
    assert split.targets().tolist() == pytest.approx([1, 0, 0.25, 0.25, 0.25, 1, 0.25])
    # a stage that cannot read the medium band either (the demo's stage 1 at 64 px)
    small = Split(np.zeros((3, 2, 2, 3), np.uint8), np.array([1, 0, 1]),
                  [{"band": "medium"}, {"band": "medium"}, {"band": "easy"}])  # fmt: skip
    assert small.targets().tolist() == [1.0, 0.0, 1.0]
    assert small.targets(("medium", "ambiguous")).tolist() == [0.5, 0.5, 1.0]
    unbanded = Split(np.zeros((2, 2, 2, 3), np.uint8), np.array([1, 0]), [{}, {}])
    assert unbanded.targets().tolist() == [1.0, 0.0]
