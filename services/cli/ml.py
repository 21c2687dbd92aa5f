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
    "--prevalence",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Share of harmful images (0.5 for training; a few percent for a traffic-like set).",
)
@click.option(
    "--mix",
    type=click.Choice(["training", "traffic"]),
    default="training",
    show_default=True,
    help="Difficulty-band shares per label: training over-represents the hard bands.",
)
@click.option(
    "--split",
    default=None,
    help="Put every image in this split (e.g. 'traffic' for a held-out set); default train/val/test.",
)
def generate(out: Path, n: int, seed: int, prevalence: float, mix: str, split: str | None) -> None:
    """Generate N images (96-640 px, JPEG/PNG, some RGBA or EXIF-rotated) with a train/val/test
    split and a difficulty band per image. See models/synthetic.py for the world and its bands."""
    from models.synthetic import generate_dataset

    manifest = generate_dataset(out, n=n, seed=seed, prevalence=prevalence, mix=mix, split=split)
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
    help="Epochs of the schedule (it always runs to its end; the best epoch is kept).",
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
@click.option(
    "--focus/--no-focus",
    default=True,
    show_default=True,
    help="Stage 2: emphasise the images <out>/stage1 is unsure about (when it is there).",
)
@click.option(
    "--force", is_flag=True, help="Accept a model the quality gate refuses (experiments)."
)
@click.option("--progress/--no-progress", default=True, show_default=True)
def train(
    stage: str, data_dir: Path, model_dir: Path, preset: str, model_name: str | None,
    size: int | None, epochs: int | None, init: str | None, seed: int, threads: int | None,
    focus: bool, force: bool, progress: bool,
) -> None:  # fmt: skip
    """Train one stage, calibrate its temperature on the validation split, measure it on the
    test split and gate it: exits non-zero when the model is not fit to serve (see
    models/quality.py). Writes model.pt and meta.json; run `cascade export` next."""
    from models.artifact import stage_dir
    from models.errors import ModelsError
    from models.registry import stage_spec
    from models.train import train_stage

    spec = stage_spec(int(stage), preset, model_name=model_name, size=size, epochs=epochs)
    stage1 = stage_dir(model_dir, 1)
    use_focus = focus and spec.stage == 2 and (stage1 / "meta.json").is_file()
    try:
        meta = train_stage(
            data_dir, model_dir, spec, init=init, seed=seed, progress=progress, threads=threads,
            focus=stage1 if use_focus else None,
        )  # fmt: skip
    except ModelsError as exc:
        raise click.ClickException(str(exc)) from exc
    m = meta.metrics
    click.echo(
        f"stage {meta.stage} {meta.model_name}@{meta.preprocess.size}: "
        f"trained {m['train_seconds']}s ({m['epochs_run']} epochs, best {m['best_epoch']}), "
        f"test accuracy {m['test']['accuracy']}, max confident-error rate "
        f"{m['test']['max_confident_error_rate']}, ECE {m['calibration_val']['ece_before']} -> "
        f"{m['calibration_val']['ece_after']} (T={meta.temperature:.3f})"
        + (f", focus on {stage1}" if use_focus else "")
    )
    _gate(meta.stage, stage_dir(model_dir, meta.stage), force)


def _gate(stage: int, directory: Path, force: bool) -> None:
    """Exit non-zero on a refused model unless ``force``; with it, record the acceptance."""
    from models.quality import force as force_model
    from models.quality import refusal_message, verdict_of

    verdict = verdict_of(directory)
    if verdict is None or verdict.servable:
        return
    if not force:
        raise click.ClickException(refusal_message(stage, verdict))
    force_model(directory)
    click.echo(
        f"WARNING: {refusal_message(stage, verdict)}\n  accepted anyway (--force).", err=True
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
@click.option(
    "--force", is_flag=True, help="Export a model the quality gate refused (experiments)."
)
def export(
    model_dir: Path, stage: str, data_dir: Path | None, int8: bool, tensorrt: bool,
    trt_precision: str, max_batch: int, force: bool,
) -> None:  # fmt: skip
    """Export trained stages to ONNX (checked against PyTorch), INT8 ONNX (accuracy delta
    reported) and optionally a TensorRT engine. Refuses (non-zero exit) a stage the quality gate
    refused at training, unless --force."""
    from models.artifact import stage_dir
    from models.errors import ModelsError
    from models.export import export_stage

    stages = [1, 2] if stage == "all" else [int(stage)]
    for s in stages:
        directory = stage_dir(model_dir, s)
        try:
            _gate(s, directory, force)
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
