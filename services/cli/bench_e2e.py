"""`cascade bench e2e`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from cascade.config import get_settings


@click.command("e2e")
@click.option("--images", "-n", type=int, default=1000, show_default=True)
@click.option("--clients", type=int, default=8, show_default=True, help="Concurrent uploaders.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports"), show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
def e2e(images: int, clients: int, out: Path, seed: int) -> None:
    """N images from the HTTP API to final decision through Redis and the workers: images/s and
    upload-to-decision latency p50/p95/p99, beside the raw stage-1 engine throughput measured in
    the same run. Uses the demo models (trained on first use) and a throw-away database."""
    from cascade.apikeys import create_key
    from cascade.context import Context
    from models.demo import ensure_demo_models
    from services.bench_e2e import (
        collect,
        make_images,
        raw_engine_throughput,
        summarise,
        upload_all,
        write_report,
    )
    from services.stack import Stack

    base = get_settings()
    ensure_demo_models(base.model_dir, base.var_dir / "data")
    with tempfile.TemporaryDirectory(prefix="cascade-bench-") as tmp:
        settings = base.model_copy(
            update={
                "var_dir": Path(tmp),
                "database_url": None,
                "blob_url": None,
                "broker_url": None,
                "audit_rate": 0.0,
                "model_dir": base.model_dir.resolve(),
            }
        )
        click.echo("generating images…")
        data = make_images(images, seed)
        click.echo("measuring the raw stage-1 engine…")
        raw = raw_engine_throughput(settings, data)
        click.echo(f"raw stage-1 engine: {raw:.1f} images/s; starting the stack…")
        with Stack(settings, beat=False) as stack:
            ctx = Context.from_settings(settings)
            with ctx.sessions() as session:
                key = create_key(session, tenant_name="bench")
                session.commit()
            ids, refused = upload_all(stack.url, key.key, data, clients)
            rows = collect(ctx, ids, timeout_s=600)
            ctx.close()
        result = summarise(rows, refused, raw, settings)
    paths = write_report(result, rows, out)
    click.echo(f"end to end {result.e2e_images_per_s:.1f} images/s = {result.ratio:.2f}× raw; "
               f"latency p50 {result.latency_p50_ms:.0f} ms, p99 {result.latency_p99_ms:.0f} ms")  # fmt: skip
    click.echo("report: " + ", ".join(map(str, paths)))
