"""End-to-end benchmark: HTTP upload → Redis → stage workers → final decision.

Beside it, in the same run on the same machine, the raw stage-1 engine throughput (inference on
preprocessed batches, nothing else). Their ratio is the share of the engine's speed that the
product keeps after orchestration: HTTP, validation, storage, queueing, decoding, writes.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
from sqlalchemy import select

from cascade.config import Settings, get_settings
from cascade.context import Context
from cascade.db.schema import PENDING_STATES, State, Submission
from models.progress import progress
from services.bench.report import figure, write_report
from services.bench.throwaway import demo_model_dir, throwaway_stack


@dataclass
class E2EResult:
    images: int
    decided: int
    review: int
    errors: int
    refused: int
    seconds: float
    e2e_images_per_s: float
    raw_stage1_images_per_s: float
    ratio: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    stage1_batch: int
    stage2_share: float


def raw_engine_throughput(
    settings: Settings, images: list[bytes], *, seconds: float = 5.0
) -> float:
    """Images/s of the stage-1 engine alone at the configured batch size (warm, preprocessed)."""
    from models.engines import load_engine
    from models.preprocess import decode_image, preprocess_batch

    engine = load_engine(settings.model_dir / "stage1", kind=settings.engine)
    batch_size = settings.stage1_batch_size
    imgs = [decode_image(b, max_pixels=settings.max_pixels) for b in images[:batch_size]]
    batch = preprocess_batch(imgs, engine.preprocess)
    engine.predict(batch)  # warm-up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        engine.predict(batch)
        done += len(batch)
    return done / (time.perf_counter() - started)


def make_images(n: int, seed: int) -> list[bytes]:
    from models.synthetic import generate_image

    return [
        generate_image(np.random.default_rng(seed + i), harmful=i % 7 == 0)[0] for i in range(n)
    ]


def upload_all(url: str, key: str, images: list[bytes], clients: int) -> tuple[list[str], int]:
    from cascade.client import CascadeClient, CascadeError

    client = CascadeClient(url, key)

    def one(data: bytes) -> str | None:
        try:
            return client.submit(data).id
        except CascadeError:
            return None

    with ThreadPoolExecutor(clients) as pool:
        results = list(
            progress(pool.map(one, images), total=len(images), desc="upload", unit="img")
        )
    ids = [r for r in results if r]
    return ids, len(results) - len(ids)


def collect(ctx: Context, ids: list[str], timeout_s: float) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        with ctx.sessions() as session:
            rows: list[Any] = []
            for i in range(0, len(ids), 500):
                rows += session.execute(
                    select(Submission.state, Submission.created_at, Submission.decided_at,
                           Submission.stage1_at, Submission.s2)
                    .where(Submission.id.in_(ids[i : i + 500]))
                ).all()  # fmt: skip
        if not any(r.state in PENDING_STATES for r in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.25)


def summarise(rows: list[Any], refused: int, raw: float, settings: Settings) -> E2EResult:
    decided = [r for r in rows if r.state == State.DECIDED]
    done_at = [r.decided_at or r.stage1_at for r in rows if (r.decided_at or r.stage1_at)]
    start = min(r.created_at for r in rows)
    seconds = (max(done_at) - start).total_seconds() if done_at else float("nan")
    lat = np.array([(r.decided_at - r.created_at).total_seconds() * 1000 for r in decided])
    e2e = len(rows) / seconds if seconds > 0 else 0.0
    pct = (lambda q: float(np.percentile(lat, q))) if len(lat) else (lambda q: float("nan"))
    return E2EResult(
        images=len(rows), decided=len(decided),
        review=sum(r.state == State.REVIEW for r in rows),
        errors=sum(r.state == State.ERROR for r in rows), refused=refused,
        seconds=seconds, e2e_images_per_s=e2e, raw_stage1_images_per_s=raw,
        ratio=e2e / raw if raw else 0.0, latency_p50_ms=pct(50), latency_p95_ms=pct(95),
        latency_p99_ms=pct(99), stage1_batch=settings.stage1_batch_size,
        stage2_share=sum(r.s2 is not None for r in rows) / max(len(rows), 1),
    )  # fmt: skip


def report(result: E2EResult, rows: list[Any], out: Path) -> list[Path]:
    """``e2e.md``, ``e2e.json`` (the fields of ``E2EResult``) and ``e2e.png``."""
    lat = [(r.decided_at - r.created_at).total_seconds() * 1000 for r in rows if r.decided_at]
    fig, (a, b) = figure(1, 2, figsize=(11, 4))
    a.bar(["raw stage-1 engine", "end to end"],
          [result.raw_stage1_images_per_s, result.e2e_images_per_s], color=["#888", "#2a7"])  # fmt: skip
    a.set_ylabel("images / s")
    a.set_title(f"throughput (ratio {result.ratio:.2f}; target ≥ 0.7)")
    b.hist(lat, bins=40, color="#27a")
    for q, style in ((50, "-"), (95, "--"), (99, ":")):
        b.axvline(np.percentile(lat, q), color="k", linestyle=style, label=f"p{q}")
    b.set_xlabel("upload → automatic decision (ms)")
    b.set_title("latency")
    b.legend()
    return write_report(out, "e2e", asdict(result), _markdown(result), fig)


def _markdown(r: E2EResult) -> str:
    return (
        "# End-to-end benchmark\n\n"
        f"{r.images} images uploaded over HTTP ({r.refused} refused), stage-1 batch "
        f"{r.stage1_batch}; {r.stage2_share:.0%} reached stage 2.\n\n"
        "| figure | value |\n|---|---|\n"
        f"| end-to-end throughput | {r.e2e_images_per_s:.1f} images/s |\n"
        f"| raw stage-1 engine throughput (same run) | {r.raw_stage1_images_per_s:.1f} images/s |\n"
        f"| ratio (target ≥ 0.7, aim 0.8) | {r.ratio:.2f} |\n"
        f"| latency p50 / p95 / p99 | {r.latency_p50_ms:.0f} / {r.latency_p95_ms:.0f} / "
        f"{r.latency_p99_ms:.0f} ms |\n"
        f"| decided / in review / errors | {r.decided} / {r.review} / {r.errors} |\n\n"
        "![e2e](e2e.png)\n"
    )


@click.command("e2e")
@click.option("--images", "-n", type=int, default=1000, show_default=True)
@click.option("--clients", type=int, default=8, show_default=True, help="Concurrent uploaders.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports"), show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
def e2e(images: int, clients: int, out: Path, seed: int) -> None:
    """N images from the HTTP API to final decision through Redis and the workers: images/s and
    upload-to-decision latency p50/p95/p99, beside the raw stage-1 engine throughput measured in
    the same run. Uses the demo models (trained on first use) and a throw-away database."""
    base = get_settings()
    model_dir = demo_model_dir(base)
    click.echo("generating images…")
    data = make_images(images, seed)
    click.echo("measuring the raw stage-1 engine…")
    raw = raw_engine_throughput(base.model_copy(update={"model_dir": model_dir.resolve()}), data)
    click.echo(f"raw stage-1 engine: {raw:.1f} images/s; starting the stack…")
    with throwaway_stack(base, model_dir=model_dir, tenant="bench") as run:
        ids, refused = upload_all(run.stack.url, run.api_key, data, clients)
        rows = collect(run.ctx, ids, timeout_s=600)
    result = summarise(rows, refused, raw, run.settings)
    paths = report(result, rows, out)
    click.echo(f"end to end {result.e2e_images_per_s:.1f} images/s = {result.ratio:.2f}× raw; "
               f"latency p50 {result.latency_p50_ms:.0f} ms, p99 {result.latency_p99_ms:.0f} ms")  # fmt: skip
    click.echo("report: " + ", ".join(map(str, paths)))
