"""The soak's report: soak.md (a table per scenario), soak.json, soak.png (recovery per run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.bench.report import figure, write_report


def report(result: dict[str, Any], out: Path) -> list[Path]:
    fig, ax = figure(1, 1, figsize=(10, 4.5))
    for i, runs in enumerate(result["per_run"].values()):
        seconds = [r["recovery_s"] for r in runs if r["recovery_s"] is not None]
        ax.scatter([i] * len(seconds), seconds, alpha=0.6)
        failed = sum(1 for r in runs if r["recovery_s"] is None)
        if failed:
            ax.annotate(f"{failed} not recovered", (i, 0), color="#c44")
    ax.axhline(result["stall_after_s"], color="#888", linestyle=":", label="stall threshold")
    ax.set_xticks(range(len(result["per_run"])))
    ax.set_xticklabels(list(result["per_run"]), rotation=15, fontsize=8)
    ax.set_ylabel("recovery (s): fault end → last earlier image final")
    ax.legend(loc="upper right")
    return write_report(out, "soak", result, _markdown(result), fig)


def _markdown(r: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {name} | {s['runs']} | {s['accepted']} | **{s['lost']}** | "
        f"**{s['duplicated_callbacks']}** | **{s['stalls']}** | {_s(s['max_recovery_s'])} | "
        f"{s['refused']} | {s['errors']} | {s['missing_callbacks']} |"
        for name, s in r["scenarios"].items()
    )
    return (
        "# Fault soak\n\n"
        f"Each scenario run {r['runs_per_scenario']} times against a live stack (own Redis, "
        "beat, stage workers, callbacks worker, web app; tiny untrained models) under Locust "
        f"traffic ({r['offered_per_s']:g} uploads/s with a callback URL, {r['run_s']:g} s a "
        "run), the fault injected half-way and undone. **lost**: accepted and not final after "
        "the drain; **duplicated callbacks**: images called back more than once; **stalls**: "
        f"decided more than {r['stall_after_s']:g} s after max(upload, fault end); "
        "**max recovery**: fault end → every image accepted before it final. "
        f"Started {r['started_at']}.\n\n"
        "| scenario | runs | accepted | lost | duplicated callbacks | stalls | max recovery | "
        "refused (503/429) | errors | callbacks missing |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
        f"{rows}\n\n![soak](soak.png)\n"
    )


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g} s"
