"""The trigger-kept review backlog equals a count of the items, whatever wrote them (ORM,
bulk insert, set-based update, delete) and however often beat folded the log in between."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, insert, select, update

from cascade import backlog
from cascade.context import Context
from cascade.db.schema import Image, ReviewBacklog, ReviewItem, Submission, Tenant, utcnow

STATES = ["pending", "done", "conflict"]
REASONS = ["escalation", "audit"]
operations = st.lists(
    st.one_of(
        st.tuples(st.just("orm"), st.sampled_from(REASONS)),
        st.tuples(st.just("bulk"), st.integers(1, 5)),
        st.tuples(st.just("move"), st.sampled_from(STATES), st.sampled_from(STATES)),
        st.tuples(st.just("delete"), st.sampled_from(STATES)),
        st.tuples(st.just("fold"), st.just(0)),
    ),
    min_size=1,
    max_size=20,
)


def _submission(session: Any) -> str:
    sid = str(uuid.uuid4())
    session.add(Submission(id=sid, tenant_id=1, image_sha256="0" * 64, state="review"))
    session.flush()
    return sid


def _run(session: Any, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "orm":
        session.add(ReviewItem(submission_id=_submission(session), reason=op[1]))
    elif kind == "bulk":
        rows = [{"submission_id": _submission(session), "reason": REASONS[i % 2],
                 "state": "pending", "priority": i % 2, "created_at": utcnow()}
                for i in range(op[1])]  # fmt: skip
        session.execute(insert(ReviewItem), rows)
    elif kind == "move":
        session.execute(update(ReviewItem).where(ReviewItem.state == op[1]).values(state=op[2]))
    elif kind == "delete":
        session.execute(delete(ReviewItem).where(ReviewItem.state == op[1]))
    else:
        backlog.compact(session)
    session.commit()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(ops=operations)
def test_backlog_equals_a_count_of_the_items(context: Context, ops: list[Any]) -> None:
    with context.sessions() as session:
        if session.get(Tenant, 1) is None:
            session.add(Tenant(id=1, name="t"))
            session.add(Image(sha256="0" * 64, phash=0, size_bytes=1, width=1, height=1,
                              format="png", blob_key="k"))  # fmt: skip
            session.commit()
        for op in ops:
            _run(session, op)
        grouped = select(ReviewItem.state, ReviewItem.reason, func.count()).group_by(
            ReviewItem.state, ReviewItem.reason
        )
        direct = {(state, reason): n for state, reason, n in session.execute(grouped) if n}
        assert backlog.counts(session) == direct
        backlog.compact(session)
        session.commit()
        assert backlog.counts(session) == direct
        keys = session.scalar(select(func.count()).select_from(ReviewBacklog))
        assert keys == len(direct)  # folded: one row per (state, reason)
