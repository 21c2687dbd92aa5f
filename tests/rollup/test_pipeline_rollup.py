"""The stage workers' batches keep the roll-ups equal to their decisions: every decision a
batch commits is rolled up in the same transaction, a batch that dies before its commit leaves
neither, and a redelivered batch adds nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from cascade import pipeline, rollup
from cascade.context import Context
from cascade.db.schema import DecisionRollup, LatencyRollup, Submission
from tests.feedback.factories import issue_key
from tests.integration.test_stage_workers import activate
from tests.rollup.test_rollup_model import _direct_cells, _rows, _table
from tests.unit.test_pipeline_batch import _runner, _submit


def _assert_rolled_up(context: Context) -> None:
    with context.sessions() as session:
        assert session.scalar(select(Submission.id).where(rollup.unrolled())) is None
        decided, latency = _direct_cells(_rows(session))
        keys = ["grain_s", "start_s", "decider", "audit"]
        assert _table(session, DecisionRollup, keys, "decided") == decided
        assert _table(session, LatencyRollup, ["grain_s", "start_s", "bucket"], "n") == latency


def test_batches_roll_up_their_decisions_once(
    context: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    activate(context, 1, t1_lo=0.05, t1_hi=0.98, t2_lo=0.4, t2_hi=0.6)  # 0.5: review
    ids = _submit(context, issue_key(context).tenant_id, range(300, 330))

    def dying(*args: Any, **kwargs: Any) -> float:
        raise RuntimeError("the worker dies before its commit")

    with monkeypatch.context() as m:
        m.setattr(pipeline, "record_batch", dying)  # after the roll-up call, before the commit
        with pytest.raises(RuntimeError):
            _runner(context, 1).run(ids)
    with context.sessions() as session:
        assert session.scalar(select(DecisionRollup.decided)) is None  # nothing was kept
    first = _runner(context, 1).run(ids)  # redelivered after the crash
    assert first.decided, "some images must be decided at stage 1"
    _assert_rolled_up(context)
    _runner(context, 1).run(ids)  # redelivered again: nothing new
    _runner(context, 2).run(first.to_stage2)
    _runner(context, 2).run(first.to_stage2)
    _assert_rolled_up(context)
