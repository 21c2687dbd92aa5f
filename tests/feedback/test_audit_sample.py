"""The audit sample covers cache answers: audited at the same rate, scored by every stage,
labelled like any audit, without changing the answer already given."""

import io
import random

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from cascade.context import Context
from cascade.db.schema import ReviewItem, State, Submission, utcnow
from cascade.intake import accept
from cascade.pipeline import StageRunner
from cascade.thresholds import ThresholdCache
from models.preprocess import PreprocessConfig
from tests.feedback.factories import issue_key

pytestmark = pytest.mark.integration


class _Always(random.Random):
    """Every draw is 0.0: every image is audit-sampled."""

    def random(self) -> float:
        return 0.0


class _Fixed:
    """A stand-in engine with a real preprocessing config and a fixed score."""

    preprocess = PreprocessConfig(size=16)

    def __init__(self, score: float) -> None:
        self.score = score

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return np.full(len(batch), self.score)


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), (40, 90, 200)).save(buf, format="PNG")
    return buf.getvalue()


def test_a_cache_answer_is_audited_and_scored_by_every_stage(context: Context) -> None:
    tenant = issue_key(context).tenant_id
    data = _png()
    with context.sessions() as session:
        first = accept(context, session, tenant_id=tenant, data=data)
        sub = first.submission
        sub.state, sub.decision, sub.decided_by, sub.decided_at = (
            State.DECIDED, "block", "stage2", utcnow(),
        )  # fmt: skip
        session.commit()
        hit = accept(context, session, tenant_id=tenant, data=data, rng=_Always())
        session.commit()
        hit_id = hit.submission.id
        assert hit.cached and hit.submission.audit
        assert hit.submission.audit_p == context.settings.audit_rate
    thresholds = ThresholdCache(context.sessions)
    for stage, score in ((1, 0.01), (2, 0.02)):  # scores that would allow: nothing changes
        runner = StageRunner(stage, context, lambda s=score: _Fixed(s), thresholds)
        out = runner.run([hit_id])
        assert out.decided == [] and out.errors == 0
        assert (hit_id in out.to_stage2) == (stage == 1)
    with context.sessions() as session:
        sub = session.get(Submission, hit_id)
        assert sub is not None
        assert (sub.s1, sub.s2) == (0.01, 0.02)
        assert (sub.decision, sub.decided_by) == ("block", "cache")  # the answer given stands
        item = session.scalars(select(ReviewItem).where(ReviewItem.submission_id == hit_id)).one()
        assert item.reason == "audit"
