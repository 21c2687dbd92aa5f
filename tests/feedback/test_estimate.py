import numpy as np
import pytest

from cascade.policy import ThresholdSet
from feedback.costs import StageCosts
from feedback.estimate import estimate, weighted_mean
from feedback.sample import AuditSample, equal_probability_subsample
from tests.feedback.populations import population

COSTS = StageCosts(stage1=1e-5, stage2=2e-4, human=0.05, miss=5.0, false_block=0.5)
TS = ThresholdSet(t1_lo=0.05, t1_hi=0.97, t2_lo=0.15, t2_hi=0.85)
LOOSE = ThresholdSet(t1_lo=0.2, t1_hi=0.97, t2_lo=0.3, t2_hi=0.85)  # misses often enough to see


def test_estimate_on_a_handmade_sample() -> None:
    # s1 allows, s1 blocks, s2 allows, s2 blocks, human; with labels that make one miss and
    # one false block.
    sample = AuditSample.of(
        s1=[0.01, 0.99, 0.5, 0.5, 0.5],
        s2=[0.9, 0.1, 0.05, 0.95, 0.5],
        label=[1, 0, 0, 0, 1],
        p=0.5,
    )
    e = estimate(sample, TS, COSTS)
    assert (e.stage1_share, e.stage2_share, e.human_share) == (0.4, 0.4, 0.2)
    assert e.reach_stage2 == pytest.approx(0.6)
    assert e.miss_rate == pytest.approx(0.2)  # the first image: harmful, allowed by s1
    assert e.false_block_rate == pytest.approx(0.4)  # s1 block and s2 block of label-0 images
    expected = 1e-5 + 2e-4 * 0.6 + 0.05 * 0.2 + 5.0 * 0.2 + 0.5 * 0.4
    assert e.cost == pytest.approx(expected)


def _stream_truth_and_draws(reps: int, seed: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """A stream whose harm rises over time while the audit rate is 1% then 6%."""
    pop = population(60_000, drift=0.8, seed=seed)
    p = np.where(np.arange(pop.n) < pop.n // 2, 0.01, 0.06)
    full = AuditSample.of(pop.s1, pop.s2, pop.label, 1.0)
    truth = estimate(full, LOOSE, COSTS)
    rng = np.random.default_rng(seed + 1)
    out: dict[str, list[float]] = {"ht": [], "hajek": [], "naive": [], "se": []}
    for _ in range(reps):
        keep = rng.random(pop.n) < p
        s = AuditSample.of(pop.s1[keep], pop.s2[keep], pop.label[keep], p[keep])
        out["hajek"].append(estimate(s, LOOSE, COSTS).miss_rate)
        ht = AuditSample(s.s1, s.s2, s.label, s.p, population=pop.n)
        e_ht = estimate(ht, LOOSE, COSTS)
        out["ht"].append(e_ht.miss_rate)
        out["se"].append(e_ht.se["miss_rate"])
        unweighted = AuditSample.of(s.s1, s.s2, s.label, 1.0)
        out["naive"].append(estimate(unweighted, LOOSE, COSTS).miss_rate)
    return {"miss_rate": truth.miss_rate}, {k: np.asarray(v) for k, v in out.items()}


def test_weighted_estimator_is_unbiased_when_the_audit_rate_varies() -> None:
    truth, draws = _stream_truth_and_draws(reps=300, seed=3)
    m = truth["miss_rate"]
    for name in ("ht", "hajek"):
        err = draws[name] - m
        se_of_mean = err.std(ddof=1) / np.sqrt(len(err))
        assert abs(err.mean()) < 3 * se_of_mean, name
    # The reported standard error matches the spread over repetitions (as a variance: the
    # square root of a rare count's variance estimate is biased low).
    assert np.mean(draws["se"] ** 2) == pytest.approx(draws["ht"].var(ddof=1), rel=0.2)
    # Without weights the late, harm-rich half is over-represented: clearly biased.
    naive_err = draws["naive"] - m
    assert abs(naive_err.mean()) > 5 * naive_err.std(ddof=1) / np.sqrt(len(naive_err))


def test_weighted_mean_of_a_census_is_exact() -> None:
    y = np.array([0.0, 1.0, 1.0, 0.0])
    sample = AuditSample.of(y, y, y, 1.0)
    assert weighted_mean(y, sample) == (0.5, 0.0)


def test_equal_probability_thinning_gives_every_image_the_smallest_rate() -> None:
    rng = np.random.default_rng(0)
    n = 200_000
    p = np.where(np.arange(n) % 2 == 0, 0.02, 0.08)
    keep = rng.random(n) < p
    sample = AuditSample.of(
        np.arange(n)[keep] / n, np.zeros(keep.sum()), np.zeros(keep.sum()), p[keep]
    )
    thin = equal_probability_subsample(sample, seed=1)
    even = np.rint(thin.s1 * n).astype(int) % 2 == 0
    # Both halves of the stream now enter at 2%: 2,000 each out of 100,000.
    assert even.sum() == pytest.approx(2000, abs=4 * np.sqrt(2000))
    assert (~even).sum() == pytest.approx(2000, abs=4 * np.sqrt(2000))


def test_sample_validates_its_inputs() -> None:
    with pytest.raises(ValueError, match="p must lie"):
        AuditSample.of([0.1], [0.1], [1], 0.0)
    with pytest.raises(ValueError, match="labels"):
        AuditSample.of([0.1], [0.1], [2], 0.5)
    with pytest.raises(ValueError, match="s2"):
        AuditSample.of([0.1], [1.5], [1], 0.5)
    with pytest.raises(ValueError, match="entries"):
        AuditSample.of([0.1, 0.2], [0.1], [1], 0.5)
    with pytest.raises(ValueError, match="empty"):
        estimate(AuditSample.of([], [], [], []), TS, COSTS)
