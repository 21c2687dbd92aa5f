import numpy as np
import pytest
from scipy import integrate, stats

from cascade.policy import ThresholdSet
from feedback.drift import (
    DRIFT_LEVEL,
    LEVEL_PARTS,
    conformal_pvalues,
    rate_log_evalues,
    shift_log_evalues,
    watch,
)
from feedback.sample import AuditSample
from feedback.simulate import demo_world

WORLD = demo_world()
# A set of the demo world that allows about 0.05 % of traffic harmful (its optimum's region).
ACTIVE = ThresholdSet(t1_lo=0.0135, t1_hi=0.85, t2_lo=0.15, t2_hi=0.5)


def test_conformal_pvalues_are_uniform_under_exchangeability() -> None:
    rng = np.random.default_rng(0)
    p = conformal_pvalues(rng.normal(size=500), rng.normal(size=3000), np.random.default_rng(1))
    assert stats.kstest(p, "uniform").pvalue > 0.01
    ties = conformal_pvalues(rng.random(400) < 0.1, rng.random(3000) < 0.1, rng)  # binary
    assert stats.kstest(ties, "uniform").pvalue > 0.01
    shifted = conformal_pvalues(rng.normal(size=500), rng.normal(-0.5, size=300), rng)
    assert np.mean(shifted) < 0.4


def test_rate_eprocess_rarely_crosses_at_the_limit_and_soon_above_it() -> None:
    rng = np.random.default_rng(2)
    limit, level, draws = 0.002, 0.05, 400
    at_limit = [rate_log_evalues(rng.random(20_000) < limit, limit).max() for _ in range(draws)]
    assert np.mean(np.asarray(at_limit) >= np.log(1 / level)) <= level
    above = [rate_log_evalues(rng.random(20_000) < 4 * limit, limit).max() for _ in range(50)]
    assert np.mean(np.asarray(above) >= np.log(1 / level)) > 0.9


def test_shift_eprocess_is_a_fair_bet_on_uniform_pvalues() -> None:
    rng = np.random.default_rng(3)
    crossed = [shift_log_evalues(rng.random(500), -1).max() >= np.log(20) for _ in range(600)]
    assert np.mean(crossed) <= 1 / 20
    assert shift_log_evalues(np.full(60, 0.2), -1)[-1] > np.log(100)  # small p: evidence
    assert shift_log_evalues(np.full(60, 0.2), 1)[-1] < 0  # the other way: none


@pytest.mark.parametrize("direction", [-1, 0, 1])
def test_shift_bet_has_expectation_exactly_one_on_a_uniform_pvalue(direction: int) -> None:
    """The martingale step itself: one bet's e-value integrates to 1 over p ~ U(0, 1), so the
    weights of the mixture (and of its two signs) sum to 1."""
    mean, _ = integrate.quad(lambda p: np.exp(shift_log_evalues([p], direction)[0]), 0, 1,
                             limit=200)  # fmt: skip
    assert mean == pytest.approx(1.0, abs=1e-6)


def test_level_is_shared_out_exactly_among_the_tests_in_force() -> None:
    """The union bound: test i fires at 1/(share_i × level) and the shares sum to 1, so the
    chances of a false alarm, at most share_i × level each, add up to at most the level."""
    rng = np.random.default_rng(13)
    reference, new = WORLD.audit(rng, 3000), WORLD.audit(rng, 300)
    for beta in (None, 0.002):
        report = watch(reference, new, ACTIVE, alpha=0.001, beta=beta, level=0.02)
        assert sum(1 / a.threshold for a in report.alarms) == pytest.approx(0.02)
    one = watch(reference, new, ACTIVE, alpha=0.001, level=0.01)
    shares = {a.test: 1 / (a.threshold * 0.01) for a in one.alarms}
    assert shares == pytest.approx({"miss": 0.1, "harmful_scores_down": 0.8, "prevalence": 0.1})
    assert set(LEVEL_PARTS) == {a.test for a in report.alarms}


@pytest.mark.slow
@pytest.mark.parametrize("beta", [None, 0.002])
def test_false_alarms_stay_within_the_level_over_repeated_draws(beta: float | None) -> None:
    """Validity by repeated draws without drift, at a level high enough to measure (0.5; at
    0.01 a few hundred draws see no alarm at all): seeded, so deterministic. The guard gives
    0.25 (one-sided) and 0.35; with every shift-bet weight doubled (an invalid mixture) this
    test fails (0.57 and 0.53)."""
    level, draws = 0.5, 150
    rng = np.random.default_rng(12)
    fired = [
        watch(WORLD.audit(rng, 5000), WORLD.audit(rng, 2000), ACTIVE, alpha=0.001, beta=beta,
              level=level, seed=d).fired_at is not None
        for d in range(draws)
    ]  # fmt: skip
    assert np.mean(fired) <= level


def _watch_draws(live: object, draws: int, window: int, seed: int) -> list[int | None]:
    rng = np.random.default_rng(seed)
    fired = []
    for d in range(draws):
        reference = WORLD.audit(rng, window)
        new = live.audit(rng, 2000)  # type: ignore[attr-defined]
        fired.append(watch(reference, new, ACTIVE, alpha=0.001, seed=d).fired_at)
    return fired


@pytest.mark.slow
def test_guard_stays_quiet_without_drift() -> None:
    fired = _watch_draws(WORLD, draws=150, window=10_000, seed=4)
    assert sum(f is not None for f in fired) / len(fired) <= DRIFT_LEVEL + 0.02


@pytest.mark.slow
def test_guard_catches_harmful_scores_drifting_down_within_2000_labels() -> None:
    """The issue's case: harmful images score 0.5 logit lower on both stages in live traffic;
    the audit window the set was certified on is unchanged."""
    fired = _watch_draws(WORLD.shifted(harmful_logit=-0.5), draws=60, window=20_000, seed=5)
    assert sum(f is not None for f in fired) / len(fired) >= 0.85
    report = watch(WORLD.audit(np.random.default_rng(9), 20_000),
                   WORLD.shifted(harmful_logit=-1.0).audit(np.random.default_rng(10), 2000),
                   ACTIVE, alpha=0.001)  # fmt: skip
    assert [a.test for a in report.fired] == ["harmful_scores_down"]
    assert report.reason().startswith("drift: harmful_scores_down")
    assert report.as_dict()["fired_at"] == report.fired_at


def test_guard_tests_what_the_certificates_claim() -> None:
    rng = np.random.default_rng(11)
    reference, new = WORLD.audit(rng, 5000), WORLD.audit(rng, 500)
    one = watch(reference, new, ACTIVE, alpha=0.001)
    two = watch(reference, new, ACTIVE, alpha=0.001, beta=0.002)
    assert [a.test for a in one.alarms] == ["miss", "harmful_scores_down", "prevalence"]
    assert {"false_block", "benign_scores_up"} <= {a.test for a in two.alarms}
    assert one.alarms[0].threshold == pytest.approx(10 / DRIFT_LEVEL)  # miss: 1 part in 10
    assert one.reason() == "no drift" and one.fired_at is None
    # Harmful images scoring *higher* only lowers misses: nothing fires.
    up = WORLD.shifted(harmful_logit=1.0).audit(rng, 2000)
    assert watch(reference, up, ACTIVE, alpha=0.001).fired_at is None
    # A sudden flood of misses fires the miss test itself.
    flood = AuditSample.of(np.full(400, 0.001), np.full(400, 0.001), np.ones(400), 0.02)
    assert "miss" in {a.test for a in watch(reference, flood, ACTIVE, alpha=0.001).fired}
