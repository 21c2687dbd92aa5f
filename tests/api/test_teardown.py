"""A request whose database session cannot be closed (its connection was cut under it, as in a
PostgreSQL restart) still gets the answer it was given, not a 500."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from services.web import db


def test_a_failed_session_close_does_not_replace_the_answer(app: Any) -> None:
    closed: list[bool] = []

    @app.get("/_test/teardown")
    def view() -> tuple[str, int]:
        session = db()
        session.execute(text("SELECT 1"))

        real_close = session.close

        def cut_connection() -> None:
            real_close()  # the connection goes back to the pool; the caller still sees an error
            closed.append(True)
            raise ConnectionError("terminating connection due to administrator command")

        session.close = cut_connection  # type: ignore[method-assign]
        return "answered", 200

    r = app.test_client().get("/_test/teardown")
    assert closed, "the session was never closed: the test tested nothing"
    assert (r.status_code, r.get_data(as_text=True)) == (200, "answered")
