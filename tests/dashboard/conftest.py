"""Dashboard fixtures: generated traffic in the test database (written by the benchmark's own
bulk loader, roll-ups included) and logged-in users."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cascade.context import Context
from cascade.db.schema import User
from services.auth import hash_password
from services.bench.scale_data import Generated, generate
from services.bench.scale_db import prices, seed_small_tables
from services.bench.scale_load import load

PASSWORD = "correct horse battery staple"


@pytest.fixture
def generated(context: Context) -> Generated:
    """3,000 decisions over the last two days, with ledger rows, roll-ups, an audit sample
    (partly labelled, partly waiting for review) and threshold changes."""
    end = datetime.now(UTC) - timedelta(seconds=5)
    gen = generate(n=3000, start=end - timedelta(days=2), end=end, seed=3, audit_rate=0.05)
    seed_small_tables(context.engine, gen.changes)
    load(context.engine, gen, prices(context.settings), first=False)
    return gen


def make_user(context: Context, role: str, name: str | None = None) -> int:
    with context.sessions() as session:
        user = User(
            username=name or f"{role}-user", password_hash=hash_password(PASSWORD), role=role
        )
        session.add(user)
        session.commit()
        return user.id
