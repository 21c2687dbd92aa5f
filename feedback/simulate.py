"""A synthetic score world whose every rate is known exactly: the oracle the decisions
benchmark and the validity tests measure the optimiser against.

Each class (benign, harmful) is a mixture of bivariate normal components on the *logits* of the
two stage scores; a score is the sigmoid of its logit. Within a component the two logits share
a "hard image" term (what one model finds hard, the other tends to as well), so the stages'
errors are correlated, as with real models. The default world is the project's demo world
(:func:`feedback.benchmark.synthetic_scores`: 5 % harmful, a good screener, a better second
stage) plus one thing real traffic has and a normal model does not: a tenth of the harmful
images are *disguised* and look half benign to both models. It makes the true posterior
non-logistic, so nothing downstream can be tuned to the world's exact shape by accident.

Exact: the probability of every grid cell (``values[a] <= s1 < values[a+1]``, likewise s2) is
a one-dimensional integral of a normal CDF, done by Gauss–Legendre quadrature in the
probability scale of ``s1`` (no truncation, no Monte Carlo). From the cell table every
candidate threshold set's cost and error rates follow exactly, so the true optimum is an
exhaustive search (see :func:`feedback.tables.CellTables.from_cells`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.special import expit, logit, ndtr, ndtri

from feedback.sample import AuditSample, FloatArray

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(48)


@dataclass(frozen=True)
class Component:
    """One bivariate normal on ``(logit s1, logit s2)``; ``weight`` is its share of the class."""

    weight: float
    mean1: float
    mean2: float
    sd1: float
    sd2: float
    corr: float


@dataclass(frozen=True)
class ScoreWorld:
    """Traffic as a mixture: ``prevalence`` harmful, each class a list of components."""

    prevalence: float
    benign: tuple[Component, ...]
    harmful: tuple[Component, ...]

    def components(self) -> list[tuple[float, int, Component]]:
        """``(share of all traffic, label, component)`` for every component."""
        out = [((1 - self.prevalence) * c.weight, 0, c) for c in self.benign]
        return out + [(self.prevalence * c.weight, 1, c) for c in self.harmful]

    def shifted(self, harmful_logit: float = 0.0, benign_logit: float = 0.0) -> ScoreWorld:
        """The same world with every harmful (benign) logit moved by the given amount: drift."""

        def move(cs: tuple[Component, ...], d: float) -> tuple[Component, ...]:
            return tuple(replace(c, mean1=c.mean1 + d, mean2=c.mean2 + d) for c in cs)

        return replace(
            self, benign=move(self.benign, benign_logit), harmful=move(self.harmful, harmful_logit)
        )

    def draw(self, rng: np.random.Generator, n: int) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(s1, s2, label)`` of ``n`` i.i.d. images."""
        parts = self.components()
        shares = np.array([w for w, _, _ in parts])
        which = rng.choice(len(parts), size=n, p=shares / shares.sum())
        s1, s2, label = np.empty(n), np.empty(n), np.empty(n)
        for idx, (_, lab, c) in enumerate(parts):
            rows = np.flatnonzero(which == idx)
            z1, z2 = rng.standard_normal(len(rows)), rng.standard_normal(len(rows))
            s1[rows] = expit(c.mean1 + c.sd1 * z1)
            s2[rows] = expit(c.mean2 + c.sd2 * (c.corr * z1 + np.sqrt(1 - c.corr**2) * z2))
            label[rows] = lab
        return s1, s2, label

    def audit(self, rng: np.random.Generator, n: int, p: float = 0.02) -> AuditSample:
        """An audit sample of ``n`` images drawn with common probability ``p``."""
        s1, s2, label = self.draw(rng, n)
        return AuditSample.of(s1, s2, label, p)

    def cells(self, values: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Exact probability of each ``(s1 cell, s2 cell)`` of the grid ``values``, per class:
        ``(benign, harmful)``, each of shape ``(len(values), len(values))``, shares of all
        traffic (the last row and column, scores exactly 1.0, have probability 0)."""
        size = len(values)
        out = {0: np.zeros((size, size)), 1: np.zeros((size, size))}
        with np.errstate(divide="ignore"):
            edges = logit(np.asarray(values, dtype=np.float64))
        for share, lab, c in self.components():
            out[lab][: size - 1, : size - 1] += share * _component_cells(c, edges)
        return out[0], out[1]


def _component_cells(c: Component, edges: FloatArray) -> FloatArray:
    """``P(logit s1 in [e_a, e_a+1), logit s2 in [e_b, e_b+1))`` for one component.

    Integrate over ``u = Φ((x - mean1)/sd1)`` cell by cell: ``Φ`` of the conditional law of the
    second logit given the first, at every s2 edge, then differences along s2.
    """
    u = ndtr((edges - c.mean1) / c.sd1)
    lo, hi = u[:-1, None], u[1:, None]
    nodes = lo + (hi - lo) * (_NODES[None, :] + 1) / 2  # (cells, nodes)
    x = c.mean1 + c.sd1 * ndtri(np.clip(nodes, 1e-300, 1 - 1e-16))
    cond_mean = c.mean2 + c.corr * c.sd2 * (x - c.mean1) / c.sd1
    cond_sd = c.sd2 * np.sqrt(1 - c.corr**2)
    cdf = ndtr((edges[None, None, :] - cond_mean[:, :, None]) / cond_sd)  # (cells, nodes, edges)
    integral = np.einsum("cne,n->ce", cdf, _WEIGHTS) * (hi - lo) / 2
    return np.diff(integral, axis=1)


def _demo_component(z: float, weight: float = 1.0) -> Component:
    """The demo world's law given a class position ``z`` (+1 harmful, -1 benign): logits
    ``a·z + b + hard + noise`` with ``hard ~ N(0, 0.6²)`` shared by both stages."""
    hard = 0.36
    var1, var2 = hard + 1.1**2, hard + 0.9**2
    return Component(
        weight=weight,
        mean1=1.8 * z - 1.5,
        mean2=2.6 * z - 1.0,
        sd1=float(np.sqrt(var1)),
        sd2=float(np.sqrt(var2)),
        corr=float(hard / np.sqrt(var1 * var2)),
    )


def demo_world(prevalence: float = 0.05, disguised: float = 0.10) -> ScoreWorld:
    """The demo world with a share ``disguised`` of harmful images that sit at ``z = 0.3``
    (between the classes, nearer benign than harmful on stage 1)."""
    harmful = [_demo_component(1.0, 1.0 - disguised)]
    if disguised > 0:
        harmful.append(_demo_component(0.3, disguised))
    return ScoreWorld(prevalence, benign=(_demo_component(-1.0),), harmful=tuple(harmful))
