"""The broker unreachable at upload time: the API answers 503 with Retry-After and keeps no
half-accepted submission behind (one the client never got an id for, waiting for a sweep)."""

from __future__ import annotations

from sqlalchemy import func, select

from cascade.config import Settings
from cascade.context import Context
from cascade.db.schema import Submission
from services.app import create_app
from services.embedded import free_port
from tests.integration.conftest import png_bytes


def test_upload_while_the_broker_is_down_is_refused_and_not_kept(
    settings: Settings, api_key: str
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens: a real refused connection
    ctx = Context.from_settings(settings.model_copy(update={"broker_url": dead}))
    client = create_app(context=ctx).test_client()
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "image/png"}
    response = client.post("/v1/images", data=png_bytes(1), headers=headers)
    assert response.status_code == 503, response.get_json()
    assert int(response.headers["Retry-After"]) >= 1
    assert response.get_json()["error"]["code"] == "unavailable"
    with ctx.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Submission)) == 0
    ctx.close()
