"""Cost arithmetic on known inputs, and the ledger / submission aggregations of cascade.stats
checked against direct computations from generated batches and decisions (on the real DB).
The roll-up model itself (random batches, replays, crashes) is tested in tests/rollup/."""

from __future__ import annotations

import itertools
import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from cascade import series, sketch, stats
from cascade.context import Context
from cascade.cost import compute_dollars, ledger_totals, record_batch, record_error, record_human
from cascade.db.schema import Image, Submission, Tenant, ThresholdSetRow

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_compute_dollars_known_values() -> None:
    assert compute_dollars(3600, 0.10) == pytest.approx(0.10)
    assert compute_dollars(1.8, 6.88) == pytest.approx(0.00344)
    with pytest.raises(ValueError):
        compute_dollars(-1, 1.0)


def test_cost_per_image_and_projection() -> None:
    assert stats.cost_per_image(2.5, 1000) == pytest.approx(0.0025)
    assert stats.cost_per_image(1.0, 0) is None
    # $1 per hour is $720 over 30 days.
    assert stats.monthly_projection(1.0, 3600) == pytest.approx(720.0)
    assert stats.monthly_projection(5.0, 0) == 0.0


def test_window_slots_are_aligned_and_cover_the_span() -> None:
    end = datetime(2026, 3, 1, 12, 34, 56, tzinfo=UTC)
    window = stats.make_window(end=end, span_s=86400, points=96)
    assert window.step_s == 900
    assert int(window.start.timestamp()) % 900 == 0
    assert window.start <= end - timedelta(days=1) < window.start + timedelta(seconds=900)
    slots = window.slots
    assert slots[-1][1] == end
    assert all(a < b for a, b in slots) and all(s[1] == t[0] for s, t in itertools.pairwise(slots))


def test_record_batch_prices_the_stage_device(context: Context) -> None:
    settings = context.settings.model_copy(update={"stage2_billed_as": "t4"})
    with context.sessions() as session:
        d1 = record_batch(
            session, stage="stage1", size=32, device_seconds=36, settings=settings, at=T0
        )
        d2 = record_batch(
            session, stage="stage2", size=4, device_seconds=7.2, settings=settings, at=T0
        )
        dh = record_human(session, labels=3, settings=settings, at=T0)
        de = record_error(session, kind="miss", settings=settings, at=T0)
        session.commit()
        assert d1 == pytest.approx(36 * 0.10 / 3600)
        assert d2 == pytest.approx(7.2 * 0.526 / 3600)
        assert dh == pytest.approx(3 * settings.human_review_cost)
        assert de == pytest.approx(settings.miss_cost)
        totals = ledger_totals(session)
    assert totals == pytest.approx({"stage1": d1, "stage2": d2, "human": dh, "error": de})


def test_ledger_series_equals_direct_sums_of_generated_batches(context: Context) -> None:
    rng = random.Random(7)
    window = stats.make_window(end=T0 + timedelta(hours=6), span_s=6 * 3600, points=24)
    expected: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    with context.sessions() as session:
        for _ in range(400):
            at = window.start + timedelta(seconds=rng.uniform(-1800, 6 * 3600 + 1800))
            stage = rng.choice(["stage1", "stage2", "human", "error"])
            if stage in ("stage1", "stage2"):
                size = rng.randint(1, 64)
                dollars = record_batch(
                    session,
                    stage=stage,
                    size=size,
                    device_seconds=rng.uniform(0.01, 3),
                    settings=context.settings,
                    at=at,
                )
            elif stage == "human":
                size = rng.randint(1, 3)
                dollars = record_human(session, labels=size, settings=context.settings, at=at)
            else:
                size = 1
                dollars = record_error(
                    session,
                    kind=rng.choice(["miss", "false_block"]),
                    settings=context.settings,
                    at=at,
                )
            # Direct computation: which slot holds the batch's minute?
            minute = at.replace(second=0, microsecond=0)
            for i, (a, b) in enumerate(window.slots):
                if a <= minute < b:
                    expected[(i, stage)][0] += size
                    expected[(i, stage)][1] += dollars
        session.commit()
        ledger = series.ledger_series(session, window=window)
    assert expected, "some batches must fall inside the window"
    for i in range(len(window.slots)):
        for stage in ("stage1", "stage2", "human", "error"):
            images, dollars = expected.get((i, stage), (0.0, 0.0))
            assert ledger[f"{stage}_images"][i] == pytest.approx(images)
            assert ledger[f"{stage}_dollars"][i] == pytest.approx(dollars)


