"""`cascade data`, `cascade train`, `cascade export`: the ML engineer's commands.

Thin edges over ``models``: parse options, call one function, print what it measured. torch and
timm are imported inside the commands so `cascade --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group()
def data() -> None:
    """The synthetic moderation data set (ImageFolder layout + manifest.jsonl)."""


@data.command("generate")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder to write allow/, block/, manifest.jsonl into.",
)
@click.option(
    "--n",
    "n",
    type=click.IntRange(min=1),
    default=3000,
    show_default=True,
    help="Number of images.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Same seed, same images (byte for byte)."
)
@click.option(
    "--block-rate",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Share of harmful images.",
)
def generate(out: Path, n: int, seed: int, block_rate: float) -> None:
    """Generate N images (96-640 px, JPEG/PNG, some RGBA or EXIF-rotated) with a train/val/test
    split and per-image difficulty. See models/synthetic.py for the cue and its look-alikes."""
    from models.synthetic import generate_dataset

    manifest = generate_dataset(out, n=n, seed=seed, block_rate=block_rate)
    click.echo(f"wrote {n} images and {manifest}")


@click.command()
@click.option(
    "--stage",
    type=click.Choice(["1", "2"]),
    required=True,
    help="1 = screener (MobileNet-V3), 2 = EfficientNet-V2.",
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    required=True,
    help="Data set folder (from `cascade data generate`).",
)
@click.option(
    "--out",
    "model_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Model directory; writes <out>/stage<N>/.",
)
@click.option(
    "--preset",
    type=click.Choice(["demo", "default"]),
    default="default",
    show_default=True,
    help="demo: small models at low resolution, trains on a laptop CPU in minutes.",
)
@click.option(
    "--model", "model_name", default=None, help="timm model name overriding the preset's."
)
@click.option(
    "--size",
    type=click.IntRange(min=16),
    default=None,
    help="Input size (pixels per side) overriding the preset's.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Maximum epochs (early stopping may end sooner).",
)
@click.option(
    "--init",
    default=None,
    help="'pretrained' (timm weights; needs them cached or network) or a checkpoint path. Default: random init.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="torch intra-op threads (default: torch's choice). Use 1 on a CPU shared with busy processes: spinning threads make training several times slower.",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
def train(
    stage: str, data_dir: Path, model_dir: Path, preset: str, model_name: str | None,
    size: int | None, epochs: int | None, init: str | None, seed: int, threads: int | None,
    progress: bool,
) -> None:  # fmt: skip
    """Train one stage, calibrate its temperature on the validation split and report held-out
    accuracy. Writes model.pt and meta.json; run `cascade export` next."""
    from models.errors import ModelInitError
    from models.registry import stage_spec
    from models.train import train_stage

    spec = stage_spec(int(stage), preset, model_name=model_name, size=size, epochs=epochs)
    try:
        meta = train_stage(
            data_dir, model_dir, spec, init=init, seed=seed, progress=progress, threads=threads
        )
    except ModelInitError as exc:
        raise click.ClickException(str(exc)) from exc
    m = meta.metrics
    click.echo(
        f"stage {meta.stage} {meta.model_name}@{meta.preprocess.size}: "
        f"trained {m['train_seconds']}s, test accuracy {m['test']['accuracy']}, "
        f"ECE {m['calibration_val']['ece_before']} -> {m['calibration_val']['ece_after']} "
        f"(T={meta.temperature:.3f})"
    )


@click.command()
@click.option(
    "--model-dir",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    required=True,
    help="Model directory holding stage1/ and/or stage2/.",
)
@click.option("--stage", type=click.Choice(["1", "2", "all"]), default="all", show_default=True)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=None,
    help="Data set for INT8 calibration and its accuracy check (default: the one the stage was trained on).",
)
@click.option(
    "--int8/--no-int8",
    default=True,
    show_default=True,
    help="Also write model.int8.onnx (static QDQ quantization).",
)
@click.option(
    "--tensorrt",
    is_flag=True,
    help="Also build model.plan with TensorRT (GPU host, `pip install cascade-moderation[tensorrt]`).",
)
@click.option(
    "--trt-precision",
    type=click.Choice(["fp32", "fp16", "int8"]),
    default="fp16",
    show_default=True,
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="TensorRT profile's largest batch.",
)
def export(
    model_dir: Path, stage: str, data_dir: Path | None, int8: bool, tensorrt: bool,
    trt_precision: str, max_batch: int,
) -> None:  # fmt: skip
    """Export trained stages to ONNX (checked against PyTorch), INT8 ONNX (accuracy delta
    reported) and optionally a TensorRT engine."""
    from models.artifact import stage_dir
    from models.errors import ModelsError
    from models.export import export_stage

    stages = [1, 2] if stage == "all" else [int(stage)]
    for s in stages:
        directory = stage_dir(model_dir, s)
        try:
            report = export_stage(directory, data_dir=data_dir, int8=int8)
            if tensorrt:
                report["tensorrt"] = str(
                    _build_tensorrt(directory, data_dir, trt_precision, max_batch)
                )
        except (ModelsError, ValueError) as exc:
            raise click.ClickException(f"stage {s}: {exc}") from exc
        click.echo(f"stage {s}: {json.dumps(report)}")


def _build_tensorrt(directory: Path, data_dir: Path | None, precision: str, max_batch: int) -> Path:
    from models.artifact import read_meta
    from models.data import load_split
    from models.export_tensorrt import build_engine

    calibration = None
    if precision == "int8":
        meta = read_meta(directory)
        source = data_dir or Path(meta.metrics.get("data_dir", ""))
        calibration = load_split(source, "train", meta.preprocess, limit=256).inputs(
            meta.preprocess
        )
    return build_engine(
        directory, precision=precision, max_batch=max_batch, calibration=calibration
    )
