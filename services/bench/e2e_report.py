"""The report of ``cascade bench e2e``: ``e2e.md``, ``e2e.json``, ``e2e.png`` (and the flame graph
``e2e-profile.svg`` beside them).

``e2e.json``: the first database's figures at the top level (the keys of ``E2EResult``), every
database's under ``by_database``, then the profile's top frames, the batching knobs the stack
ran with and the models it ran.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cascade.config import Settings
from services.bench.profile import Profile
from services.bench.report import figure, write_report


@dataclass
class E2EResult:
    """One database's figures. The first fourteen keys are the report's original ones."""

    images: int
    decided: int
    review: int
    errors: int
    refused: int
    seconds: float
    e2e_images_per_s: float
    raw_stage1_images_per_s: float
    ratio: float  # end to end / raw stage-1 engine (the wrong yardstick on a CPU; kept)
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    stage1_batch: int
    stage2_share: float
    database: str = "sqlite"
    ceiling_images_per_s: float = 0.0
    ratio_to_ceiling: float = 0.0
    latency_p99_ms_at_half_load: float = float("nan")
    half_load_images_per_s: float = 0.0
    cpu_ms_per_image: dict[str, float] | None = None
    ceiling_ms_per_image: dict[str, float] | None = None
    load_average: list[float] | None = None
    mean_batch: dict[str, float] | None = None  # images per stage batch at full load
    # 2 x ceiling CPU per image / the stack's CPU per image (the client's excluded): the ratio
    # to the ceiling two idle cores would allow if the stack used both fully. A projection.
    cpu_ratio_two_cores: float = 0.0
    # The same with the ceiling's CPU plus what the stages' OOD gates (models.ood) cost on the
    # images the stack gated (``ceiling_ms_per_image["ood_gate_cpu"]``): the workers run that
    # third network, the ceiling does not. None without gates.
    cpu_ratio_two_cores_with_ood_gate: float | None = None


TARGET_RATIO = 0.8
TARGET_P99_HALF_MS = 1000.0


def knobs(settings: Settings) -> dict[str, Any]:
    """The batching knobs the stack ran with (``cascade.celery_app`` derives the prefetch)."""
    batch_max = max(settings.stage1_batch_size, settings.stage2_batch_size)
    return {
        "stage1_batch_size": settings.stage1_batch_size,
        "stage1_flush_interval_s": settings.stage1_flush_interval_s,
        "stage2_batch_size": settings.stage2_batch_size,
        "stage2_flush_interval_s": settings.stage2_flush_interval_s,
        "worker_prefetch_multiplier": 2 * batch_max,
        "decode_threads": settings.decode_threads,
        "engine_threads": settings.engine_threads,
    }


def models(model_dir: Path) -> dict[str, str]:
    """What each stage under ``model_dir`` is, from its ``meta.json``."""
    out = {}
    for stage in (1, 2):
        try:
            meta = json.loads((model_dir / f"stage{stage}" / "meta.json").read_text())
        except (OSError, ValueError):
            out[f"stage{stage}"] = "missing"
            continue
        size = meta.get("preprocess", {}).get("size")
        made = meta.get("created_at", "?")
        note = meta.get("metrics", {}).get("note", "")
        out[f"stage{stage}"] = f"{meta.get('model_name')} at {size} px, {made} {note}".strip()
    out["dir"] = str(model_dir)
    return out


def report(
    results: list[E2EResult], latencies: np.ndarray, prof: Profile | None, out: Path, *,
    model_dir: Path, settings: Settings,
) -> list[Path]:  # fmt: skip
    data: dict[str, Any] = asdict(results[0])
    data["by_database"] = {r.database: asdict(r) for r in results}
    data["knobs"] = knobs(settings)
    data["models"] = models(model_dir)
    if prof is not None:
        data["profile"] = {
            "svg": prof.svg.name if prof.svg else None,
            "samples": prof.samples,
            "top_self": [[frame, round(share, 4)] for frame, share in prof.top],
            "top_self_by_component": {
                k: [[f, round(s, 4)] for f, s in v] for k, v in prof.top_by_component.items()
            },
            "note": prof.note,
        }
    return write_report(
        out, "e2e", data, _markdown(results, prof, data), _figure(results, latencies)
    )


def _figure(results: list[E2EResult], lat: np.ndarray) -> Any:
    fig, (a, b, c) = figure(1, 3, figsize=(16, 4.5))
    x = np.arange(len(results))
    a.bar(x - 0.2, [r.ceiling_images_per_s for r in results], 0.4, label="in-process ceiling",
          color="#888")  # fmt: skip
    a.bar(x + 0.2, [r.e2e_images_per_s for r in results], 0.4, label="end to end", color="#2a7")
    a.set_xticks(x, [r.database for r in results])
    a.set_ylabel("images / s")
    a.set_title(f"throughput (target ratio ≥ {TARGET_RATIO})")
    a.legend()
    parts = list((results[0].cpu_ms_per_image or {}).keys())
    bottom = np.zeros(len(results))
    for part in parts:
        values = np.array([(r.cpu_ms_per_image or {}).get(part, 0.0) for r in results])
        b.bar(x, values, 0.5, bottom=bottom, label=part)
        bottom += values
    budget = [2 * (r.ceiling_ms_per_image or {}).get("cpu", 0.0) / TARGET_RATIO for r in results]
    b.scatter(x, budget, marker="_", s=2000, color="k", zorder=3,
              label=f"stack CPU a ratio of {TARGET_RATIO} allows on 2 cores")  # fmt: skip
    b.set_xticks(x, [r.database for r in results])
    b.set_ylabel("CPU ms per image")
    b.set_title("where the CPU goes (end to end)")
    b.legend(fontsize=6, loc="lower right", markerscale=0.2, framealpha=0.9)
    c.hist(lat, bins=40, color="#27a")
    for q, style in ((50, "-"), (95, "--"), (99, ":")):
        if len(lat):
            c.axvline(np.percentile(lat, q), color="k", linestyle=style, label=f"p{q}")
    c.set_xlabel(f"upload → answer (ms), {results[0].database}, full load")
    c.legend()
    return fig


ROWS: list[tuple[str, Any]] = [
    ("end to end (images/s)", lambda r: f"{r.e2e_images_per_s:.1f}"),
    ("in-process ceiling (images/s)", lambda r: f"{r.ceiling_images_per_s:.1f}"),
    (f"**ratio to ceiling** (target ≥ {TARGET_RATIO})", lambda r: f"**{r.ratio_to_ceiling:.2f}**"),
    ("raw stage-1 engine (images/s)", lambda r: f"{r.raw_stage1_images_per_s:.1f}"),
    ("share to stage 2", lambda r: f"{r.stage2_share:.0%}"),
    ("latency p50 / p95 / p99 (ms)",
     lambda r: f"{r.latency_p50_ms:.0f} / {r.latency_p95_ms:.0f} / {r.latency_p99_ms:.0f}"),
    (f"**p99 at half load** (ms, target ≤ {TARGET_P99_HALF_MS:.0f})",
     lambda r: f"**{r.latency_p99_ms_at_half_load:.0f}** at {r.half_load_images_per_s:.1f}/s"),
    ("decided / review / errors / refused",
     lambda r: f"{r.decided} / {r.review} / {r.errors} / {r.refused}"),
    ("projected ratio on 2 idle cores (2 × ceiling CPU / stack CPU per image)",
     lambda r: f"{r.cpu_ratio_two_cores:.2f}"),
    ("the same, the stages' OOD gates added to the ceiling's CPU",
     lambda r: "—" if r.cpu_ratio_two_cores_with_ood_gate is None
     else f"{r.cpu_ratio_two_cores_with_ood_gate:.2f}"),
    ("images per batch at full load", lambda r: f"{r.mean_batch}"),
    ("load average before, after (1, 5, 15 min)", lambda r: f"{r.load_average}"),
]  # fmt: skip


def _table(results: list[E2EResult], rows: list[tuple[str, Any]]) -> str:
    text = "| figure | " + " | ".join(r.database for r in results) + " |\n"
    text += "|---|" + "---|" * len(results) + "\n"
    for name, cell in rows:
        text += f"| {name} | " + " | ".join(cell(r) for r in results) + " |\n"
    return text


def _markdown(results: list[E2EResult], prof: Profile | None, data: dict[str, Any]) -> str:
    parts = list((results[0].cpu_ms_per_image or {}).keys())
    cpu: list[tuple[str, Any]] = [
        (p, lambda r, p=p: f"{(r.cpu_ms_per_image or {}).get(p, 0.0):.1f}") for p in parts
    ]
    cpu.append(("**all**", lambda r: f"**{sum((r.cpu_ms_per_image or {}).values()):.1f}**"))
    ceil = [
        (p, lambda r, p=p: f"{(r.ceiling_ms_per_image or {}).get(p, 0.0):.1f}")
        for p in ("decode", "stage1", "stage2", "cpu", "ood_gate_cpu")
    ]
    text = (
        "# End-to-end benchmark\n\n"
        f"{results[0].images} images over HTTP per database; the answer is a decision or the "
        "hand-off to human review. The ceiling is one process on one core doing bytes → decode "
        "→ preprocess → stage 1 → stage 2 (for the same images the stack escalated), the "
        "faster of two passes.\n\n" + _table(results, ROWS)
        + "\n## CPU ms per image, by component (full load)\n\n" + _table(results, cpu)
        + "\n## The ceiling's time per image (ms)\n\n" + _table(results, ceil)
        + "\n## Batching knobs\n\n```\n" + json.dumps(data["knobs"], indent=1) + "\n```\n"
        + "\nModels: " + "; ".join(f"{k}: {v}" for k, v in data["models"].items()) + "\n\n"
        + "![e2e](e2e.png)\n"
    )  # fmt: skip
    if prof is not None:
        text += "\n## Profile (py-spy, self time)\n\n"
        text += f"![flame graph]({prof.svg.name})\n\n" if prof.svg else f"{prof.note}\n\n"
        text += "".join(f"- {share:.1%} {frame}\n" for frame, share in prof.top)
    return text
