"""The report of `cascade bench scale`: ``scale.md``, ``scale.json``, ``scale.png``.

JSON: ``{"meta", "targets", "<backend>": {"endpoints": {"<name>?span=<span>": {"cold_ms",
"warm_ms", ...}}, "review_next_ms", "retune_s", "near_duplicate_lookup_ms", "data", ...}}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.bench.report import figure, write_report

TARGETS = {"cold_ms": 300.0, "review_next_ms": 20.0, "near_duplicate_lookup_ms": 5.0,
           "retune_s": 30.0}  # fmt: skip


def verdicts(result: dict[str, Any]) -> dict[str, bool]:
    """Whether one database's figures meet each target."""
    worst_cold = max(e["cold_ms"] for e in result["endpoints"].values())
    return {
        "cold_ms": worst_cold <= TARGETS["cold_ms"],
        "review_next_ms": result["review_next_ms"] <= TARGETS["review_next_ms"],
        "near_duplicate_lookup_ms": result["near_duplicate_lookup_ms"]
        <= TARGETS["near_duplicate_lookup_ms"],
        "retune_s": result["retune_s"] <= TARGETS["retune_s"],
    }


def write(out: Path, meta: dict[str, Any], results: dict[str, dict[str, Any]]) -> list[Path]:
    for result in results.values():
        result["meets_targets"] = verdicts(result)
    payload = {"meta": meta, "targets": TARGETS, **results}
    return write_report(out, "scale", payload, _markdown(meta, results), _plot(results))


def _ok(flag: bool) -> str:
    return "yes" if flag else "**no**"


def _markdown(meta: dict[str, Any], results: dict[str, dict[str, Any]]) -> str:
    lines = ["# Every read at ten million decisions", ""]
    for backend, r in results.items():
        data, t = r["data"], r["data"]["timing_s"]
        v = r["meets_targets"]
        lines += [
            f"## {backend}: {data['count']:,} decisions",
            "",
            f"Generated {data['params']['n']:,} decisions over {data['params']['days']:g} days "
            f"in {t['total']:.0f} s (arrays {t['arrays']:.0f} s, bulk load and index builds "
            f"{t['load']:.0f} s, {'VACUUM ANALYZE' if backend == 'postgresql' else 'ANALYZE'} "
            f"{t['analyze']:.0f} s) on {data['generated_at'][:16]}; later runs add the traffic "
            "since.",
            "",
            f"| endpoint | cold ms (median of {meta['runs']}) | warm ms | cold <= "
            f"{TARGETS['cold_ms']:.0f} ms |",
            "| --- | ---: | ---: | :---: |",
        ]
        for name, e in r["endpoints"].items():
            ok = _ok(e["cold_ms"] <= TARGETS["cold_ms"])
            lines.append(f"| `{name}` | {e['cold_ms']:.1f} | {e['warm_ms']:.1f} | {ok} |")
        near = r["near_duplicate"]
        lines += [
            "",
            f"- review next item + lease, {_waiting(r)}: **{r['review_next_ms']:.1f} ms** "
            f"(target {TARGETS['review_next_ms']:.0f}: {_ok(v['review_next_ms'])})",
            f"- retune over {r['audit_rows']:,} labelled audit rows (load, optimise, store; "
            f"the first query of a fresh context): **{r['retune_s']:.1f} s** (target "
            f"{TARGETS['retune_s']:.0f}: {_ok(v['retune_s'])}); loading them again alone: "
            f"{r['load_audit_sample_s']:.1f} s",
            f"- near-duplicate lookup over {near['images']:,} images, distance "
            f"{near['distance']} ({near['method']}): **{r['near_duplicate_lookup_ms']:.1f} ms**, "
            f"found {sum(near['found'])}/{len(near['found'])} "
            f"(target {TARGETS['near_duplicate_lookup_ms']:.0f}: "
            f"{_ok(v['near_duplicate_lookup_ms'])})",
            *_load(r),
            "",
        ]
    lines += [
        "Cold: each sample is the first request of a fresh process (new connection; a new",
        "backend on PostgreSQL); on SQLite the database files' pages are also dropped from the",
        "OS page cache first (posix_fadvise DONTNEED). PostgreSQL's shared buffers and the OS",
        "cache of its files are not ours to drop. Warm: the same app asked again.",
        "",
        "![scale](scale.png)",
        "",
        f"Command: `{meta['command']}`; machine: {meta['machine']}.",
        "",
    ]
    return "\n".join(lines)


def _load(r: dict[str, Any]) -> list[str]:
    load = r.get("load_average")
    if not load:
        return []
    before, after = (" / ".join(f"{x:.1f}" for x in load[k]) for k in ("before", "after"))
    return [f"- load average (1 / 5 / 15 min) {before} before measuring, {after} after"]


def _waiting(r: dict[str, Any]) -> str:
    backlog = r.get("review_waiting")
    return f"{backlog:,} items waiting" if backlog else "the generated backlog waiting"


def _plot(results: dict[str, dict[str, Any]]) -> Any:
    backends = list(results)
    names = list(next(iter(results.values()))["endpoints"]) if results else []
    fig, ax = figure(figsize=(9, 0.28 * max(1, len(names)) * max(1, len(backends)) + 1.5))
    height = 0.8 / max(1, len(backends))
    for j, backend in enumerate(backends):
        eps = results[backend]["endpoints"]
        ax.barh([i + j * height for i in range(len(names))], [eps[n]["cold_ms"] for n in names],
                height, label=f"{backend} cold")  # fmt: skip
    ax.axvline(TARGETS["cold_ms"], color="#c44", linestyle=":", label="target")
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(names))], names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ms, cold (median)")
    ax.legend(loc="lower right")
    return fig
