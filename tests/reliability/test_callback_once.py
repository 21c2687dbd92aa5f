"""A callback POSTed when the database goes away before the POST is recorded: the retry records
it and does not call the receiver again (the soak's PostgreSQL restart saw 5 duplicates in a run
before this)."""

from __future__ import annotations

import pytest

import cascade.callbacks
import cascade.runtime
import cascade.tasks
from cascade.celery_app import create_celery
from cascade.context import Context
from cascade.db.schema import Submission
from cascade.decisions import finalize
from cascade.intake import accept
from cascade.policy import Decider, Outcome
from cascade.tasknames import CALLBACK_TASK
from tests.integration.conftest import png_bytes
from tests.integration.test_faults import Receiver

pytestmark = pytest.mark.integration


def test_a_posted_callback_whose_record_failed_is_not_posted_again(
    settings, tenant_id, monkeypatch
) -> None:
    settings = settings.model_copy(
        update={"callback_allow_private": True, "broker_url": "redis://127.0.0.1:1/0"}
    )
    receiver = Receiver(settings.callback_secret)
    ctx = Context.from_settings(settings)
    with ctx.sessions() as session:
        sid = accept(ctx, session, tenant_id=tenant_id, data=png_bytes(77),
                     callback_url=receiver.url).submission.id  # fmt: skip
        session.commit()
    with ctx.sessions() as session:  # decided as a stage worker decides it: the stored row
        sub = session.get(Submission, sid)
        assert sub is not None
        assert finalize(sub, outcome=Outcome.ALLOW, decider=Decider.STAGE1)
        session.commit()

    real, failures = cascade.callbacks.record_delivery, []

    def record_fails_twice(*args: object) -> None:
        # after the POST, then in the record-only retry (retried again, still record-only)
        if len(failures) < 2:
            failures.append(args)
            raise ConnectionError("the database went away")
        real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(cascade.callbacks, "record_delivery", record_fails_twice)
    monkeypatch.setattr(cascade.runtime, "_runtime", None)  # this test's settings, not another's
    app = create_celery(settings)
    app.conf.task_always_eager = True
    app.set_default()
    assert cascade.tasks.callback.name == CALLBACK_TASK
    app.tasks[CALLBACK_TASK].apply(args=(sid,)).get()

    assert len(failures) == 2, "the record did not fail twice: the test tested less"
    assert receiver.counts[sid] == 1
    with ctx.sessions() as session:
        assert session.get(Submission, sid).callback_sent_at is not None  # type: ignore[union-attr]
    receiver.close()
    ctx.close()
