"""What the dashboard shows in real headless Chromium equals direct queries of the raw rows.

Ten thousand decisions over forty days, written by the benchmark's bulk loader with their
roll-ups; a few of them corrected by "humans" afterwards and not rolled up yet (the unrolled
tail). For the 24-hour view (5-minute cells + raw edge), the 7-day view (hourly cells) and the
90-day view (daily cells), the page's tiles and the share chart's numbers are compared with
figures computed here from ``submissions`` and ``cost_ledger`` alone: nothing of
``cascade.stats``, ``cascade.series`` or ``cascade.rollup``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from cascade import sketch
from cascade.context import Context
from cascade.db.schema import CostLedger, Submission
from cascade.decisions import finalize
from cascade.policy import Decider, Outcome
from services.bench.scale_data import generate
from services.bench.scale_db import prices, seed_small_tables
from services.bench.scale_load import load
from tests.dashboard.conftest import PASSWORD, make_user
from tests.web import chromium, serve

pytestmark = pytest.mark.browser


@pytest.fixture
def history(context: Context) -> Context:
    end = datetime.now(UTC) - timedelta(seconds=5)
    gen = generate(n=10_000, start=end - timedelta(days=40), end=end, seed=21, audit_rate=0.05)
    seed_small_tables(context.engine, gen.changes)
    load(context.engine, gen, prices(context.settings), first=False)
    with context.sessions() as session:  # corrections the roll-up sweep has not seen yet
        recent = select(Submission).where(Submission.decided_at > end - timedelta(hours=20))
        for sub in session.scalars(recent.order_by(Submission.id).limit(40)):
            flipped = Outcome.ALLOW if sub.decision == Outcome.BLOCK else Outcome.BLOCK
            finalize(sub, outcome=flipped, decider=Decider.HUMAN, at=end - timedelta(minutes=3))
        session.commit()
    return context


@pytest.fixture
def page(app: Any, history: Context) -> Iterator[Any]:
    make_user(history, "ops", name="olga")
    with serve(app) as url, chromium() as browser:
        tab = browser.new_page(viewport={"width": 1440, "height": 900})
        tab.goto(f"{url}/review/login?next=/dashboard", timeout=20_000)
        tab.fill("input[name=username]", "olga")
        tab.fill("input[name=password]", PASSWORD)
        tab.click("button[type=submit]")
        tab.wait_for_url(f"{url}/dashboard", timeout=20_000)
        tab.wait_for_selector("body[data-loaded=true]", timeout=20_000)
        yield tab


def _direct(context: Context, start: datetime, slots: int, step_s: int) -> dict[str, Any]:
    """The window's figures from the raw rows (decisions by decided_at, dollars by minute).
    Its end is the last slot's end: nothing was decided between the page's "now" and then."""
    end = start + timedelta(seconds=slots * step_s)
    with context.sessions() as session:
        rows = session.execute(
            select(Submission.created_at, Submission.decided_at, Submission.decided_by,
                   Submission.audit)
            .where(Submission.decided_at >= start, Submission.decided_at < end)
        ).all()  # fmt: skip
        dollars = session.scalar(
            select(func.sum(CostLedger.dollars)).where(
                CostLedger.minute >= start, CostLedger.minute < end
            )
        )
    n = len(rows)
    decided, stage1 = np.zeros(slots), np.zeros(slots)
    for _, at, by, _ in rows:
        i = int((at - start).total_seconds() // step_s)
        decided[i] += 1
        stage1[i] += by == "stage1"
    latencies = [(at - created) // timedelta(microseconds=1) for created, at, _, _ in rows]
    buckets = sketch.buckets_of(np.asarray(latencies, dtype=np.int64))
    counts = dict(zip(*(a.tolist() for a in np.unique(buckets, return_counts=True)), strict=True))
    return {
        "cost_per_1000": 1000 * float(dollars or 0) / n,
        "escalation": sum(by in ("stage2", "human") for _, _, by, _ in rows) / n,
        "audit": sum(bool(a) for *_, a in rows) / n,
        "p95": sketch.quantile(counts, 0.95),
        "images_per_s": n / (slots * step_s),
        "share_stage1": [s / d if d else None for s, d in zip(stage1, decided, strict=True)],
    }


def _shown(tab: Any) -> dict[str, Any]:
    return tab.evaluate(
        """() => {
          const t = (id) => document.getElementById(id).textContent;
          const share = window.CASCADE_CHARTS['c-share'].data;
          return {cpk: t('k-cpk'), esc: t('k-esc'), audit: t('k-audit'), p95: t('k-p95'),
                  ips: t('k-ips'), t: share[0], stage1: share[1]};
        }"""
    )


def _formatted(tab: Any, direct: dict[str, Any]) -> dict[str, str]:
    """The direct figures formatted by the page's own rules (dashboard.js), in the page."""
    return tab.evaluate(
        """(d) => {
          const pct = (x) => (100 * x).toFixed(1) + '%';
          const secs = (x) => x < 1 ? (1000 * x).toFixed(0) + ' ms'
            : x < 120 ? x.toFixed(x < 10 ? 2 : 0) + ' s'
            : (x / 60).toFixed(x < 3600 ? 1 : 0) + ' min';
          const rate = (v) => v === 0 ? '0' : v < 1 ? v.toPrecision(2) : v.toFixed(v < 10 ? 1 : 0);
          return {cpk: '$' + d.cost_per_1000.toFixed(2), esc: pct(d.escalation),
                  audit: pct(d.audit), p95: secs(d.p95), ips: rate(d.images_per_s)};
        }""",
        direct,
    )


@pytest.mark.parametrize("span", ["24h", "7d", "90d"])
def test_the_page_shows_what_the_rows_say(page: Any, history: Context, span: str) -> None:
    if span != "24h":
        page.click(f"#spans button[data-span='{span}']")
        page.wait_for_selector(f"body[data-span='{span}']", timeout=20_000)
    shown = _shown(page)
    step = int(shown["t"][1] - shown["t"][0])
    start = datetime.fromtimestamp(shown["t"][0], UTC)
    direct = _direct(history, start, len(shown["t"]), step)
    expected = _formatted(page, direct)
    assert {k: shown[k] for k in expected} == expected
    assert len(shown["stage1"]) == len(direct["share_stage1"])
    for got, want in zip(shown["stage1"], direct["share_stage1"], strict=True):
        assert (got is None and want is None) or got == pytest.approx(want, rel=1e-12)
