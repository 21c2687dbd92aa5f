"""The database away for a few seconds: the API answers 503 with Retry-After (never a 500),
workers retry their batches, and every accepted image is still decided."""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy.engine import make_url

from cascade.config import Settings
from cascade.context import Context
from cascade.db.schema import State
from services.app import create_app
from services.embedded import free_port
from tests.integration.test_stage_workers import activate
from tests.reliability.conftest import Submitter, final_states, wait_all_final

PG = os.environ.get("CASCADE_TEST_DATABASE_URL")


def test_api_answers_503_with_retry_after_when_the_database_cannot_be_reached(
    settings: Settings, api_key: str
) -> None:
    # A real connection attempt to a port nobody listens on: the driver's own error, no mock.
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone?connect_timeout=2"
    ctx = Context.from_settings(settings.model_copy(update={"database_url": dead}))
    client = create_app(context=ctx).test_client()
    auth = {"Authorization": f"Bearer {api_key}"}
    for response in (
        client.get("/v1/images/00000000-0000-0000-0000-000000000000", headers=auth),
        client.post("/v1/images", data=b"\x89PNG", headers=auth | {"Content-Type": "image/png"}),
    ):
        assert response.status_code == 503, response.get_data(as_text=True)
        assert int(response.headers["Retry-After"]) >= 1
        body = response.get_json()
        assert body["error"]["code"] == "unavailable"
        assert "psycopg" not in response.get_data(as_text=True)  # no internals leak
    ctx.close()


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(
    not PG or not PG.startswith("postgresql"),
    reason="needs CASCADE_TEST_DATABASE_URL (PostgreSQL): the outage is a TCP proxy in front of it",
)
def test_database_outage_mid_run_gets_503s_and_loses_no_image(
    stack_settings, make_stack, make_proxy, context, api_key
):
    direct = make_url(stack_settings.database)
    proxy = make_proxy(direct.host or "127.0.0.1", direct.port or 5432)
    proxied = direct.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    settings = stack_settings.model_copy(update={"database_url": proxied})
    ctx = Context.from_settings(stack_settings)  # the test reads the database directly
    activate(ctx, 1, t1_lo=0.0, t1_hi=1.0, t2_lo=0.5, t2_hi=0.5)
    stack = make_stack(settings, beat=False)
    submitter = Submitter(stack.url, api_key, first_seed=20_000).start()
    try:
        submitter.wait_for(15, 60)
        proxy.pause()  # cut every connection, refuse new ones
        time.sleep(4)
        during = list(submitter.statuses)
        proxy.resume()
        resumed = len(submitter.accepted)
        submitter.wait_for(resumed + 15, 90)
    finally:
        submitter.stop()
    assert 503 in during, f"the outage was not seen by the API: {sorted(set(during))}"
    assert not [s for s in submitter.statuses if s >= 500 and s != 503], submitter.statuses
    assert submitter.retry_after_missing == 0
    accepted = list(submitter.accepted)
    wait_all_final(ctx, accepted, 120, "every accepted image final after outage")
    subs = final_states(ctx, accepted)
    assert all(s.state == State.DECIDED for s in subs.values()), {
        s.id: (s.state, s.error) for s in subs.values() if s.state != State.DECIDED
    }
    ctx.close()
