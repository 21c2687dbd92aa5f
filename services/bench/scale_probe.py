"""Measurements of `cascade bench scale` that must start cold: each runs in a fresh process.

``python -m services.bench.scale_probe <what> --url URL ...`` prints one JSON line. A fresh
process has an empty SQLAlchemy engine and pool, so it opens a new database connection (on
PostgreSQL a new backend, whose catalog caches are empty; on SQLite a new page cache); for
SQLite, ``--evict`` also drops the database files' pages from the OS page cache first
(``posix_fadvise(DONTNEED)``: allowed on files one owns, no root needed). PostgreSQL's shared
buffers and the OS cache of its files cannot be emptied from here (not our files, not root):
on PostgreSQL "cold" is a new process and a new backend, nothing more.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import click

from cascade.config import Settings


def evict(url: str) -> list[str]:
    """Drop the OS page cache of a SQLite database's files (nothing for other databases)."""
    if not url.startswith("sqlite:///"):
        return []
    done = []
    for suffix in ("", "-wal", "-shm"):
        path = Path(url.removeprefix("sqlite:///") + suffix)
        if path.exists():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            done.append(str(path))
    return done


def _context(url: str) -> Any:
    from cascade.context import Context

    return Context.from_settings(Settings.model_validate({"env": "test", "database_url": url}))


@click.group()
def probe() -> None:
    """One cold measurement per process (JSON on stdout)."""


@probe.command("endpoint")
@click.option("--url", required=True)
@click.option("--path", "path_", required=True, help="e.g. /dashboard/api/cost?span=30d")
@click.option("--user-id", type=int, required=True)
@click.option("--evict/--no-evict", "evict_", default=True)
def endpoint(url: str, path_: str, user_id: int, evict_: bool) -> None:
    """Time one dashboard request: the first this process makes, on a new connection."""
    from services.app import create_app

    context = _context(url)
    app = create_app(context=context)
    client = app.test_client()
    with client.session_transaction() as s:
        s["user_id"] = user_id
    evicted = evict(url) if evict_ else []
    t0 = time.perf_counter()
    response = client.get(path_, headers={"Accept": "application/json"})
    ms = (time.perf_counter() - t0) * 1000
    context.close()
    if response.status_code != 200:
        raise click.ClickException(f"{path_}: HTTP {response.status_code}")
    click.echo(json.dumps({"ms": ms, "evicted": evicted}))


@probe.command("review")
@click.option("--url", required=True)
@click.option("--users", default="1,2,3,4,5", show_default=True)
@click.option("--evict/--no-evict", "evict_", default=True)
def review(url: str, users: str, evict_: bool) -> None:
    """Next item + lease for each moderator in turn (each a claim of the full path: nothing
    held), then the leases given back so the queue is as it was."""
    from sqlalchemy import update

    from cascade.db.schema import ReviewItem
    from cascade.review import claim_next

    context = _context(url)
    ids = [int(u) for u in users.split(",")]
    evict(url) if evict_ else None
    times, items = [], []
    for user_id in ids:
        with context.sessions() as session:
            t0 = time.perf_counter()
            item = claim_next(session, user_id=user_id, lease_s=60)
            session.commit()
            times.append((time.perf_counter() - t0) * 1000)
            items.append(item.id if item else None)
    with context.sessions() as session:
        session.execute(
            update(ReviewItem)
            .where(ReviewItem.lease_owner.in_(ids))
            .values(lease_owner=None, lease_expires_at=None)
        )
        session.commit()
    context.close()
    click.echo(json.dumps({"ms": times, "median_ms": statistics.median(times), "items": items}))


@probe.command("near-duplicate")
@click.option("--url", required=True)
@click.option("--runs", type=int, default=5)
@click.option("--distance", type=int, default=3)
@click.option("--evict/--no-evict", "evict_", default=True)
def near_duplicate(url: str, runs: int, distance: int, evict_: bool) -> None:
    """The near-duplicate lookup as intake does it, for images already stored (their own hash
    with a few bits flipped is looked up), ``runs`` times."""
    from services.bench.scale_near import lookups

    context = _context(url)
    evict(url) if evict_ else None
    result = lookups(context, runs=runs, distance=distance)
    context.close()
    click.echo(json.dumps(result))


if __name__ == "__main__":
    probe()
