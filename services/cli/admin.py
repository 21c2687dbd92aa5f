"""``cascade db ...`` (migrations) and ``cascade keys ...`` (API keys of upload services).

Settings come from the environment (``CASCADE_*``); tests pass a ``Settings`` as the click
context's ``obj`` instead.
"""

from __future__ import annotations

from pathlib import Path

import click

from cascade.config import Settings, get_settings


def _settings(ctx: click.Context) -> Settings:
    obj = ctx.find_object(Settings)
    return obj if obj is not None else get_settings()


@click.group()
def db() -> None:
    """Database migrations, roll-ups and retention."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Alembic revision.")
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Bring the database (CASCADE_DATABASE_URL, else var/cascade.db) to the latest schema."""
    from cascade.db.session import upgrade

    settings = _settings(ctx)
    upgrade(settings.database, revision)
    click.echo(f"database is at {revision}")


@db.command("rollup")
@click.pass_context
def db_rollup(ctx: click.Context) -> None:
    """Roll up every decision the roll-ups do not count yet (beat does this every minute; run
    it after a bulk import)."""
    from cascade import rollup
    from cascade.context import Context
    from cascade.db.session import session_scope

    total = 0
    with Context.opened(_settings(ctx)) as context:
        while True:
            with session_scope(context.sessions) as session:
                n = rollup.catch_up(session)
            total += n
            if n == 0:
                break
            click.echo(f"rolled up {total:,} decisions", err=True)
    click.echo(f"rolled up {total:,} decisions; nothing left unrolled")


@db.command("prune")
@click.option("--days", type=int, default=None,
              help="Keep raw rows this many days (default: the retention policy's 30).")  # fmt: skip
@click.option("--archive", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the pruned submissions to a .jsonl.gz file in this folder first.")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Count what would go; change nothing.")
@click.option("--chunk", type=click.IntRange(min=1), default=5_000, show_default=True,
              help="Submissions per transaction.")  # fmt: skip
@click.pass_context
def db_prune(
    ctx: click.Context, days: int | None, archive: Path | None, dry_run: bool, chunk: int
) -> None:
    """Apply the retention policy (docs/retention.md): delete raw submissions, their images and
    blobs older than --days; roll-ups, audit rows, labels and labelled errors are kept."""
    from cascade import retention
    from cascade.context import Context

    try:
        cutoff = retention.cutoff_for(retention.DEFAULT_DAYS if days is None else days)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--days") from None
    with Context.opened(_settings(ctx)) as context:
        if dry_run:
            with context.sessions() as session:
                n = retention.count_prunable(session, cutoff)
            click.echo(f"{n:,} submissions created before {cutoff:%Y-%m-%d %H:%M} UTC would go")
            return
        report = retention.prune(
            context.sessions, cutoff=cutoff, delete_blob=context.blobs.delete,
            archive=archive, chunk=chunk,
        )  # fmt: skip
    click.echo(
        f"pruned {report.submissions:,} submissions, {report.images:,} images, "
        f"{report.blobs:,} blobs, {report.ledger_minutes:,} ledger minutes and "
        f"{report.fine_cells:,} 5-minute roll-up cells created before "
        f"{cutoff:%Y-%m-%d %H:%M} UTC"
        + (f"; archived to {report.archive}" if report.archive else "")
    )
    for error in report.blob_errors[:20]:
        click.echo(f"blob not deleted: {error}", err=True)


@click.group()
def keys() -> None:
    """Create, list and revoke API keys of upload services."""


@keys.command("create")
@click.option("--tenant", required=True, help="Tenant name (created if new).")
@click.option("--rate-limit", type=click.IntRange(min=1), default=None,
              help="Requests per minute for this key (default: CASCADE_RATE_LIMIT_PER_MINUTE).")  # fmt: skip
@click.pass_context
def keys_create(ctx: click.Context, tenant: str, rate_limit: int | None) -> None:
    """Issue a key and print it once: only its hash is stored, it cannot be shown again."""
    from cascade.apikeys import create_key
    from cascade.context import Context
    from cascade.db.session import session_scope

    try:
        with Context.opened(_settings(ctx)) as context, session_scope(context.sessions) as session:
            issued = create_key(session, tenant_name=tenant, rate_limit_per_minute=rate_limit)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(issued.key)
    click.echo(
        f"key {issued.prefix} for tenant {tenant!r}: store it now, it is not shown again",
        err=True,
    )


@keys.command("list")
@click.pass_context
def keys_list(ctx: click.Context) -> None:
    """Every key: prefix, tenant, state, rate limit, creation time (never the key itself)."""
    from cascade.apikeys import list_keys
    from cascade.context import Context

    with Context.opened(_settings(ctx)) as context, context.sessions() as session:
        rows = list_keys(session)
    click.echo(f"{'PREFIX':<10} {'TENANT':<24} {'STATE':<8} {'LIMIT/MIN':>9}  CREATED")
    for row, tenant in rows:
        state = "active" if row.active else "revoked"
        limit = str(row.rate_limit_per_minute or "default")
        created = row.created_at.strftime("%Y-%m-%d %H:%M")
        click.echo(f"{row.prefix:<10} {tenant[:24]:<24} {state:<8} {limit:>9}  {created}")


@keys.command("revoke")
@click.argument("prefix")
@click.pass_context
def keys_revoke(ctx: click.Context, prefix: str) -> None:
    """Revoke the key(s) with PREFIX (the part after ``csk_``). Running API processes refuse it
    within CASCADE_API_KEY_CACHE_S seconds (5 by default: they trust a key seen valid that
    long)."""
    from cascade.apikeys import revoke_key
    from cascade.context import Context
    from cascade.db.session import session_scope

    with Context.opened(_settings(ctx)) as context, session_scope(context.sessions) as session:
        count = revoke_key(session, prefix=prefix)
    if count == 0:
        raise click.ClickException(f"no active key with prefix {prefix!r}")
    click.echo(f"revoked {count} key(s) with prefix {prefix}")
