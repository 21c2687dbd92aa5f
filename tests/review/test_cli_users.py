"""`cascade users create / list / deactivate` against a real database."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cascade.config import get_settings
from cascade.db.schema import User
from services.cli import main


@pytest.fixture
def env(settings, monkeypatch):
    monkeypatch.setenv("CASCADE_DATABASE_URL", settings.database)
    monkeypatch.setenv("CASCADE_BLOB_URL", settings.blobs)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_create_list_deactivate(env, context, client):
    runner = CliRunner()
    created = runner.invoke(
        main,
        ["users", "create", "mia", "--role", "admin"],
        input="long enough pw\nlong enough pw\n",
    )
    assert created.exit_code == 0, created.output
    with context.sessions() as db:
        user = db.scalars(select(User)).one()
    assert (user.username, user.role, user.active) == ("mia", "admin", True)
    assert user.password_hash.startswith("scrypt:") and "long enough" not in user.password_hash

    listed = runner.invoke(main, ["users", "list"])
    assert "mia\tadmin\tactive" in listed.output

    client.get("/review/login")
    with client.session_transaction() as sess:
        token = sess["csrf"]
    ok = client.post(
        "/review/login", data={"username": "mia", "password": "long enough pw", "csrf_token": token}
    )
    assert ok.status_code == 302

    gone = runner.invoke(main, ["users", "deactivate", "mia"])
    assert gone.exit_code == 0
    assert "mia\tadmin\tdeactivated" in runner.invoke(main, ["users", "list"]).output
    assert client.get("/review/", headers={"Accept": "application/json"}).status_code == 401


def test_short_password_and_unknown_user_are_errors(env, context):
    runner = CliRunner()
    short = runner.invoke(main, ["users", "create", "mia"], input="short\nshort\n")
    assert short.exit_code != 0
    assert "at least" in short.output
    missing = runner.invoke(main, ["users", "deactivate", "nobody"])
    assert missing.exit_code != 0
    assert "no user named" in missing.output
