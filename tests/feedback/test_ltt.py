import numpy as np
from scipy import stats

from feedback import ltt
from feedback.risk import critical_count, size_of_test_part
from feedback.sample import AuditSample
from feedback.simulate import demo_world


def _sample(n: int, seed: int, p: float | np.ndarray = 0.02) -> AuditSample:
    s1, s2, label = demo_world().draw(np.random.default_rng(seed), n)
    return AuditSample.of(s1, s2, label, p)


def test_split_is_disjoint_sized_by_the_test_and_blind_to_labels() -> None:
    sample = _sample(10_000, seed=1)
    order, test = ltt.split(sample, limit=0.001, level=0.1, order_share=0.3, seed=4)
    assert order.n + test.n == sample.n
    assert test.n == size_of_test_part(7000, 0.001, 0.1)
    assert not set(order.s1.tolist()) & set(test.s1.tolist())
    # The same images test whatever their labels say: the split never looks at the data.
    flipped = AuditSample(sample.s1, sample.s2, 1 - sample.label, sample.p)
    _, test2 = ltt.split(flipped, limit=0.001, level=0.1, order_share=0.3, seed=4)
    assert np.array_equal(test.s1, test2.s1)
    again = ltt.split(sample, limit=0.001, level=0.1, order_share=0.3, seed=4)[1]
    assert np.array_equal(test.s1, again.s1)


def test_split_with_a_previous_window_tests_on_this_one_only() -> None:
    sample, previous = _sample(5000, seed=2), _sample(3000, seed=3)
    order, test = ltt.split(sample, limit=0.003, level=0.1, order_share=0.3, previous=previous)
    assert test.n == size_of_test_part(5000, 0.003, 0.1)
    assert order.n == previous.n + sample.n - test.n
    assert set(test.s1.tolist()) <= set(sample.s1.tolist())


def test_split_thins_unequal_audit_rates_to_one_probability() -> None:
    p = np.where(np.arange(20_000) % 2 == 0, 0.01, 0.04)
    sample = _sample(20_000, seed=5, p=p)
    _, test = ltt.split(sample, limit=0.003, level=0.1, order_share=0.3)
    assert np.all(test.p == 0.01)
    # After thinning both halves of the stream enter at the same rate.
    assert test.n < 0.7 * 20_000 * (0.5 + 0.5 * 0.25) * 1.1


def test_frontier_walks_from_safe_to_the_cheapest_pair() -> None:
    rng = np.random.default_rng(0)
    risk = np.sort(rng.random((6, 6)), axis=None).reshape(6, 6)
    cost = rng.random((6, 6))
    path = ltt.frontier(cost, risk)
    r = np.array([risk[p] for p in path])
    c = np.array([cost[p] for p in path])
    assert np.all(np.diff(r) >= 0) and np.all(np.diff(c) < 0)
    assert path[0] == np.unravel_index(np.argmin(risk), risk.shape)
    assert cost[path[-1]] == cost.min()  # not cut where some price of risk is least
    # Every pair off the path is beaten by a path pair that is no riskier and no dearer.
    for a, b in np.ndindex(6, 6):
        assert any(risk[p] <= risk[a, b] and cost[p] <= cost[a, b] for p in path)


def test_fixed_sequence_stops_at_the_first_failure() -> None:
    path = [(0, 0), (1, 0), (1, 1), (2, 1)]
    env = np.array([[0, 0, 0], [0, 40, 0], [0, 0, 0]])  # (1, 1) fails; (2, 1) would pass
    result = ltt.certify_sequence(path, env, n=10_000, limit=0.003, level=0.1)
    assert result.passed == 2 and result.certified == [(0, 0), (1, 0)]
    assert result.mask((3, 3)).sum() == 2
    assert result.count_of((1, 1)) == 40


def test_fixed_sequence_controls_false_certificates_by_repeated_draws() -> None:
    """Risks along a path rising through the limit, counts drawn afresh each time: how often
    a pair whose true risk is above the limit gets certified."""
    rng = np.random.default_rng(8)
    n, limit, level, draws = 5000, 0.002, 0.1, 4000
    risks = np.linspace(0.0, 0.004, 41)
    false_certificates = 0
    for _ in range(draws):
        counts = np.cumsum(rng.binomial(n, np.diff(risks, prepend=0.0)))  # nested sets
        env = counts[None, :]
        result = ltt.certify_sequence([(0, t) for t in range(41)], env, n, limit, level)
        false_certificates += any(risks[t] > limit for _, t in result.certified)
    rate = false_certificates / draws
    assert rate <= level
    assert rate > level / 4  # and the level is used, not wasted
    assert critical_count(n, limit, level) >= 0


