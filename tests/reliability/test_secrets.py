"""No known secrets: an installation makes its own on first use (var/secrets.json, mode 0600),
a placeholder never signs anything, and a placeholder secret is refused beyond loopback in
every env. The old default was public: a session cookie signed with it must open nothing."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from flask import Flask
from pydantic import ValidationError

from cascade.config import (
    SECRETS_FILE,
    Settings,
    refuse_public_placeholders,
    with_local_secrets,
)
from services.embedded import free_port
from tests.reliability.upstack import ROOT, UpProcess, nobody_listens, up_env
from tests.review.factories import make_user

OLD_PLACEHOLDER = "dev-insecure-secret"


def test_unset_secrets_are_made_once_private_and_kept(tmp_path: Path) -> None:
    first = with_local_secrets(Settings(env="test", var_dir=tmp_path))
    path = tmp_path / SECRETS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.secret_key) >= 64 and first.secret_key != first.callback_secret
    again = with_local_secrets(Settings(env="test", var_dir=tmp_path))
    assert (again.secret_key, again.callback_secret) == (first.secret_key, first.callback_secret)
    other = with_local_secrets(Settings(env="test", var_dir=tmp_path / "elsewhere"))
    assert other.secret_key != first.secret_key  # no two installations share one


def test_a_placeholder_never_signs_and_a_set_secret_is_kept(tmp_path: Path) -> None:
    placeholder = with_local_secrets(Settings(var_dir=tmp_path, secret_key=OLD_PLACEHOLDER))
    assert placeholder.secret_key not in (OLD_PLACEHOLDER, "")
    own = "x" * 64
    kept = with_local_secrets(Settings(var_dir=tmp_path, secret_key=own, callback_secret=own))
    assert kept.secret_key == own and kept.callback_secret == own
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(env="production", broker_url="redis://x", database_url="sqlite://")


@pytest.mark.parametrize("env", ["dev", "test", "production"])
def test_a_placeholder_secret_is_refused_beyond_loopback(env: str, tmp_path: Path) -> None:
    extra = {"broker_url": "redis://x", "database_url": "sqlite://"} if env == "production" else {}
    if env == "production":  # production refuses placeholders anywhere, loopback included
        with pytest.raises(ValidationError):
            Settings(env=env, secret_key=OLD_PLACEHOLDER, callback_secret="y" * 64, **extra)
        return
    public = Settings(env=env, var_dir=tmp_path, secret_key=OLD_PLACEHOLDER)
    for host in ("0.0.0.0", "192.168.1.10", "::"):
        with pytest.raises(ValueError, match="placeholder"):
            refuse_public_placeholders(public, host)
    refuse_public_placeholders(public, "127.0.0.1")  # loopback: var/secrets.json stands in
    refuse_public_placeholders(Settings(env=env, var_dir=tmp_path), "0.0.0.0")  # unset: fine


@pytest.mark.parametrize("command", [["serve", "--host", "0.0.0.0"], ["up"]])
def test_the_cli_refuses_to_listen_publicly_with_a_placeholder(command, tmp_path: Path) -> None:
    port = free_port()
    env = up_env(Settings(var_dir=tmp_path), tmp_path / "var", tmp_path / "models")
    env.update(CASCADE_SECRET_KEY=OLD_PLACEHOLDER)
    if command == ["up"]:
        env["CASCADE_HOST"] = "0.0.0.0"  # serve is told by its --host flag
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *command, "--port", str(port)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "placeholder" in done.stderr, done.stderr[-2000:]
    assert nobody_listens(port)


def _cookie(app_secret: str, data: dict[str, object]) -> str:
    """A session cookie exactly as Flask signs one with ``app_secret``."""
    app = Flask(__name__)
    app.secret_key = app_secret
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    assert serializer is not None
    return str(serializer.dumps(data))


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cascade_up_makes_its_own_secrets_and_refuses_a_forged_cookie(
    settings, context, tiny_models, tmp_path
) -> None:
    admin = make_user(context, "root", role="admin")
    up = UpProcess(up_env(settings, tmp_path / "var", tiny_models), tmp_path / "up.log").start()
    try:
        path = tmp_path / "var" / SECRETS_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        real = json.loads(path.read_text())["secret_key"]
        session = {"user_id": admin, "csrf": "forged"}
        for secret, opens in ((OLD_PLACEHOLDER, False), (real, True)):
            page = requests.get(
                f"{up.url}/review/admin",
                cookies={"session": _cookie(secret, session)},
                headers={"Accept": "application/json"},
                allow_redirects=False,
                timeout=30,
            )
            assert (page.status_code == 200) is opens, (opens, page.status_code)
            if not opens:
                assert page.status_code in (302, 401, 403), page.status_code
    finally:
        up.signal(signal.SIGTERM)
        assert up.wait() == 0
