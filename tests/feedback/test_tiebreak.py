"""The one-standard-error rule against brute force over every candidate of a small grid."""

import itertools
from dataclasses import replace

import numpy as np
import pytest

from cascade.policy import ThresholdSet
from feedback.costs import StageCosts
from feedback.estimate import estimate, per_image
from feedback.optimise import _selection_tables, cheapest, optimise
from feedback.sample import AuditSample
from feedback.simulate import demo_world
from feedback.tables import CellTables, ThresholdGrid, surfaces
from feedback.tiebreak import PairedError, leanest_within

COSTS = StageCosts(stage1=1e-5, stage2=2e-4, human=0.05, miss=5.0, false_block=0.5)
GRID = ThresholdGrid.default(per_side=3)
Candidate = tuple[int, int, int, int]


@pytest.fixture(scope="module")
def sample() -> AuditSample:
    s1, s2, label = demo_world(prevalence=0.2).draw(np.random.default_rng(5), 3000)
    p = np.where(np.arange(3000) % 3 == 0, 0.05, 0.02)  # the audit rate changed over time
    return AuditSample.of(s1, s2, label, p)


def _sets(grid: ThresholdGrid) -> list[Candidate]:
    size, n_lo = grid.size, grid.n_lo
    return [(i, j, k, m) for i, k in itertools.product(range(n_lo), repeat=2)
            for j in range(i, size) for m in range(k, size)]  # fmt: skip


def _ts(idx: Candidate) -> ThresholdSet:
    return ThresholdSet(*(float(GRID.values[x]) for x in idx))


def _mean_and_se(d: np.ndarray, sample: AuditSample) -> tuple[float, float]:
    """The weighted mean of ``d`` and its standard error for a new draw of traffic (no
    finite-population factor), one image at a time."""
    w = sample.weights
    mean = float(np.sum(w * d) / w.sum())
    return mean, float(np.sqrt(np.sum((w * (d - mean)) ** 2)) / w.sum())


def _dollars(sample: AuditSample, idx: Candidate) -> np.ndarray:
    errors = replace(COSTS, stage1=0.0, stage2=0.0)
    return per_image(sample, _ts(idx), errors)["cost"]


def test_paired_error_is_the_standard_error_of_the_per_image_difference(
    sample: AuditSample,
) -> None:
    """Every candidate's surface values equal the mean and standard error of the images' dollar
    differences to the base set, computed one image at a time."""
    base = cheapest(sample, GRID, COSTS, np.ones((GRID.n_lo, GRID.n_lo), dtype=bool))
    paired = PairedError(sample, GRID, COSTS, base)
    own = _dollars(sample, base)
    surfaces_by_i = {i: paired.at(i) for i in range(GRID.n_lo)}
    checked = 0
    for idx in _sets(GRID):
        diff, se = _mean_and_se(_dollars(sample, idx) - own, sample)
        i, j, k, m = idx
        assert surfaces_by_i[i][0][j, k, m] == pytest.approx(diff, rel=1e-6, abs=1e-12)
        assert surfaces_by_i[i][1][j, k, m] == pytest.approx(se, rel=1e-6, abs=1e-12)
        checked += se > 0
    assert surfaces_by_i[base[0]][1][base[1], base[2], base[3]] == pytest.approx(0.0, abs=1e-12)
    assert checked > 100  # most candidates differ from the base on some images


def _brute(sample: AuditSample, criterion: CellTables, base: Candidate, se: float) -> Candidate:
    """The rule written out: within ``se`` paired standard errors of the base's cost (by the
    criterion and by the labels), fewest images to stage 2, then the lower criterion cost."""

    def crit(idx: Candidate) -> float:
        i, j, k, m = idx
        return float(surfaces(criterion, i, COSTS, GRID.n_lo)[0][j, k, m])

    own, floor = _dollars(sample, base), crit(base)
    near = []
    for idx in _sets(GRID):
        diff, err = _mean_and_se(_dollars(sample, idx) - own, sample)
        if crit(idx) - floor <= se * err + 1e-15 and diff <= se * err + 1e-15:
            near.append((estimate(sample, _ts(idx), COSTS).reach_stage2, crit(idx), idx))
    low = min(r for r, _, _ in near)
    return min((c, idx) for r, c, idx in near if r <= low + 1e-12)[1]


@pytest.mark.parametrize("se", [0.5, 1.0, 3.0])
def test_leanest_within_matches_brute_force(sample: AuditSample, se: float) -> None:
    criterion = _selection_tables(sample, GRID)
    allowed = np.ones((GRID.n_lo, GRID.n_lo), dtype=bool)
    base = cheapest(sample, GRID, COSTS, allowed)
    got = leanest_within(sample, GRID, criterion, COSTS, base, (allowed, None), None, se)
    want = _brute(sample, criterion, base, se)
    assert got == want
    if se == 3.0:  # the rule has something to do on this sample
        assert (
            estimate(sample, _ts(got), COSTS).reach_stage2
            < estimate(sample, _ts(base), COSTS).reach_stage2
        )


def test_optimise_chooses_a_certified_set_no_busier_at_stage2_and_within_noise() -> None:
    """On a world audit sample: the rule keeps the certificate, sends no more images to stage 2
    than the cheapest, and its estimated cost stays within a standard error of it."""
    s1, s2, label = demo_world().draw(np.random.default_rng(11), 20_000)
    sample = AuditSample.of(s1, s2, label, 0.5)
    grid = ThresholdGrid.default(per_side=12)
    plain = optimise(sample, COSTS, alpha=0.01, delta=0.1, grid=grid, tie_break_se=0.0)
    lean = optimise(sample, COSTS, alpha=0.01, delta=0.1, grid=grid, tie_break_se=1.0)
    assert plain.certified and lean.certified
    assert plain.estimate is not None and lean.estimate is not None
    assert lean.estimate.reach_stage2 <= plain.estimate.reach_stage2
    assert lean.estimate.cost - plain.estimate.cost <= 3 * plain.estimate.se["cost"]
    assert lean.thresholds != plain.thresholds  # the rule has something to do here
    assert "fewest images to stage 2 within 1 standard error of" in lean.note
    assert "stage 2" not in plain.note
