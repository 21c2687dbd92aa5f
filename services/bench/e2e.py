"""End-to-end benchmark: HTTP upload → Redis → stage workers → the cascade's answer.

In one run, on the same images, per database (SQLite, and PostgreSQL with ``--database-url``):

* the stack at full load (``clients`` uploaders back to back): images/s and upload-to-answer
  latency, with the CPU each component spent (``services.bench.cpu``);
* the stack at half of that rate (open loop): ``latency_p99_ms_at_half_load``;
* the in-process ceiling on the same images, stage 2 for the same ones the stack escalated
  (``services.bench.ceiling``): ``ratio_to_ceiling`` = end to end / ceiling;
* (first database only) a py-spy profile of the stack under load: a flame graph and top frames.

The answer is a decision, or the hand-off to human review for what the machines escalated.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
from sqlalchemy import func, select

from cascade.config import Settings, get_settings
from cascade.context import Context
from cascade.db.schema import PENDING_STATES, BatchRecord, State, Submission
from models.progress import progress
from services.bench import ceiling as ceiling_mod
from services.bench.cpu import CpuMeter, PidSource, PostgresBackends, tree
from services.bench.e2e_report import E2EResult, report
from services.bench.profile import Profile, profiled
from services.bench.throwaway import Throwaway, demo_model_dir, throwaway_stack


def make_images(n: int, seed: int) -> list[bytes]:
    from models.synthetic import generate_image

    return [
        generate_image(np.random.default_rng(seed + i), harmful=i % 7 == 0)[0] for i in range(n)
    ]


def upload_all(
    url: str, key: str, images: list[bytes], clients: int, rate: float | None = None
) -> list[str | None]:
    """Upload ``images`` with ``clients`` threads: back to back, or (``rate``) each at its slot
    of an open-loop schedule. Returns the submission ids in image order (None: refused)."""
    from cascade.client import CascadeClient, CascadeError

    client = CascadeClient(url, key)
    started = time.perf_counter()

    def one(i: int) -> str | None:
        if rate:
            wait = started + i / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        try:
            return client.submit(images[i]).id
        except CascadeError:
            return None

    with ThreadPoolExecutor(clients) as pool:
        done = progress(pool.map(one, range(len(images))), total=len(images), desc="upload")
        ids = list(done)
    client.close()
    return ids


def collect(ctx: Context, ids: list[str], timeout_s: float) -> list[Any]:
    """The rows of ``ids`` once none is pending any more (or at the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with ctx.sessions() as session:
            rows: list[Any] = []
            for i in range(0, len(ids), 500):
                rows += session.execute(
                    select(Submission.id, Submission.state, Submission.created_at,
                           Submission.decided_at, Submission.stage1_at, Submission.stage2_at,
                           Submission.s2)
                    .where(Submission.id.in_(ids[i : i + 500]))
                ).all()  # fmt: skip
        if not any(r.state in PENDING_STATES for r in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(1.0)


def answered_at(row: Any) -> Any:
    """When the machines were done with it: decided, or handed to a human."""
    if row.state == State.DECIDED:
        return row.decided_at
    if row.state == State.REVIEW:
        return row.stage2_at or row.stage1_at
    return None


def latencies_ms(rows: list[Any]) -> np.ndarray:
    return np.array(
        [(answered_at(r) - r.created_at).total_seconds() * 1000 for r in rows if answered_at(r)]
    )


def summarise(rows: list[Any], refused: int, raw: float, settings: Settings, db: str) -> E2EResult:
    done = [answered_at(r) for r in rows if answered_at(r)]
    start = min(r.created_at for r in rows)
    seconds = (max(done) - start).total_seconds() if done else float("nan")
    lat = latencies_ms(rows)
    e2e = len(rows) / seconds if seconds > 0 else 0.0
    pct = (lambda q: float(np.percentile(lat, q))) if len(lat) else (lambda q: float("nan"))
    return E2EResult(
        images=len(rows), decided=sum(r.state == State.DECIDED for r in rows),
        review=sum(r.state == State.REVIEW for r in rows),
        errors=sum(r.state == State.ERROR for r in rows), refused=refused,
        seconds=seconds, e2e_images_per_s=e2e, raw_stage1_images_per_s=raw,
        ratio=e2e / raw if raw else 0.0, latency_p50_ms=pct(50), latency_p95_ms=pct(95),
        latency_p99_ms=pct(99), stage1_batch=settings.stage1_batch_size,
        stage2_share=sum(r.s2 is not None for r in rows) / max(len(rows), 1), database=db,
    )  # fmt: skip


def mean_batch(ctx: Context) -> dict[str, float]:
    """Images per batch so far, per stage (the batching knobs at work)."""
    with ctx.sessions() as session:
        rows = session.execute(
            select(BatchRecord.stage, func.avg(BatchRecord.size)).group_by(BatchRecord.stage)
        ).all()
    return {str(stage): round(float(size), 1) for stage, size in rows}


def components(run: Throwaway, db: PostgresBackends | None) -> dict[str, PidSource]:
    """The stack's parts as pid sources for the CPU meter."""
    stack = run.stack

    def of(name: str) -> PidSource:
        return lambda: tree(stack.child(name).process.pid)

    redis = stack.redis
    return {
        "api": of("web"),
        "stage1_worker": of("worker-stage1-0"),
        "stage2_worker": of("worker-stage2-0"),
        "redis": (lambda: [redis.process.pid]) if redis else (lambda: []),
        "database": db if db is not None else (lambda: []),
        "other_workers": of("worker-cpu"),
        "benchmark_client": lambda: [os.getpid()],
    }


@contextmanager
def fresh_database(url: str | None) -> Iterator[str | None]:
    """A new, empty PostgreSQL database on the server of ``url`` (dropped afterwards), or
    None for the throw-away SQLite file."""
    if not url:
        yield None
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"cascade_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Workload:
    images: list[bytes]  # the measured run (and the ceiling's)
    half: list[bytes]  # the half-load run (new bytes: no answers from the cache)
    profile: list[bytes]  # the profiled run
    clients: int


def run_database(
    base: Settings, model_dir: Path, work: Workload, raw: float, *,
    database_url: str | None, profile_svg: Path | None, overrides: dict[str, Any],
) -> tuple[E2EResult, list[Any], Profile | None]:  # fmt: skip
    """Full load, half load and (``profile_svg``) a profiled run on one database, and the
    ceiling on the same images: right after the full load (the stack idle, same minutes), again
    at the end, and once more with no stack at all; the fastest pass counts."""
    load_before = os.getloadavg()
    with (
        fresh_database(database_url) as url,
        throwaway_stack(
            base, model_dir=model_dir, tenant="bench", database_url=url, **overrides
        ) as run,
    ):
        result, ids, rows = _full_load(run, work, raw, url)
        by_id = {r.id: r for r in rows}
        escalated = [bool(i and by_id[i].s2 is not None) for i in ids]
        # Gated at stage 1: what stage 1 decided (no audits here); at stage 2: what it decided
        # (its OOD hand-offs to humans, ~0.1 %, are not told apart from escalations here).
        gated = (
            [bool(i) and not e for i, e in zip(ids, escalated, strict=True)],
            [e and by_id[i].state == State.DECIDED for i, e in zip(ids, escalated, strict=True)],
        )
        ceiling = ceiling_mod.CeilingRun(model_dir, run.settings, work.images, escalated, gated)
        ceiling.measure()
        ceiling.measure_gates()
        _half_load(run, work, result)
        prof = _profile(run, work, profile_svg) if profile_svg else None
        ceiling.measure()
    ceiling.measure()
    result.load_average = [round(x, 2) for x in (*load_before, *os.getloadavg())]
    ceiling.record(result)
    return result, rows, prof


def _full_load(
    run: Throwaway, work: Workload, raw: float, url: str | None
) -> tuple[E2EResult, list[str | None], list[Any]]:
    """The measured run: every image back to back, the CPU of every component metered."""
    pg = PostgresBackends(url) if url else None
    meter = CpuMeter(components(run, pg)).start()
    ids = upload_all(run.stack.url, run.api_key, work.images, work.clients)
    rows = collect(run.ctx, [i for i in ids if i], timeout_s=600)
    cpu = meter.stop()
    if pg is not None:
        pg.close()
    db = "postgresql" if url else "sqlite"
    result = summarise(rows, ids.count(None), raw, run.settings, db)
    result.cpu_ms_per_image = {k: v * 1000 / max(len(rows), 1) for k, v in cpu.items()}
    result.mean_batch = mean_batch(run.ctx)
    return result, ids, rows


def _half_load(run: Throwaway, work: Workload, result: E2EResult) -> None:
    """Half the measured rate, open loop, on new images: the p99 a not-saturated stack gives."""
    rate = result.e2e_images_per_s / 2
    ids = upload_all(run.stack.url, run.api_key, work.half, 2 * work.clients, rate)
    lat = latencies_ms(collect(run.ctx, [i for i in ids if i], timeout_s=600))
    result.half_load_images_per_s = rate
    result.latency_p99_ms_at_half_load = float(np.percentile(lat, 99)) if len(lat) else math.nan


def _profile(run: Throwaway, work: Workload, svg: Path) -> Profile:
    stack = run.stack
    roots = {"api": "web", "stage1_worker": "worker-stage1-0", "stage2_worker": "worker-stage2-0"}
    pids = {name: stack.child(child).process.pid for name, child in roots.items()}
    with profiled(pids, svg) as result:
        ids = upload_all(stack.url, run.api_key, work.profile, work.clients)
        collect(run.ctx, [i for i in ids if i], timeout_s=600)
    return result()


def _overrides(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as settings overrides, validated by ``Settings``."""
    update = dict(p.split("=", 1) for p in pairs)
    checked = Settings(**{k: v for k, v in update.items()})  # type: ignore[arg-type]
    return {k: getattr(checked, k) for k in update}


@click.command("e2e")
@click.option("--images", "-n", type=int, default=1000, show_default=True)
@click.option("--clients", type=int, default=8, show_default=True, help="Concurrent uploaders.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports"), show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--database-url", default=None,
              help="Also run on this PostgreSQL server (a fresh database, dropped afterwards).")  # fmt: skip
@click.option("--model-dir", type=click.Path(path_type=Path, exists=True), default=None,
              help="Use these models as they are (default: the demo models, trained on first use).")  # fmt: skip
@click.option("--profile/--no-profile", default=True, show_default=True,
              help="py-spy flame graph of the stack under load (first database only).")  # fmt: skip
@click.option("--set", "settings_", multiple=True, metavar="KEY=VALUE",
              help="A setting for the stack, e.g. --set stage1_batch_size=16 (repeatable).")  # fmt: skip
def e2e(
    images: int, clients: int, out: Path, seed: int, database_url: str | None,
    model_dir: Path | None, profile: bool, settings_: tuple[str, ...],
) -> None:  # fmt: skip
    """N images from the HTTP API to the cascade's answer through Redis and the workers, beside
    the in-process ceiling on the same images: images/s, ratio to the ceiling, latency p50/p95/p99
    (and p99 at half load), CPU per component, a profile. SQLite, and PostgreSQL if given."""
    base = get_settings()
    model_dir = (model_dir or demo_model_dir(base)).resolve()
    overrides = _overrides(settings_)
    click.echo(f"load average {os.getloadavg()}; generating images…")
    work = Workload(make_images(images, seed), make_images(images // 2, seed + images),
                    make_images(images // 4, seed + 2 * images), clients)  # fmt: skip
    raw = ceiling_mod.raw_stage1(model_dir, work.images, batch=base.stage1_batch_size,
                                 max_pixels=base.max_pixels, kind=base.engine)  # fmt: skip
    click.echo(f"raw stage-1 engine: {raw:.1f} images/s")
    results: list[E2EResult] = []
    first_rows: list[Any] | None = None
    prof: Profile | None = None
    for url in [None, database_url] if database_url else [None]:
        svg = out / "e2e-profile.svg" if profile and not results else None
        result, rows, p = run_database(base, model_dir, work, raw, database_url=url,
                                       profile_svg=svg, overrides=overrides)  # fmt: skip
        results.append(result)
        first_rows, prof = first_rows or rows, prof or p
        click.echo(f"{result.database}: {result.e2e_images_per_s:.1f} images/s end to end, "
                   f"ceiling {result.ceiling_images_per_s:.1f}: ratio {result.ratio_to_ceiling:.2f}; "
                   f"p99 {result.latency_p99_ms:.0f} ms, at half load {result.latency_p99_ms_at_half_load:.0f} ms")  # fmt: skip
    paths = report(results, latencies_ms(first_rows or []), prof, out, model_dir=model_dir,
                   settings=base.model_copy(update=overrides))  # fmt: skip
    click.echo("report: " + ", ".join(map(str, paths)))
