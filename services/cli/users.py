"""`cascade users`: accounts for the review UI (moderators, admins, ops)."""

from __future__ import annotations

import click
from sqlalchemy import select

from cascade.context import Context
from cascade.db.schema import Role, User
from cascade.db.session import session_scope
from services.auth import hash_password

MIN_PASSWORD = 10


@click.group()
def users() -> None:
    """Create, list and deactivate review UI accounts."""


@users.command()
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    default=Role.MODERATOR.value,
    show_default=True,
    help="moderator labels; admin also rules on conflicts; ops only watches.",
)
@click.password_option(help="Prompted for (twice) when not given.")
def create(name: str, role: str, password: str) -> None:
    """Create user NAME (or reactivate NAME with a new password and role)."""
    if len(password) < MIN_PASSWORD:
        raise click.BadParameter(f"use at least {MIN_PASSWORD} characters", param_hint="password")
    with Context.opened() as ctx, session_scope(ctx.sessions) as db:
        user = db.scalars(select(User).where(User.username == name)).first()
        if user is None:
            user = User(username=name)
            db.add(user)
        user.password_hash = hash_password(password)
        user.role = role
        user.active = True
    click.echo(f"user {name} ({role}) is ready")


@users.command("list")
def list_users() -> None:
    """List accounts: name, role, active."""
    with Context.opened() as ctx, ctx.sessions() as db:
        for user in db.scalars(select(User).order_by(User.username)):
            state = "active" if user.active else "deactivated"
            click.echo(f"{user.username}\t{user.role}\t{state}")


@users.command()
@click.argument("name")
def deactivate(name: str) -> None:
    """Deactivate user NAME: they are logged out at their next request and cannot log in."""
    with Context.opened() as ctx, session_scope(ctx.sessions) as db:
        user = db.scalars(select(User).where(User.username == name)).first()
        if user is None:
            raise click.ClickException(f"no user named {name!r}")
        user.active = False
    click.echo(f"user {name} is deactivated")
