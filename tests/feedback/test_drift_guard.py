"""Complete audit windows, and the drift guard as a job: on a real database, end to end."""

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import update

from cascade.context import Context
from cascade.db.schema import Submission, utcnow
from cascade.db.session import session_scope
from cascade.thresholds import load_active
from feedback import rollout, store
from feedback.drift_guard import guard
from feedback.retune import audit_windows, retune
from tests.feedback.factories import add_submissions
from tests.feedback.populations import Population, population

pytestmark = pytest.mark.integration


def _harmful_down(pop: Population, logits: float) -> Population:
    """The same images with harmful ones scoring ``logits`` lower on both stages."""

    def move(s: np.ndarray) -> np.ndarray:
        shifted = np.log(s / (1 - s)) - logits * (pop.label == 1)
        return 1 / (1 + np.exp(-shifted))

    return Population(move(pop.s1), move(pop.s2), pop.label)


def test_a_retune_uses_only_the_complete_part_of_its_window(context: Context) -> None:
    now = utcnow()
    pop = population(300, seed=2)
    add_submissions(context, s1=pop.s1[:100], s2=pop.s2[:100], label=pop.label[:100],
                    created_at=now - timedelta(hours=5))  # fmt: skip
    waiting = add_submissions(context, s1=pop.s1[100:200], s2=pop.s2[100:200],
                              label=pop.label[100:200], review_state="pending",
                              created_at=now - timedelta(hours=3))  # fmt: skip
    add_submissions(context, s1=pop.s1[200:], s2=pop.s2[200:], label=pop.label[200:],
                    created_at=now - timedelta(hours=1))  # fmt: skip
    with context.sessions() as db:
        windows = audit_windows(db, utcnow())
        assert windows.until == now - timedelta(hours=3)  # the oldest audit still unlabelled
        assert store.load_audit_sample(db, since=windows.since, until=windows.until).n == 100
    # An image that failed in the pipeline is not decided traffic: it holds nothing open.
    with session_scope(context.sessions) as db:
        db.execute(update(Submission).where(Submission.id.in_(waiting)).values(state="error"))
    with context.sessions() as db:
        assert store.complete_until(db, since=now - timedelta(days=1)) is None


def test_guard_tightens_on_drift_records_why_and_later_retunes_start_after_it(
    context: Context,
) -> None:
    reference = population(4000, seed=5)
    add_submissions(context, s1=reference.s1, s2=reference.s2, label=reference.label,
                    created_at=utcnow() - timedelta(days=2))  # fmt: skip
    proposal = retune(context, by="beat", reason="scheduled", auto_activate=True)
    assert proposal.activated and proposal.windows is not None
    with context.sessions() as db:
        row = rollout.get_row(db, proposal.version)
        assert row.details["window"]["until"] == proposal.windows.until.isoformat()
        assert row.details["certificate"]["design"] in ("split", "previous window")
    assert guard(context) is None  # nothing labelled after the window yet

    quiet = population(2000, seed=6)
    add_submissions(context, s1=quiet.s1, s2=quiet.s2, label=quiet.label, created_at=utcnow())
    report = guard(context)
    assert report is not None and report.fired_at is None
    with context.sessions() as db:
        assert load_active(db).version == proposal.version

    drifted = _harmful_down(population(3000, seed=7), logits=1.5)
    add_submissions(context, s1=drifted.s1, s2=drifted.s2, label=drifted.label,
                    created_at=utcnow())  # fmt: skip
    report = guard(context)
    assert report is not None and report.fired_at is not None
    with context.sessions() as db:
        active = load_active(db)
        row = rollout.get_row(db, active.version)
        assert active.version > proposal.version
        assert (active.t1_lo, active.t2_lo) == (0.0, 0.0)  # allows nothing automatically
        assert (active.t1_hi, active.t2_hi) == (proposal.optimum.thresholds.t1_hi,
                                                proposal.optimum.thresholds.t2_hi)  # fmt: skip
        assert row.reason.startswith("drift guard: drift: harmful_scores_down")
        assert row.details["drift"]["fired_at"] == report.fired_at
        alarm = rollout.last_drift_alarm(db)
        assert alarm is not None
        assert audit_windows(db, utcnow()).since == alarm
    assert guard(context) is None  # a fallback has nothing left to guard
    after = retune(context, by="beat", reason="scheduled", auto_activate=True)
    assert after.optimum.n_samples == 0 and after.optimum.fallback  # nothing after the alarm
