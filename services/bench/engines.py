"""`cascade bench engines`: images/s per engine and batch size, accuracy per engine on held-out
data; ``engines.md``, ``engines.json`` and ``engines.png`` under ``--out``. Without trained
models it builds the demo models first (minutes on a CPU, once). The measuring is
``models.bench``.

Throughput is measured on real held-out inputs (tiled to the batch size) after warm-up, as the
best of a few timed rounds (the least disturbed by other processes on a shared machine). The
report states the machine and thread settings, because the numbers mean nothing without them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from models.engines import ENGINE_KINDS
from services.bench.report import figure, write_report


def _markdown(result: dict[str, Any]) -> str:
    lines = ["# Engine benchmark", "", f"Command: `{result.get('command', '')}`", ""]
    lines += [f"- {k}: {v}" for k, v in result["machine"].items()]
    lines += ["", "## Summary", ""] + [f"- {line}" for line in result["summary"]]
    for s in result["stages"]:
        engines = {k: v for k, v in s["engines"].items() if "images_per_s" in v}
        batches = next(iter(engines.values()))["images_per_s"].keys() if engines else []
        lines += ["", f"## Stage {s['stage']} (test images: {s['n_test']})", ""]
        lines += ["| engine | accuracy | " + " | ".join(f"b={b}" for b in batches) + " |"]
        lines += ["|---|---|" + "---|" * len(batches)]
        for kind, v in engines.items():
            ips = " | ".join(f"{v['images_per_s'][b]:.0f}" for b in batches)
            lines.append(f"| {kind} | {v['accuracy']:.4f} | {ips} |")
        for kind, v in s["engines"].items():
            if "skipped" in v:
                lines.append(f"\n- {kind}: skipped — {v['skipped']}")
    lines += ["", "Images/s: best of the timed rounds, after warm-up; higher is better.", ""]
    return "\n".join(lines)


def _plot(result: dict[str, Any]) -> Any:
    stages = result["stages"]
    fig, axes = figure(1, len(stages), figsize=(6 * len(stages), 4.5), squeeze=False)
    for ax, s in zip(axes[0], stages, strict=True):
        for kind, v in s["engines"].items():
            if "images_per_s" in v:
                b = [int(k) for k in v["images_per_s"]]
                ax.plot(b, list(v["images_per_s"].values()), marker="o",
                        label=f"{kind} (acc {v['accuracy']:.3f})")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("images/s")
        ax.set_title(f"stage {s['stage']}")
        ax.grid(True, alpha=0.3)
        ax.legend()
    return fig


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
    default=",".join(ENGINE_KINDS),
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
    from models.bench import bench_stage, machine_info, summarise
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
    for path in write_report(out, "engines", result, _markdown(result), _plot(result)):
        click.echo(f"wrote {path}")
    for line in result["summary"]:
        click.echo(line)
