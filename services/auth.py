"""Who is logged in to the web UI, and what their role lets them do.

Passwords are hashed with Werkzeug's scrypt; the session cookie is signed, HttpOnly and
SameSite=Lax (Secure in production). Roles: ``moderator`` labels, ``admin`` does everything,
``ops`` reads dashboards.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import current_app, g, redirect, request, session, url_for
from werkzeug.security import check_password_hash, generate_password_hash

from cascade.context import Context
from cascade.db.schema import Role, User
from cascade.errors import Forbidden, Unauthorized

F = TypeVar("F", bound=Callable[..., Any])


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


def verify_password(user: User, password: str) -> bool:
    return check_password_hash(user.password_hash, password)


def context() -> Context:
    return cast(Context, current_app.extensions["cascade"])


def current_user() -> User | None:
    """The logged-in user, loaded once per request."""
    if "user" not in g:
        user_id = session.get("user_id")
        user = None
        if user_id is not None:
            with context().sessions() as db:
                user = db.get(User, user_id)
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
