"""`cascade bench all` (what `make bench` runs)."""

from __future__ import annotations

import time
from pathlib import Path

import click

ORDER = ("engines", "cascade", "loop", "peers", "e2e", "load", "scale")  # peers reads cascade.json


@click.command("all")
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports"), show_default=True)
@click.pass_context
def all_benches(ctx: click.Context, out: Path) -> None:
    """Run every benchmark into --out and write an index (reports/README.md). A failing
    benchmark does not stop the others; the command fails at the end if any did."""
    from services.cli.bench import bench

    failed: list[str] = []
    rows: list[str] = []
    for name in ORDER:
        command = bench.get_command(ctx, name)
        assert command is not None
        click.echo(f"\n=== bench {name} ===")
        started = time.perf_counter()
        try:
            ctx.invoke(command, out=out)
            status = "ok"
        except Exception as exc:  # report it, carry on with the next benchmark
            click.echo(f"bench {name} failed: {exc}", err=True)
            failed.append(name)
            status = f"FAILED: {exc}"
        rows.append(f"| [{name}]({name}.md) | {status} | {time.perf_counter() - started:.0f} s |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text(
        "# Benchmark reports\n\n| benchmark | status | time |\n|---|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )
    if failed:
        raise click.ClickException(f"benchmarks failed: {', '.join(failed)}")
