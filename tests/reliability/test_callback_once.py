"""A callback POSTed when the database goes away before the POST is recorded: the retry records
it and does not call the receiver again (the soak's PostgreSQL restart saw 5 duplicates in a run
before this)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait

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
from cascade.tasks import retry_countdown
from tests.integration.conftest import png_bytes
from tests.integration.test_faults import Receiver

pytestmark = pytest.mark.integration


def _decided(ctx: Context, tenant_id: int, callback_url: str, *, seed: int) -> str:
    """A submission with a callback URL, decided as a stage worker decides it (callback due)."""
    with ctx.sessions() as session:
        sid = accept(ctx, session, tenant_id=tenant_id, data=png_bytes(seed),
                     callback_url=callback_url).submission.id  # fmt: skip
        session.commit()
    with ctx.sessions() as session:
        sub = session.get(Submission, sid)
        assert sub is not None
        assert finalize(sub, outcome=Outcome.ALLOW, decider=Decider.STAGE1)
        session.commit()
    return sid


def test_a_posted_callback_whose_record_failed_is_not_posted_again(
    settings, tenant_id, monkeypatch
) -> None:
    settings = settings.model_copy(
        update={"callback_allow_private": True, "broker_url": "redis://127.0.0.1:1/0"}
    )
    receiver = Receiver(settings.callback_secret)
    ctx = Context.from_settings(settings)
    sid = _decided(ctx, tenant_id, receiver.url, seed=77)

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


def test_two_copies_of_one_callback_running_together_post_once(
    settings, tenant_id, monkeypatch
) -> None:
    """Redis hands a message out again once it is held unacknowledged past the visibility
    timeout; the soak saw both copies of a retried callback run in the same millisecond and
    POST twice. Here both copies read the row before either POSTs (a barrier holds them there):
    one claims the attempt and POSTs, the other does not (False, or on SQLite a lock error that
    a retry turns into "already sent")."""
    settings = settings.model_copy(update={"callback_allow_private": True})
    receiver = Receiver(settings.callback_secret)
    ctx = Context.from_settings(settings)
    sid = _decided(ctx, tenant_id, receiver.url, seed=78)
    both_read = threading.Barrier(2, timeout=60)
    real_check = cascade.callbacks.check_callback_url

    def check_then_wait(*args: object, **kwargs: object) -> None:
        real_check(*args, **kwargs)  # type: ignore[arg-type]
        both_read.wait()

    monkeypatch.setattr(cascade.callbacks, "check_callback_url", check_then_wait)
    with ThreadPoolExecutor(2) as pool:
        copies = [pool.submit(cascade.callbacks.deliver, ctx, sid) for _ in range(2)]
        wait(copies, timeout=120)
    sent = [f.result() for f in copies if f.exception() is None]
    assert sent.count(True) == 1, [f.exception() or f.result() for f in copies]
    assert receiver.counts[sid] == 1
    assert cascade.callbacks.deliver(ctx, sid) is False  # recorded: a third copy skips it
    assert receiver.counts[sid] == 1
    receiver.close()
    ctx.close()


def test_a_retry_never_waits_past_half_the_visibility_timeout(settings) -> None:
    """A countdown longer than the visibility timeout gets the waiting message handed out again
    (two copies run together); the backoff is capped below it, and still grows."""
    short = settings.model_copy(update={"broker_visibility_timeout_s": 10})
    assert all(0 <= retry_countdown(short, r) <= 5 for r in range(30))
    assert max(retry_countdown(settings, 12) for _ in range(50)) > 5  # default 300 s: 150 s
