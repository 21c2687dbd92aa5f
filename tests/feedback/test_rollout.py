from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import func, select

from cascade.context import Context
from cascade.db.schema import BatchRecord, LabelledError, ThresholdSetRow, utcnow
from cascade.db.session import session_scope
from cascade.errors import Conflict, NotFound
from cascade.policy import DEFAULT_THRESHOLDS
from cascade.thresholds import load_active
from feedback import rollout, store
from feedback.costs import stage_costs
from feedback.error_alerts import check_errors
from feedback.retune import retune
from feedback.score_alerts import check_score_drift
from tests.feedback.factories import add_submissions
from tests.feedback.populations import population

pytestmark = pytest.mark.integration


@pytest.fixture
def audited(context: Context) -> Context:
    pop = population(3000, seed=5)
    add_submissions(context, s1=pop.s1, s2=pop.s2, label=pop.label, p=0.02)
    return context


def _active_versions(ctx: Context) -> list[int]:
    with ctx.sessions() as db:
        rows = db.scalars(select(ThresholdSetRow).where(ThresholdSetRow.status == "active"))
        return [r.version for r in rows]


def test_load_audit_sample_keeps_only_labelled_audited_images(context: Context) -> None:
    pop = population(40, seed=1)
    add_submissions(context, s1=pop.s1[:10], s2=pop.s2[:10], label=pop.label[:10], p=0.05)
    add_submissions(context, s1=pop.s1[10:20], s2=pop.s2[10:20], label=pop.label[10:20],
                    review_state="pending")  # fmt: skip
    add_submissions(context, s1=pop.s1[20:30], s2=None, label=pop.label[20:30])
    add_submissions(context, s1=pop.s1[30:], s2=pop.s2[30:], audit=False)
    with context.sessions() as db:
        sample = store.load_audit_sample(db)
    assert sample.n == 10
    assert np.allclose(np.sort(sample.s1), np.sort(pop.s1[:10]))
    assert np.array_equal(np.sort(sample.label), np.sort(pop.label[:10]))
    assert np.all(sample.p == 0.05)


def test_retune_stores_a_proposal_with_its_provenance(audited: Context) -> None:
    proposal = retune(audited, by="alice", reason="first tune", auto_activate=False)
    assert proposal.optimum.certified and not proposal.activated
    assert proposal.optimum.estimate is not None
    with audited.sessions() as db:
        row = rollout.get_row(db, proposal.version)
        assert row.status == "proposed"
        assert (row.created_by, row.reason) == ("alice", "first tune")
        assert row.n_samples == 3000
        assert row.alpha == audited.settings.alpha and row.delta == audited.settings.delta
        assert row.miss_rate_bound is not None and row.miss_rate_bound <= row.alpha
        assert row.expected_cost == pytest.approx(proposal.optimum.estimate.cost)
        assert row.details["certified"] and row.details["estimate"]["n"] == 3000
        assert row.details["history"][0]["by"] == "alice"
        # Proposing changes nothing in force.
        assert rollout.active_thresholds(db) == DEFAULT_THRESHOLDS


def test_activate_and_rollback_keep_exactly_one_active(audited: Context) -> None:
    v1 = retune(audited, by="a", reason="one", auto_activate=False).version
    v2 = retune(audited, by="a", reason="two", auto_activate=False, alpha=0.02).version
    with session_scope(audited.sessions) as db:
        rollout.activate(db, v1, by="admin")
    assert _active_versions(audited) == [v1]
    with session_scope(audited.sessions) as db:
        rollout.activate(db, v2, by="admin")
    assert _active_versions(audited) == [v2]
    with audited.sessions() as db:
        assert load_active(db).version == v2  # what the workers read
        assert rollout.get_row(db, v1).status == "retired"
    with session_scope(audited.sessions) as db:
        assert rollout.rollback(db, by="ops").version == v1
    assert _active_versions(audited) == [v1]
    with audited.sessions() as db:
        rolled = rollout.get_row(db, v2)
        assert rolled.status == "rejected"
        assert [e["event"] for e in rolled.details["history"]] == [
            "proposed", "activated", "rolled back"
        ]  # fmt: skip
        assert rolled.created_by == "a" and rolled.reason == "two"  # provenance kept
    with session_scope(audited.sessions) as db:
        assert rollout.rollback(db, by="ops") == DEFAULT_THRESHOLDS
    assert _active_versions(audited) == []
    with session_scope(audited.sessions) as db, pytest.raises(Conflict):
        rollout.rollback(db, by="ops")
    with session_scope(audited.sessions) as db, pytest.raises(Conflict):
        rollout.activate(db, v2, by="admin")  # rejected sets stay out
    with session_scope(audited.sessions) as db, pytest.raises(NotFound):
        rollout.activate(db, 999, by="admin")


