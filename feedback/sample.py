"""The audit sample: images scored by every stage and labelled by a human, with the known
probability with which each was drawn.

Why weights ``w = 1/p`` (Horvitz–Thompson): an image of the traffic enters the sample with
probability ``p`` (recorded when it was drawn). A sum over the sample of ``y/p`` therefore has
expectation ``Σ_population p·y/p = Σ_population y`` whatever ``p`` was for each image — also when
the audit rate changed over time (say 1% at night, 5% during an incident) and the traffic's mix
changed with it. An unweighted mean would over-represent the periods with the higher rate; the
weighted one gives every period the share it had in the traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class AuditSample:
    """Scores ``s1``, ``s2``, human ``label`` (1 = block/harmful, 0 = allow) and ``p``.

    ``population`` is the number of images the sample was drawn from, when known: with it the
    estimates are Horvitz–Thompson (exactly unbiased); without it they are Hájek ratios
    (``Σ w·y / Σ w``: unbiased up to O(1/n), and need no traffic count).
    """

    s1: FloatArray
    s2: FloatArray
    label: FloatArray
    p: FloatArray
    population: int | None = None

    def __post_init__(self) -> None:
        n = len(self.s1)
        for name in ("s2", "label", "p"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries, s1 has {n}")
        if n and (np.any(self.p <= 0) or np.any(self.p > 1)):
            raise ValueError("sampling probabilities p must lie in (0, 1]")
        if n and not np.all(np.isin(self.label, (0.0, 1.0))):
            raise ValueError("labels must be 0 (allow) or 1 (block)")
        for name in ("s1", "s2"):
            values = getattr(self, name)
            if n and (np.any(values < 0) or np.any(values > 1) or np.any(np.isnan(values))):
                raise ValueError(f"{name} scores must lie in [0, 1]")
        if self.population is not None and self.population < n:
            raise ValueError(f"population={self.population} is smaller than the sample ({n})")

    @classmethod
    def of(
        cls,
        s1: npt.ArrayLike,
        s2: npt.ArrayLike,
        label: npt.ArrayLike,
        p: npt.ArrayLike | float,
        population: int | None = None,
    ) -> AuditSample:
        """Build from anything array-like; a scalar ``p`` means one common audit rate."""
        a1 = np.asarray(s1, dtype=np.float64)
        pp = np.broadcast_to(np.asarray(p, dtype=np.float64), a1.shape).copy()
        return cls(
            s1=a1,
            s2=np.asarray(s2, dtype=np.float64),
            label=np.asarray(label, dtype=np.float64),
            p=pp,
            population=population,
        )

    @property
    def n(self) -> int:
        return len(self.s1)

    @property
    def weights(self) -> FloatArray:
        return 1.0 / self.p

    def subset(self, keep: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> AuditSample:
        return AuditSample(self.s1[keep], self.s2[keep], self.label[keep], self.p[keep])

    def joined(self, other: AuditSample) -> AuditSample:
        """Both samples' images together (population sizes are dropped: Hájek weights)."""
        return AuditSample(
            s1=np.concatenate([self.s1, other.s1]),
            s2=np.concatenate([self.s2, other.s2]),
            label=np.concatenate([self.label, other.label]),
            p=np.concatenate([self.p, other.p]),
        )


def equal_probability_subsample(sample: AuditSample, seed: int = 0) -> AuditSample:
    """Thin the sample so that every image of the traffic had the same chance ``min(p)``.

    Keeping an audited image with probability ``min(p)/p_i`` makes its overall inclusion
    probability ``p_i · min(p)/p_i = min(p)`` for every image: what remains is a Bernoulli
    sample with one common rate, i.e. (given its size) i.i.d. draws from the traffic. That is
    what the exact binomial bound needs; a weighted count has no exact binomial law. When the
    rate never changed (the usual case) nothing is dropped. The seed is fixed, not drawn from
    the data, so the randomisation stays valid and the result reproducible.
    """
    keep = equal_probability_mask(sample, seed)
    return sample if keep.all() else sample.subset(keep)


def equal_probability_mask(sample: AuditSample, seed: int = 0) -> npt.NDArray[np.bool_]:
    """Which images :func:`equal_probability_subsample` keeps."""
    if sample.n == 0:
        return np.ones(0, dtype=bool)
    ratio = sample.p.min() / sample.p
    if np.all(ratio == 1.0):
        return np.ones(sample.n, dtype=bool)
    return np.random.default_rng(seed).random(sample.n) < ratio
