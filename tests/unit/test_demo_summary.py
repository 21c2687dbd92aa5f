"""The demo's round summary: routes from the stored scores under the thresholds in force (an
audit labels an image, it does not decide it), and intervals that say what a round's size
allows; the simulated admin's rulings on the moderators' disagreements."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import click
import numpy as np
import pytest
from scipy import stats

from cascade.config import Settings
from cascade.db.schema import ReviewState
from cascade.policy import ALLOW_CODE, BLOCK_CODE, REVIEW_CODE, ThresholdSet
from cascade.review import claim_next, record_label
from services.demo import (
    automatic_routes,
    conflicts,
    forget_embedded_state,
    play_moderators,
    share_interval,
)
from tests.review.factories import item_row, make_item, make_user


def test_routes_come_from_the_scores_and_the_thresholds_in_force() -> None:
    ts = ThresholdSet(t1_lo=0.1, t1_hi=0.9, t2_lo=0.2, t2_hi=0.8)
    subs = [
        SimpleNamespace(s1=0.05, s2=None),  # allowed at stage 1
        SimpleNamespace(s1=0.05, s2=0.95),  # audited: stage 2 scored it, stage 1 decided
        SimpleNamespace(s1=0.95, s2=None),  # blocked at stage 1
        SimpleNamespace(s1=0.5, s2=0.1),  # allowed at stage 2
        SimpleNamespace(s1=0.5, s2=0.5),  # to a human
        SimpleNamespace(s1=0.5, s2=0.85),  # blocked at stage 2
    ]
    final, reached2 = automatic_routes(subs, ts)
    assert final.tolist() == [ALLOW_CODE, ALLOW_CODE, BLOCK_CODE, ALLOW_CODE, REVIEW_CODE, BLOCK_CODE]  # fmt: skip
    assert reached2.tolist() == [False, False, False, True, True, True]


@pytest.mark.parametrize(("k", "n"), [(0, 50), (3, 3000), (150, 3000), (40, 40)])
def test_share_interval_is_clopper_pearson(k: int, n: int) -> None:
    lo, hi = share_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    # Exact coverage check at the edges: the interval's ends are where a tail is 2.5 %.
    if k > 0:
        assert stats.binom.sf(k - 1, n, lo) == pytest.approx(0.025, rel=1e-6)
    if k < n:
        assert stats.binom.cdf(k, n, hi) == pytest.approx(0.025, rel=1e-6)
    assert share_interval(0, 0) == (0.0, 1.0)


def test_a_larger_round_gives_a_narrower_interval() -> None:
    widths = [np.subtract(*share_interval(n // 20, n)[::-1]) for n in (400, 3000)]
    assert widths[1] < widths[0] / 2


class _NoDispatch:
    def __init__(self) -> None:
        self.callbacks: list[str] = []

    def follow_up(self, *, callbacks: list[str]) -> None:
        self.callbacks += callbacks


def _disagree(ctx: Any, seed: int, auto: str | None = None) -> tuple[int, str]:
    """An audit item two moderators labelled differently: it waits for an admin."""
    made = make_item(ctx, seed=seed, reason="audit", labels_required=2, auto=auto)
    for name, label in ((f"m{seed}a", "allow"), (f"m{seed}b", "block")):
        uid = make_user(ctx, name)
        with ctx.sessions() as db:
            assert claim_next(db, user_id=uid, lease_s=60) is not None
            outcome = record_label(db, item_id=made.item_id, user_id=uid, label=label,
                                   settings=ctx.settings)  # fmt: skip
            db.commit()
    assert outcome.state == ReviewState.CONFLICT
    return made.item_id, made.submission_id


def test_the_demo_rules_on_its_rounds_conflicts_and_only_those(context: Any) -> None:
    """Unruled conflicts would end the audit window the retune trusts at the oldest of them."""
    ours, other = _disagree(context, 1), _disagree(context, 2)
    missed = _disagree(context, 3, auto="allow")  # needs a second admin to count as a miss
    truth = {ours[1]: True, missed[1]: True}
    play_moderators(context, _NoDispatch(), truth, accuracy=1.0, seed=0)  # type: ignore[arg-type]
    for item_id, _ in (ours, missed):
        assert item_row(context, item_id).state == ReviewState.DONE
        assert item_row(context, item_id).final_label == "block"  # the truth, at accuracy 1
    assert item_row(context, other[0]).state == ReviewState.CONFLICT  # another round's
    assert conflicts(context) == [other]


def test_a_fresh_demo_forgets_the_embedded_state_and_keeps_the_models(tmp_path: Any) -> None:
    var = tmp_path / "var"
    for name in ("cascade.db", "cascade.db-wal", "celerybeat-schedule.db", "secrets.json"):
        (var / name).parent.mkdir(parents=True, exist_ok=True)
        (var / name).write_text("x")
    for folder in ("blobs/ab", "redis", "models/stage1", "data", "prometheus"):
        (var / folder).mkdir(parents=True)
    settings = Settings(var_dir=var)
    removed = {p.name for p in forget_embedded_state(settings)}
    assert removed == {"cascade.db", "cascade.db-wal", "celerybeat-schedule.db", "blobs",
                       "redis", "prometheus"}  # fmt: skip
    assert sorted(p.name for p in var.iterdir()) == ["data", "models", "secrets.json"]
    assert forget_embedded_state(settings) == []


def test_a_fresh_demo_never_deletes_an_outside_database(tmp_path: Any) -> None:
    settings = Settings(var_dir=tmp_path, database_url="postgresql+psycopg://db/cascade")
    with pytest.raises(click.ClickException, match="CASCADE_DATABASE_URL"):
        forget_embedded_state(settings)
