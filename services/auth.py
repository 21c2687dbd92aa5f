"""Who is logged in to the web UI, and what their role lets them do.

Passwords are hashed with Werkzeug's scrypt; the session cookie is signed, HttpOnly and
SameSite=Lax (Secure in production). Roles: ``moderator`` labels, ``admin`` does everything,
``ops`` reads dashboards.

CSRF: each session holds a random token; every state-changing request to a protected blueprint
(``csrf_protect(bp)``) must echo it in the form field ``csrf_token`` or the ``X-CSRF-Token``
header. Missing → 400, wrong → 403. Templates get ``csrf_token()``.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from functools import cache, wraps
from typing import Any, TypeVar, cast

from flask import Blueprint, g, redirect, request, session, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from cascade.db.schema import Role, User
from cascade.errors import BadRequest, Forbidden, Unauthorized
from services.web import db

F = TypeVar("F", bound=Callable[..., Any])


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


def verify_password(user: User, password: str) -> bool:
    return check_password_hash(user.password_hash, password)


@cache
def _dummy_hash() -> str:
    # Checked when the user does not exist, so a wrong name costs as long as a wrong password.
    return hash_password(secrets.token_hex(16))


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with this name and password, or None (never says which part was wrong)."""
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        check_password_hash(_dummy_hash(), password)
        return None
    if not verify_password(user, password) or not user.active:
        return None
    return user


def login_user(user: User) -> None:
    """Start a fresh session for ``user`` (a new session and CSRF token: no fixation)."""
    session.clear()
    session["user_id"] = user.id
    session["csrf"] = secrets.token_urlsafe(32)
    g.pop("user", None)


def logout_user() -> None:
    session.clear()
    g.pop("user", None)


def csrf_token() -> str:
    """This session's CSRF token, created on first use."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def check_csrf() -> None:
    """Refuse a state-changing request that does not carry this session's token."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token")
    if not sent:
        raise BadRequest("missing CSRF token; reload the page and try again")
    expected = session.get("csrf")
    if not expected or not hmac.compare_digest(str(sent), str(expected)):
        raise Forbidden("invalid CSRF token; reload the page and try again")


def csrf_protect(bp: Blueprint) -> None:
    """Check the CSRF token on every unsafe request to ``bp``; give its templates the token."""
    bp.before_request(check_csrf)
    bp.context_processor(lambda: {"csrf_token": csrf_token})


def safe_next(target: str | None, default: str) -> str:
    """A post-login redirect target on this site only (no open redirects)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def current_user() -> User | None:
    """The logged-in user, loaded once per request."""
    if "user" not in g:
        user_id = session.get("user_id")
        user = None
        if user_id is not None:
            user = db().get(User, user_id)
            if user is not None and not user.active:
                user = None
        g.user = user
    return cast(User | None, g.user)


def require_role(*roles: str) -> Callable[[F], F]:
    """Views for logged-in users of the given roles (admins pass every check).

    Browsers are sent to the login page; JSON clients get 401/403.
    """

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                if request.accept_mimetypes.accept_html and not request.is_json:
                    return redirect(url_for("review.login", next=request.full_path))
                raise Unauthorized("log in first")
            if roles and user.role not in roles and user.role != Role.ADMIN:
                raise Forbidden(f"this needs one of the roles: {', '.join(roles)}")
            return view(*args, **kwargs)

        return cast(F, wrapped)

    return decorator