def test_defaults_can_be_put_back_and_rolled_forward(audited: Context) -> None:
    v1 = retune(audited, by="a", reason="one", auto_activate=True).version
    assert _active_versions(audited) == [v1]
    with session_scope(audited.sessions) as db:
        assert rollout.activate(db, 0, by="admin") == DEFAULT_THRESHOLDS
    assert _active_versions(audited) == []
    with session_scope(audited.sessions) as db:
        assert rollout.rollback(db, by="admin").version == v1
    assert _active_versions(audited) == [v1]
    with session_scope(audited.sessions) as db, pytest.raises(Conflict):
        rollout.reject(db, v1, by="admin")


def test_no_audit_data_gives_a_fallback_that_is_never_auto_activated(context: Context) -> None:
    proposal = retune(context, by="beat", reason="scheduled", auto_activate=True)
    assert proposal.optimum.fallback and not proposal.activated
    assert _active_versions(context) == []
    with context.sessions() as db:
        row = rollout.get_row(db, proposal.version)
        assert row.details["fallback"] and row.t1_lo == 0.0 and row.t2_lo == 0.0


def test_measured_batches_set_the_compute_cost(context: Context) -> None:
    with session_scope(context.sessions) as db:
        db.add(BatchRecord(stage="stage1", device="cpu", size=100, device_seconds=0.5))
        db.add(BatchRecord(stage="stage1", device="cpu", size=100, device_seconds=1.5))
    with context.sessions() as db:
        measured = store.measured_dollars_per_image(db, context.settings)
    assert measured == {"stage1": pytest.approx(2.0 * 0.10 / 3600 / 200)}
    costs = stage_costs(context.settings, measured)
    assert costs.stage1 == measured["stage1"]
    assert costs.stage2 > 0 and costs.human == context.settings.human_review_cost


def _errors(ctx: Context, ids: list[str], kind: str) -> None:
    with session_scope(ctx.sessions) as db:
        db.add_all(LabelledError(submission_id=i, kind=kind, source="appeal") for i in ids)


def test_labelled_errors_above_prediction_alert_and_retune_tighter(audited: Context) -> None:
    v1 = retune(audited, by="a", reason="one", auto_activate=True).version
    traffic = add_submissions(audited, s1=np.full(2000, 0.01), audit=False,
                              created_at=utcnow() - timedelta(minutes=5))  # fmt: skip
    quiet = check_errors(audited, window=timedelta(hours=1), retune_on_alert=True)
    assert not any(c.alert for c in quiet)
    _errors(audited, traffic[:40], "miss")
    checks = {c.kind: c for c in check_errors(audited, window=timedelta(hours=1))}
    assert checks["miss"].alert and checks["miss"].observed == 40
    assert not checks["false_block"].alert
    with audited.sessions() as db:
        newest = rollout.list_rows(db)[0]
        active = rollout.active_thresholds(db)
    assert newest.version > v1 and "labelled errors" in newest.reason
    assert newest.t1_lo <= active.t1_lo and newest.t2_lo <= active.t2_lo  # tighten only
    # The next check in the same window alerts again but does not retune again.
    assert any(c.alert for c in check_errors(audited, window=timedelta(hours=1)))
    with audited.sessions() as db:
        assert rollout.list_rows(db)[0].version == newest.version


def test_score_drift_is_detected(context: Context) -> None:
    rng = np.random.default_rng(0)
    old = utcnow() - timedelta(days=3)
    add_submissions(context, s1=rng.beta(1, 8, 3000), audit=False, created_at=old)
    add_submissions(context, s1=rng.beta(1, 8, 1000), audit=False)
    steady = check_score_drift(context)
    assert steady is not None and not steady.alert
    add_submissions(context, s1=rng.beta(3, 3, 1000), audit=False)
    shifted = check_score_drift(context)
    assert shifted is not None and shifted.alert and shifted.psi > 0.2


def test_count_errors_groups_by_kind(context: Context) -> None:
    ids = add_submissions(context, s1=np.full(3, 0.5), audit=False)
    _errors(context, ids[:2], "miss")
    _errors(context, ids[2:], "false_block")
    with context.sessions() as db:
        now = utcnow()
        counts = store.count_errors(
            db, since=now - timedelta(hours=1), until=now + timedelta(seconds=1)
        )
        assert counts == {"miss": 2, "false_block": 1}
        assert db.scalar(select(func.count(LabelledError.id))) == 3
