"""`cascade bench load`: Locust at about twice the measured capacity for a minute, with a fault
in the middle; reports load held, p99 latencies, the backlog against its limit, faults
survived, bad inputs tried and images lost."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import click

from cascade.config import get_settings
from services.bench.hostile import send_corpus
from services.bench.loadgen import LoadRun, run_load_test, summary
from services.bench.report import figure, write_report
from services.bench.swarm import Swarm
from services.bench.throwaway import demo_model_dir, throwaway_stack


@click.command("load")
@click.option("--duration", type=float, default=60.0, show_default=True, help="Overload seconds.")
@click.option("--factor", type=float, default=2.0, show_default=True, help="x measured capacity.")
@click.option("--max-queue-depth", type=int, default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Images drawn from this seed.")
@click.option(
    "--model-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Use these exported models instead of the demo models (trained on first use).",
)
@click.option("--keep/--no-keep", default=False,
              help="Keep the throw-away stack's folder (database, logs, Locust output).")  # fmt: skip
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports"), show_default=True)
def load(
    duration: float,
    factor: float,
    max_queue_depth: int,
    seed: int,
    model_dir: Path | None,
    keep: bool,
    out: Path,
) -> None:
    """Measure capacity (images/s decided), then Locust (locustfile.py, its own process) offers
    FACTOR x that for DURATION s on loopback with the stage-1 backlog held to MAX_QUEUE_DEPTH,
    SIGKILL the stage-1 worker half-way, wait for every accepted image and check that the API
    accepts again. Fails if any accepted image is lost."""
    from cascade.ratelimit import Backlog, redis_client

    base = get_settings()
    model_dir = model_dir or demo_model_dir(base)
    with throwaway_stack(
        base,
        model_dir=model_dir,
        tenant="load",
        keep=keep,
        max_queue_depth=max_queue_depth,
        rate_limit_per_minute=10_000_000,  # this run is about backpressure
        broker_visibility_timeout_s=20,  # the killed worker's messages come back
    ) as bench:
        stack = bench.stack
        broker = redis_client(stack.broker_url)
        backlog = Backlog(broker, max_depth=max_queue_depth)
        worker = stack.child("worker-stage1-0")
        swarm_dir = bench.settings.var_dir / "locust"

        def launch(name: str, rate: float, seconds: float) -> Swarm:
            return Swarm(name, stack.url, bench.api_key, rate, seconds, swarm_dir,
                         seed=seed * 10 + len(list(swarm_dir.glob("*-answers")))).start()  # fmt: skip

        def kill_stage1() -> None:
            stack.kill(worker.name)
            stack.respawn(worker.name, worker.args)

        click.echo(f"measuring capacity, then Locust at {factor}x for {duration:g} s…")
        run = run_load_test(
            launch,
            bench.ctx,
            {"backlog": backlog.depth, "stage1_list": lambda: int(broker.llen("stage1"))},
            duration_s=duration,
            factor=factor,
            fault=("SIGKILL of the stage-1 worker mid-run", kill_stage1),
        )
        broker.close()
        click.echo("sending the hostile-upload corpus…")
        hostile = send_corpus(stack.url, bench.api_key)
        shutil.copytree(swarm_dir, out / "load-locust", dirs_exist_ok=True)
        if keep:
            click.echo(f"kept: {bench.settings.var_dir}")
    settings = bench.settings
    result = summarise(run, settings.max_queue_depth, hostile)
    result["models"] = f"{settings.engine} engines from {model_dir}"
    paths = report(result, run, out)
    click.echo(
        f"Locust held {result['load_held_per_s']:.1f} images/s decided (offered "
        f"{result['offered_per_s']:.1f}); accepted {result['accepted']}, refused "
        f"{result['refused']}, lost {result['lost']}; p99 {result['p99_upload_ms']:.0f} ms "
        f"upload, {result['p99_decision_ms']:.0f} ms to decision; peak backlog "
        f"{result['peak_queue_depth']} / {result['depth_limit']}; recovered {result['recovered']}"
    )
    click.echo("report: " + ", ".join(map(str, paths)))
    if result["lost"] or not result["recovered"]:
        raise click.ClickException("accepted images were lost or the API did not recover")


def summarise(run: LoadRun, max_depth: int, hostile: dict[str, int]) -> dict[str, Any]:
    overload = run.phase("overload")
    decided = [t for t in run.decided_at if 0 <= t <= overload.duration_s]
    peak = max((d for _, d in run.depths.get("backlog", [])), default=0)
    refused = sum(p.refused for p in run.phases)
    return {
        # the contract of issue 15
        "accepted": run.accepted,
        "refused": refused,
        "lost": run.lost,
        "p99_upload_ms": round(overload.latency_ms(0.99), 1),
        "p99_decision_ms": round(run.decision_p99_s * 1000, 1),
        "peak_queue_depth": peak,
        "depth_limit": max_depth,
        # what the report carried before (kept: keys are never dropped)
        "capacity_per_s": round(run.capacity_per_s, 2),
        "offered_per_s": round(overload.offered_per_s, 2),
        "load_held_per_s": round(len(decided) / overload.duration_s, 2),
        "upload_p99_ms": round(overload.latency_ms(0.99), 1),
        "decision_p99_s": round(run.decision_p99_s, 2),
        "max_queue_depth": max_depth,
        "peak_stage1_list_length": max(
            (d for _, d in run.depths.get("stage1_list", [])), default=0
        ),
        "load_tool": "locust (locustfile.py, its own process)",
        "faults_survived": run.faults,
        "bad_inputs_tried": hostile["tried"],
        "bad_inputs_refused_cleanly": hostile["refused_cleanly"],
        "images_accepted": run.accepted,
        "images_lost": run.lost,
        "drain_s": round(run.drain_s, 1),
        "recovered": run.recovered,
        "phases": [summary(p) for p in run.phases],
    }


def report(result: dict[str, Any], run: LoadRun, out: Path) -> list[Path]:
    """``load.md``, ``load.json`` (``result``) and ``load.png``."""
    overload = run.phase("overload")
    series = overload.per_second()
    seconds = [s for s, _, _ in series]
    decided = [0] * (int(max(run.decided_at, default=0)) + 1)
    for t in run.decided_at:
        if t >= 0:
            decided[int(t)] += 1
    fig, (a, b) = figure(2, 1, figsize=(10, 6), sharex=True)
    a.plot(seconds, [x for _, x, _ in series], label="accepted (2xx)", color="#2a7")
    a.plot(seconds, [x for _, _, x in series], label="refused (429/503)", color="#c44")
    a.plot(range(len(decided)), decided, label="decided", color="#27a", linestyle="--")
    a.axhline(overload.offered_per_s, color="#888", linestyle=":", label="offered")
    a.set_ylabel("images / s")
    a.legend(loc="upper right")
    for name, color in (("backlog", "#a62"), ("stage1_list", "#6a2")):
        points = run.depths.get(name, [])
        b.plot([t for t, _ in points], [d for _, d in points], color=color, label=name)
    b.axhline(result["depth_limit"], color="#888", linestyle=":", label="depth_limit")
    b.set_ylabel("stage-1 backlog / list")
    b.set_xlabel("seconds into the overload phase")
    b.legend(loc="upper right")
    return write_report(out, "load", result, _markdown(result), fig)


def _markdown(r: dict[str, Any]) -> str:
    bad = (
        f"{r['bad_inputs_tried']} hostile uploads sent after the run, "
        f"{r.get('bad_inputs_refused_cleanly', 'n/a')} refused with a 4xx JSON error"
    )
    faults = ", ".join(r["faults_survived"]) or "none"
    rows = "\n".join(
        f"| {p['name']} | {p['offered_per_s']:g} | {p['offered']} | {p['accepted']} | "
        f"{p['refused']} | {p['failed']} | {_ms(p['http_p99_ms'])} |"
        for p in r["phases"]
    )
    return (
        "# Load and backpressure\n\n"
        "Load from Locust (`locustfile.py`, its own process: single and batch uploads, status "
        f"polling). Capacity measured first ({r['capacity_per_s']:g} images/s decided), then "
        "about twice that offered for the overload phase with the stage-1 backlog (admitted, "
        f"not yet screened) held to {r['depth_limit']}, a stage-1 worker SIGKILLed half-way, "
        "then every accepted image followed to a final state, then a gentle recovery phase. "
        f"Models: {r.get('models', 'n/a')}.\n\n"
        "| figure | value |\n|---|---|\n"
        f"| load held (decided during overload) | {r['load_held_per_s']:g} images/s |\n"
        f"| offered | {r['offered_per_s']:g} images/s |\n"
        f"| upload p99 (accepted, HTTP answer) | {_ms(r['upload_p99_ms'])} |\n"
        f"| upload-to-decision p99 | {r['p99_decision_ms']:g} ms |\n"
        f"| peak stage-1 backlog / limit | {r['peak_queue_depth']} / {r['depth_limit']} |\n"
        f"| peak stage-1 list length | {r['peak_stage1_list_length']} |\n"
        f"| refused (429/503, all phases) | {r['refused']} |\n"
        f"| faults survived | {faults} |\n"
        f"| bad inputs tried | {bad} |\n"
        f"| images accepted / lost | {r['accepted']} / **{r['lost']}** |\n"
        f"| API accepts again after the load | {'yes' if r['recovered'] else '**no**'} |\n\n"
        "| phase | offered/s | offered | accepted | refused | failed | p99 |\n"
        "|---|---|---|---|---|---|---|\n"
        f"{rows}\n\n![load](load.png)\n"
    )


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0f} ms"
