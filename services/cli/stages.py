"""`cascade models import` and `cascade distill`: stages that come from elsewhere.

``models import`` wraps an external classifier (an ONNX file, or a timm name + checkpoint) as a
stage with its full preprocessing spec; ``distill`` trains a stage-1 screener from a stage-2
teacher's scores on unlabelled images (a folder, or the blobs of past traffic). Thin edges over
``models.importer`` and ``models.distill``: parse, call, print what was measured.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from services.cli.stage_options import import_spec_options, spec_from_options

if TYPE_CHECKING:
    from cascade.context import Context
    from models.samples import Sample


@click.group("models")
def models_group() -> None:
    """Stage models from elsewhere: `cascade models import`."""


@models_group.command("import")
@click.option("--model-dir", type=click.Path(path_type=Path), default=None,
              help="Default: CASCADE_MODEL_DIR.")  # fmt: skip
@click.option("--stage", type=click.Choice(["1", "2"]), required=True)
@click.option("--preset", type=click.Choice(["opennsfw"]), default=None,
              help="A known model with its spec: opennsfw = the open_nsfw ONNX in the opennsfw extra.")  # fmt: skip
@click.option("--onnx", "onnx_path", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              default=None, help="An ONNX classifier.")  # fmt: skip
@click.option("--timm", "timm_name", default=None, help="A timm model name (with --checkpoint).")
@click.option("--checkpoint", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              default=None, help="The timm model's state dict.")  # fmt: skip
@click.option("--num-classes", type=click.IntRange(min=1), default=None,
              help="timm: classes of the checkpoint (default: read from its classifier).")  # fmt: skip
@click.option("--name", default=None, help="The stage's model name in meta.json.")
@import_spec_options
@click.option("--calibrate", "calibration_dir", default=None,
              type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="Labelled images (allow/ and block/ folders, or a manifest.jsonl) to calibrate on.")  # fmt: skip
@click.option("--calibration", "method", type=click.Choice(["temperature", "isotonic"]),
              default="temperature", show_default=True)  # fmt: skip
def import_model(
    model_dir: Path | None, stage: str, preset: str | None, onnx_path: Path | None,
    timm_name: str | None, checkpoint: Path | None, num_classes: int | None, name: str | None,
    calibration_dir: Path | None, method: str, **spec_options: Any,
) -> None:  # fmt: skip
    """Wrap an external classifier as stage N: its preprocessing runs in the workers and its
    graph, its output becomes P(block). Runs a smoke inference (dynamic batch included),
    records checksums, and calibrates when --calibrate is given."""
    from models.errors import ModelsError
    from models.samples import folder_samples

    sources = [s for s in (preset, onnx_path, timm_name) if s is not None]
    if len(sources) != 1:
        raise click.UsageError("give exactly one of --preset, --onnx, --timm")
    if timm_name is not None and checkpoint is None:
        raise click.UsageError("--timm needs --checkpoint (a state dict file)")
    model_dir = model_dir or _default_model_dir()
    calibration = folder_samples(calibration_dir) if calibration_dir else []
    try:
        meta = _run_import(model_dir, int(stage), preset, onnx_path, timm_name, checkpoint,
                           num_classes, name, calibration, method, spec_options)  # fmt: skip
    except (ModelsError, ImportError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    record = meta.metrics["import"]
    click.echo(f"stage {meta.stage} = {meta.model_name} ({record['kind']}), in {model_dir}")
    click.echo(
        f"  source sha256 {record['source_sha256']}, model.onnx sha256 {record['model_sha256']}"
    )
    click.echo(f"  smoke test: scores {record['smoke']['scores']}, dynamic batch ok")
    if "calibration" in record:
        click.echo(f"  calibration: {json.dumps(record['calibration'])}")
    click.echo("Workers load stages when they start: restart them to serve it.")


def _run_import(model_dir, stage, preset, onnx_path, timm_name, checkpoint, num_classes, name,
                calibration, method, options):  # type: ignore[no-untyped-def]  # fmt: skip
    from models.external import PRESETS, ImportSpec, OutputSpec, opennsfw_model_path
    from models.import_timm import import_timm, load_timm, timm_spec
    from models.importer import import_onnx

    if timm_name is not None:
        base = ImportSpec(timm_spec(load_timm(timm_name, checkpoint, num_classes)), OutputSpec())
        spec = spec_from_options(base, options)
        return import_timm(timm_name, checkpoint, model_dir, stage=stage, spec=spec,
                           num_classes=num_classes, calibration=calibration, method=method)  # fmt: skip
    if preset is not None:
        source, base, name = opennsfw_model_path(), PRESETS[preset], name or "open_nsfw"
    else:
        source, base = onnx_path, ImportSpec()
    return import_onnx(source, model_dir, stage=stage, spec=spec_from_options(base, options),
                       name=name, calibration=calibration, method=method)  # fmt: skip


@click.command("distill")
@click.option("--teacher", "teacher_dir", required=True,
              type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="The teacher's stage directory (e.g. var/models/stage2).")  # fmt: skip
@click.option("--images", "images_dir", default=None,
              type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="A folder of images (labels from allow/ and block/ or a manifest, if any).")  # fmt: skip
@click.option("--traffic", is_flag=True, help="The blobs of past traffic (CASCADE_DATABASE_URL).")
@click.option("--limit", type=click.IntRange(min=20), default=20_000, show_default=True,
              help="With --traffic: the most recent N distinct images.")  # fmt: skip
@click.option("--model-dir", type=click.Path(path_type=Path), default=None,
              help="Where the student goes (stage1/); default CASCADE_MODEL_DIR.")  # fmt: skip
@click.option(
    "--preset", type=click.Choice(["default", "demo"]), default="default", show_default=True
)
@click.option("--model", "model_name", default=None, help="timm name overriding the preset's.")
@click.option("--size", type=click.IntRange(min=8), default=None)
@click.option("--epochs", type=click.IntRange(min=1), default=None)
@click.option("--teacher-engine", default="onnx", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads.")
def distill(
    teacher_dir: Path, images_dir: Path | None, traffic: bool, limit: int, model_dir: Path | None,
    preset: str, model_name: str | None, size: int | None, epochs: int | None,
    teacher_engine: str, seed: int, threads: int | None,
) -> None:  # fmt: skip
    """Train a stage-1 screener from the teacher's scores, no labels needed; reports agreement
    with the teacher and, where labels exist, accuracy; calibrates on the audit labels."""
    from cascade.context import Context
    from models.distill import distill as run
    from models.errors import ModelsError
    from models.registry import stage_spec
    from models.samples import folder_samples

    if (images_dir is None) == (not traffic):
        raise click.UsageError("give exactly one of --images DIR and --traffic")
    if threads:
        import torch

        torch.set_num_threads(threads)
    spec = stage_spec(1, preset, model_name=model_name, size=size, epochs=epochs)
    with Context.opened() as ctx:  # the blob store, when the images are past traffic
        samples = folder_samples(images_dir) if images_dir else traffic_samples(ctx, limit)
        try:
            meta = run(samples, teacher_dir, model_dir or ctx.settings.model_dir, spec,
                       teacher_kind=teacher_engine, seed=seed, log=click.echo)  # fmt: skip
        except (ModelsError, ValueError) as exc:
            raise click.ClickException(str(exc)) from exc
    report = meta.metrics["distill"]
    click.echo(f"stage 1 = {meta.model_name}@{meta.preprocess.size}, distilled from "
               f"{report['teacher']['model_name']} on {report['n_images']} images")  # fmt: skip
    click.echo(f"  held-out: {json.dumps(report['test'])}")
    click.echo(f"  temperature {report['temperature']} fitted on {report['calibrated_on']}")


def traffic_samples(ctx: Context, limit: int) -> list[Sample]:
    """The most recent distinct images of past traffic, labelled where an audit review gave a
    final label (the uniform audit sample, which is what calibration may trust). Bytes are read
    from the blob store only when the sample is decoded."""
    from sqlalchemy import select

    from cascade.db.schema import Image, ReviewItem, Submission
    from models.samples import LABELS, Sample

    with ctx.sessions() as session:
        rows = session.execute(
            select(Image.sha256, Image.blob_key).order_by(Image.created_at.desc()).limit(limit)
        ).all()
        audited = session.execute(
            select(Submission.image_sha256, ReviewItem.final_label)
            .join(ReviewItem, ReviewItem.submission_id == Submission.id)
            .where(Submission.audit.is_(True), ReviewItem.final_label.in_(("allow", "block")))
        ).all()
    labels = {sha: LABELS[str(label)] for sha, label in audited}
    return [Sample(sha[:16], partial(ctx.blobs.get, key), labels.get(sha)) for sha, key in rows]


def _default_model_dir() -> Path:
    from cascade.config import get_settings

    return Path(get_settings().model_dir)