def _add_decisions(context: Context, rows: list[tuple[datetime, float, str, bool]]) -> None:
    with context.sessions() as session:
        session.add(Tenant(id=1, name="t"))
        session.add(
            Image(
                sha256="0" * 64,
                phash=0,
                size_bytes=1,
                width=1,
                height=1,
                format="png",
                blob_key="k",
            )
        )
        for created, latency_s, decider, audit in rows:
            session.add(
                Submission(
                    id=str(uuid.uuid4()),
                    tenant_id=1,
                    image_sha256="0" * 64,
                    state="decided",
                    decided_by=decider,
                    audit=audit,
                    created_at=created,
                    decided_at=created + timedelta(seconds=latency_s),
                )
            )
        session.commit()


def test_cost_per_image_uses_decided_images_as_denominator(context: Context) -> None:
    window = stats.make_window(end=T0 + timedelta(hours=1), span_s=3600, points=4)
    first = window.slots[0][0] + timedelta(minutes=1)
    # 8 images decided in the first slot: 6 at stage 1, 1 by a human (audited), 1 from cache.
    rows = [(first, 0.2, "stage1", False)] * 6 + [
        (first, 30.0, "human", True),
        (first, 0.01, "cache", False),
    ]
    _add_decisions(context, rows)
    with context.sessions() as session:
        record_batch(
            session, stage="stage1", size=7, device_seconds=72, settings=context.settings, at=first
        )
        record_human(session, labels=1, settings=context.settings, at=first)
        session.commit()
        data = stats.cost_and_volume(session, window=window)
    compute = 72 * 0.10 / 3600
    assert data["cost_per_image"]["compute"][0] == pytest.approx(compute / 8)
    assert data["cost_per_image"]["human"][0] == pytest.approx(
        context.settings.human_review_cost / 8
    )
    assert data["cost_per_image"]["error"][0] == 0.0
    assert data["cost_per_image"]["compute"][1] is None  # nothing decided: no ratio, not zero
    assert data["share"]["stage1"][0] == pytest.approx(6 / 8)
    assert data["escalation_rate"][0] == pytest.approx(1 / 8)
    assert data["audit_rate"][0] == pytest.approx(1 / 8)
    assert data["images_per_s"][0] == pytest.approx(8 / window.step_s)
    assert data["totals"]["images"] == 8


def test_latency_percentiles_and_threshold_changes(context: Context) -> None:
    window = stats.make_window(end=T0 + timedelta(hours=1), span_s=3600, points=2)
    start = window.slots[0][0] + timedelta(seconds=5)
    latencies = [0.1 * (i + 1) for i in range(100)]
    _add_decisions(
        context,
        [(start + timedelta(seconds=i), lat, "stage1", False) for i, lat in enumerate(latencies)],
    )
    with context.sessions() as session:
        session.add(
            ThresholdSetRow(
                version=2,
                t1_lo=0.1,
                t1_hi=0.9,
                t2_lo=0.1,
                t2_hi=0.9,
                status="active",
                created_by="t",
                activated_at=start + timedelta(minutes=40),
            )
        )
        session.add(
            ThresholdSetRow(
                version=1,
                t1_lo=0.1,
                t1_hi=0.9,
                t2_lo=0.1,
                t2_hi=0.9,
                status="retired",
                created_by="t",
                activated_at=start - timedelta(days=3),
            )
        )
        session.commit()
        data = stats.latency(session, window=window)
        changes = stats.threshold_changes(session, start=window.start, end=window.end)
        assert stats.active_threshold_version(session) == 2
    # The sketch's answer is within its stated relative error of the exact quantile.
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        exact = float(np.quantile(latencies, q))
        assert data["summary"][name] == pytest.approx(exact, rel=2 * sketch.RELATIVE_ERROR)
    assert data["samples"] == 100
    assert [c["version"] for c in changes] == [2]
    assert changes[0]["t"] == int((start + timedelta(minutes=40)).timestamp())


def test_human_and_error_dollars_reach_prometheus(context: Context) -> None:
    from prometheus_client import REGISTRY

    def counted(bucket: str) -> float:
        return REGISTRY.get_sample_value("cascade_dollars_total", {"bucket": bucket}) or 0.0

    before = {b: counted(b) for b in ("human", "error")}
    with context.sessions() as session:
        record_human(session, labels=2, settings=context.settings, at=T0)
        record_human(session, labels=-1, settings=context.settings, at=T0)  # an undo: not counted
        record_error(session, kind="false_block", settings=context.settings, at=T0)
        session.commit()
    assert counted("human") - before["human"] == pytest.approx(
        2 * context.settings.human_review_cost
    )
    assert counted("error") - before["error"] == pytest.approx(context.settings.false_block_cost)
