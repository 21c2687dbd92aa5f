"""Dashboard fixtures: generated decisions in the test database and logged-in users."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cascade.context import Context
from cascade.db.schema import User
from services.auth import hash_password
from services.bench.dashboard_data import Generated, generate, load

PASSWORD = "correct horse battery staple"


@pytest.fixture
def generated(context: Context) -> Generated:
    """3,000 decisions over the last two days, with ledger rows and threshold changes."""
    gen = generate(n=3000, days=2, end=datetime.now(UTC) - timedelta(seconds=5), seed=3)
    load(context.engine, gen, context.settings)
    return gen


def make_user(context: Context, role: str, name: str | None = None) -> int:
    with context.sessions() as session:
        user = User(
            username=name or f"{role}-user", password_hash=hash_password(PASSWORD), role=role
        )
        session.add(user)
        session.commit()
        return user.id
