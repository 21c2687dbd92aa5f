"""Running the product: `cascade up`, `serve`, `worker`, `beat` (and `demo`, in demo.py)."""

from __future__ import annotations

import logging
import os
import sys

import click

from cascade.config import Settings, get_settings, refuse_public_placeholders


def _settings() -> Settings:
    """The process's settings; a refused configuration is a clean error, not a traceback."""
    try:
        return get_settings()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@click.command()
@click.option("--host", default=None, help="Interface to bind (default: CASCADE_HOST, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: CASCADE_PORT, 8000).")
@click.option("--workers", type=int, default=2, show_default=True, help="gunicorn processes.")
@click.option("--threads", type=int, default=8, show_default=True, help="Threads per process.")
def serve(host: str | None, port: int | None, workers: int, threads: int) -> None:
    """Run the web app (upload API /v1, review UI /review, /dashboard, /metrics) on gunicorn."""
    settings = _settings()
    host = host or settings.host
    try:  # the secrets as configured, before var/secrets.json stood in for unset ones
        refuse_public_placeholders(Settings(), host)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    bind = f"{host}:{port or settings.port}"
    args = [
        sys.executable, "-m", "gunicorn", "services.wsgi:app",
        "--bind", bind, "--workers", str(workers), "--threads", str(threads),
        "--worker-class", "gthread", "--timeout", "60", "--graceful-timeout", "10",
        "--access-logfile", "-", "--config", "python:services.gunicorn_conf",
    ]  # fmt: skip
    os.execv(sys.executable, args)


@click.command()
@click.option("--queues", "-Q", default="stage1,stage2,callbacks,maintenance", show_default=True,
              help="Comma-separated queues to consume.")  # fmt: skip
@click.option("--pool", "-P", type=click.Choice(["solo", "threads", "prefork"]), default="solo",
              show_default=True,
              help="solo for stage workers (CUDA cannot start before a prefork fork).")  # fmt: skip
@click.option("--concurrency", "-c", type=int, default=1, show_default=True)
@click.option("--name", "-n", default=None, help="Worker node name (default: celery@%h).")
@click.option("--metrics-port", type=int, default=None,
              help="Serve Prometheus /metrics here (default CASCADE_METRICS_PORT; 0: off).")  # fmt: skip
@click.option("--loglevel", "-l", default="info", show_default=True)
def worker(
    queues: str, pool: str, concurrency: int, name: str | None, metrics_port: int | None,
    loglevel: str,
) -> None:  # fmt: skip
    """Run a Celery worker. Stage workers load their model once, warm it up, then say ready."""
    from services.worker import run_worker

    _logging(loglevel)
    run_worker(
        _settings(), queues=queues.split(","), pool=pool, concurrency=concurrency,
        name=name, metrics_port=metrics_port, loglevel=loglevel,
    )  # fmt: skip


@click.command()
@click.option("--loglevel", "-l", default="info", show_default=True)
def beat(loglevel: str) -> None:
    """Run the periodic scheduler: retune, drift and error checks, stale-message sweeps."""
    from services.worker import run_beat

    _logging(loglevel)
    run_beat(_settings(), loglevel=loglevel)


@click.command()
@click.option("--port", type=int, default=None, help="Web port (default: CASCADE_PORT, 8000).")
def up(port: int | None) -> None:
    """Start everything on this machine with no set-up: Redis (CASCADE_BROKER_URL if given,
    else a local redis-server), SQLite under ./var, the stage workers, beat and the web app.

    Needs trained models under CASCADE_MODEL_DIR (./var/models): `cascade demo` makes them.
    """
    from services.stack import Stack, supervised

    _logging("info")
    settings = _settings()
    _require_models(settings.model_dir)
    stack = Stack(settings)
    stack.port = port or settings.port
    click.echo("starting Cascade (Redis, workers, web)…")
    with supervised(stack):
        click.echo(f"Cascade is up at {stack.url}  (review: {stack.url}/review, "
                   f"dashboard: {stack.url}/dashboard, API docs: {stack.url}/v1/docs)")  # fmt: skip
        click.echo(f"logs: {settings.var_dir / 'logs'} — Ctrl-C (or SIGTERM) to stop")
        stack.run_until_interrupted()
    click.echo("stopped")