def test_harm_model_recovers_the_posterior_where_it_is_logistic() -> None:
    world = demo_world(disguised=0.0)  # equal covariances: the true posterior is logistic
    s1, s2, label = world.draw(np.random.default_rng(6), 20_000)
    sample = AuditSample.of(s1, s2, label, 0.02)
    q = ltt.harm_probability(sample)
    (benign,), (harmful,) = world.benign, world.harmful
    l1, l2 = np.log(s1 / (1 - s1)), np.log(s2 / (1 - s2))

    def density(c: object) -> np.ndarray:
        cov = [[c.sd1**2, c.corr * c.sd1 * c.sd2], [c.corr * c.sd1 * c.sd2, c.sd2**2]]  # type: ignore[attr-defined]
        law = stats.multivariate_normal([c.mean1, c.mean2], cov)  # type: ignore[attr-defined]
        return law.pdf(np.column_stack([l1, l2]))

    num = world.prevalence * density(harmful)
    truth = num / (num + (1 - world.prevalence) * density(benign))
    assert np.mean(np.abs(q - truth)) < 0.01


def _undecidable_world(n: int, seed: int) -> tuple[AuditSample, np.ndarray]:
    """A calibrated stage 2 with an undecidable band, as recipe 7 trains: clear images score
    near 0 or 1, the band scores about 0.45 and a third of it is harmful. The truth
    ``P(harmful | s2)`` is a plateau no single slope on the logit draws."""
    rng = np.random.default_rng(seed)
    band = rng.random(n) < 0.03
    harmful = np.where(band, rng.random(n) < 1 / 3, rng.random(n) < 0.04)
    centre = np.where(band, 0.0, np.where(harmful, 5.0, -5.0))
    l2 = centre + rng.normal(0, np.where(band, 0.3, 1.2))
    l1 = 0.6 * l2 + rng.normal(0, 1.0, n)
    s1, s2 = 1 / (1 + np.exp(-l1)), 1 / (1 + np.exp(-l2))
    dens = [stats.norm.pdf(l2, c, sd) for c, sd in ((0.0, 0.3), (5.0, 1.2), (-5.0, 1.2))]
    band_harm, clear_harm, clear_safe = (
        0.03 / 3 * dens[0],
        0.97 * 0.04 * dens[1],
        0.97 * 0.96 * dens[2],
    )
    truth = (band_harm + clear_harm) / (0.03 * dens[0] + clear_harm + clear_safe)
    return AuditSample.of(s1, s2, harmful.astype(np.float64), 0.3), truth


def test_harm_model_follows_a_plateau_that_one_slope_cannot() -> None:
    sample, truth = _undecidable_world(20_000, seed=7)
    flexible = ltt.harm_probability(sample)
    stiff = ltt.harm_probability(sample, smoothing=(1e8,))  # the logistic regression on logits
    band = (sample.s2 > 0.3) & (sample.s2 < 0.7)
    err = {
        k: np.mean(np.abs(q - truth)[band]) for k, q in (("flexible", flexible), ("stiff", stiff))
    }
    assert err["flexible"] < 0.75 * err["stiff"]
    # Below the band harm is ~0: the stiff model's overstatement there misordered the sequence.
    low = sample.s2 < 0.2
    assert truth[low].sum() < 0.01
    assert flexible[low].sum() < 0.6 * stiff[low].sum()
    assert abs(flexible.sum() - sample.label.sum()) < 1  # a logistic fit keeps the total


def test_harm_model_stays_stiff_on_few_labels_and_finite_without_one_class() -> None:
    sample, _ = _undecidable_world(300, seed=8)
    q = ltt.harm_probability(sample)
    stiff = ltt.harm_probability(sample, smoothing=(1e8,))
    assert np.max(np.abs(q - stiff)) < 0.05
    none = AuditSample(sample.s1, sample.s2, np.zeros(sample.n), sample.p)
    assert np.all(np.isfinite(ltt.harm_probability(none)))
    assert ltt.harm_probability(sample.subset(np.zeros(sample.n, dtype=bool))).shape == (0,)
