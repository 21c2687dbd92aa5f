"""Model registry (init modes, presets) and the `cascade data/train/export` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from models.errors import ModelInitError
from models.registry import PRESETS, create_model, stage_spec


def test_presets_and_overrides() -> None:
    assert stage_spec(1).model_name == "mobilenetv3_large_100"
    assert stage_spec(2).model_name == "tf_efficientnetv2_s"
    demo1, demo2 = stage_spec(1, "demo"), stage_spec(2, "demo")
    assert demo2.size > demo1.size  # stage 2 sees more pixels: that is its job
    spec = stage_spec(2, "demo", model_name="tf_efficientnetv2_b1", size=96, epochs=2)
    assert (spec.model_name, spec.size, spec.epochs, spec.model_kwargs) == (
        "tf_efficientnetv2_b1",
        96,
        2,
        {},
    )
    with pytest.raises(ValueError, match="preset"):
        stage_spec(1, "huge")
    assert set(PRESETS) == {"default", "demo"}


def test_checkpoint_init_loads_weights(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = create_model("mobilenetv3_small_050")
    torch.nn.init.normal_(source.get_classifier().weight)
    torch.save({"state_dict": source.state_dict()}, tmp_path / "ckpt.pt")
    loaded = create_model("mobilenetv3_small_050", init=tmp_path / "ckpt.pt")
    for (name, a), b in zip(source.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_init_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ModelInitError, match="does not exist"):
        create_model("mobilenetv3_small_050", init=tmp_path / "missing.pt")
    torch.save(create_model("tf_efficientnetv2_b0").state_dict(), tmp_path / "other.pt")
    with pytest.raises(ModelInitError, match="another architecture"):
        create_model("mobilenetv3_small_050", init=tmp_path / "other.pt")
    with pytest.raises(ModelInitError, match="--init PATH"):
        create_model("no_such_model_name", init="pretrained")


def test_random_init_head_starts_at_zero() -> None:
    head = create_model("mobilenetv3_small_050").get_classifier()
    assert not head.weight.detach().any() and not head.bias.detach().any()


def test_cli_help_and_data_generate(tmp_path: Path) -> None:
    from services.cli import main

    runner = CliRunner()
    for args in (
        ["data", "generate", "--help"],
        ["train", "--help"],
        ["export", "--help"],
        ["bench", "engines", "--help"],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output
    result = runner.invoke(
        main, ["data", "generate", "--out", str(tmp_path / "d"), "--n", "6", "--seed", "2"]
    )
    assert result.exit_code == 0, result.output
    rows = [
        json.loads(line) for line in (tmp_path / "d" / "manifest.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 6 and all((tmp_path / "d" / r["file"]).is_file() for r in rows)


def test_cli_export_without_model_is_a_clear_error(tmp_path: Path) -> None:
    from services.cli import main

    (tmp_path / "m").mkdir()
    result = CliRunner().invoke(
        main, ["export", "--model-dir", str(tmp_path / "m"), "--stage", "1", "--no-int8"]
    )
    assert result.exit_code != 0
    assert "meta.json not found" in result.output
