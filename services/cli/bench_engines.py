"""`cascade bench engines`: images/s per engine at batch 1..256 and accuracy per engine.

Writes ``engines.md``, ``engines.json`` and ``engines.png`` under ``--out``. Without trained
models it builds the demo models first (minutes on a CPU, once).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from exc


@click.command("engines")
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports"), show_default=True)
@click.option(
    "--model-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Default: CASCADE_MODEL_DIR (the demo models).",
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Held-out data (default: the demo data set under CASCADE_VAR_DIR/data).",
)
@click.option("--stages", default="1,2", show_default=True, help="Comma-separated stages.")
@click.option(
    "--kinds",
    default="torch,onnx,onnx-int8,tensorrt",
    show_default=True,
    help="Engines; unavailable ones are reported as skipped.",
)
@click.option("--batch-sizes", default="1,2,4,8,16,32,64,128,256", show_default=True)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Timed rounds per point (best is kept).",
)
@click.option(
    "--min-seconds",
    type=float,
    default=0.5,
    show_default=True,
    help="Minimum duration of one timed round.",
)
@click.option(
    "--eval-limit", type=int, default=None, help="Use only the first N test images for accuracy."
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="Device for torch/onnx engines (TensorRT always uses cuda).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads for both torch and ONNX Runtime (default: each runtime's own choice).",
)
def engines(
    out: Path, model_dir: Path | None, data_dir: Path | None, stages: str, kinds: str,
    batch_sizes: str, rounds: int, min_seconds: float, eval_limit: int | None, device: str,
    threads: int | None,
) -> None:  # fmt: skip
    """Throughput of torch eager FP32, ONNX Runtime FP32 and INT8 (and TensorRT where there is
    one) per batch size, and each engine's accuracy on the held-out synthetic test split."""
    from cascade.config import get_settings
    from models.bench import bench_stage, machine_info, summarise, write_reports
    from models.demo import ensure_demo_models

    settings = get_settings()
    model_dir = model_dir or settings.model_dir
    data_dir = data_dir or settings.var_dir / "data"
    if not (model_dir / "stage1" / "meta.json").is_file():
        click.echo(f"no models under {model_dir}: building the demo models first")
        ensure_demo_models(model_dir, data_dir)
    results = []
    for stage in _ints(stages):
        click.echo(f"benchmarking stage {stage} ...")
        results.append(
            bench_stage(
                model_dir,
                data_dir,
                stage,
                kinds=kinds.split(","),
                batch_sizes=_ints(batch_sizes),
                rounds=rounds,
                min_seconds=min_seconds,
                device=device,
                eval_limit=eval_limit,
                threads=threads,
            )
        )
    result = {
        "command": "cascade bench engines " + " ".join(sys.argv[3:]),
        "machine": machine_info(threads),
        "stages": results,
        "summary": summarise(results),
    }
    for path in write_reports(result, out):
        click.echo(f"wrote {path}")
    for line in result["summary"]:
        click.echo(line)