def _require_models(model_dir: os.PathLike[str]) -> None:
    from pathlib import Path

    missing = [s for s in ("stage1", "stage2") if not (Path(model_dir) / s / "meta.json").exists()]
    if missing:
        raise click.ClickException(
            f"no trained model for {', '.join(missing)} under {model_dir}; run `cascade demo` "
            "(trains demo models) or `cascade train` + `cascade export` first"
        )


@click.command()
@click.option("--images", type=int, default=8000, show_default=True,
              help="Synthetic uploads before the retune (its audit labels certify the retune: "
                   "at alpha 0.01 a useful set needs about 1,600 of them).")  # fmt: skip
@click.option("--after-images", type=int, default=3000, show_default=True,
              help="Synthetic uploads after the retune (0: skip the second round); large enough "
                   "that its shares have intervals of about a percentage point.")  # fmt: skip
@click.option("--harmful-rate", type=float, default=0.05, show_default=True,
              help="Share of harmful images in the traffic (realistic: a few percent).")  # fmt: skip
@click.option("--audit-rate", type=float, default=0.3, show_default=True,
              help="Share of all images audited (runs every stage and goes to a moderator).")  # fmt: skip
@click.option("--alpha", type=float, default=0.01, show_default=True,
              help="Per-image miss-rate bound for the retune: 20 % of the default prevalence, "
                   "looser than the 5 % `cascade bench cascade` checks on 20,000 images, "
                   "because one demo round audits about a thousand.")  # fmt: skip
@click.option("--moderator-accuracy", type=float, default=0.98, show_default=True,
              help="Chance that a simulated moderator's label, or a simulated admin's ruling, "
                   "is right.")  # fmt: skip
@click.option("--double-label-rate", type=float, default=1.0, show_default=True,
              help="Share of review items two moderators label (a disagreement goes to an "
                   "admin). One moderator's 2 % of mistakes on 95 % benign traffic would make a "
                   "quarter of the 'harmful' audit labels wrong, and the certificate counts "
                   "each as a miss.")  # fmt: skip
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--fresh", is_flag=True,
              help="Start from an empty database, blob store and queue (the embedded state "
                   "under var/); the trained models stay. Without it a run continues the "
                   "previous run's state: its thresholds, labels and images.")  # fmt: skip
@click.option("--keep-running/--exit", default=None,
              help="Keep the app running after the summary (default: only in a terminal).")  # fmt: skip
def demo(
    images: int, after_images: int, harmful_rate: float, audit_rate: float, alpha: float,
    moderator_accuracy: float, double_label_rate: float, seed: int, fresh: bool,
    keep_running: bool | None,
) -> None:  # fmt: skip
    """The whole product on synthetic traffic: train (first run) or reuse the demo models,
    start the stack, push images through the HTTP API, play the moderators, retune the
    thresholds from the audit labels, then push a second round under the new thresholds and
    compare the two rounds."""
    from services.demo import DemoRun, ensure_demo_models_verbose, forget_embedded_state
    from services.embedded import free_port, port_is_free
    from services.stack import Stack, supervised

    _logging("warning")
    settings = _settings().model_copy(
        update={"audit_rate": audit_rate, "alpha": alpha, "double_label_rate": double_label_rate}
    )
    if fresh:
        removed = forget_embedded_state(settings)
        click.echo(f"fresh start: deleted {', '.join(p.name for p in removed) or 'nothing'}")
    click.echo(f"[1/4] demo models under {settings.model_dir} (trained on the first run)")
    ensure_demo_models_verbose(settings)
    click.echo("[2/4] starting the stack (Redis, stage workers, beat, web)")
    stack = Stack(settings)
    stack.port = settings.port if port_is_free(settings.port) else free_port()
    with supervised(stack, timeout_s=300):
        run = DemoRun(stack, harmful_rate=harmful_rate, accuracy=moderator_accuracy, seed=seed)
        click.echo(f"[3/4] round 1: {images} images under the current thresholds")
        before = run.round(images, "before the retune")
        proposal = run.retune()
        after = None
        if after_images and proposal.activated:
            click.echo(f"[4/4] round 2: {after_images} images under the new thresholds")
            after = run.round(after_images, "after the retune")
        run.print_summary(before, after, proposal)
        if keep_running is None:
            keep_running = sys.stdin.isatty()
        if keep_running:
            click.echo("running — Ctrl-C (or SIGTERM) to stop")
            stack.run_until_interrupted()
