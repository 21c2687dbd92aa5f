"""Thresholds → route. Pure functions over plain numbers and arrays.

A score is the calibrated probability that an image is harmful (P(block)). Each stage has a
low and a high threshold: below the low one the image is allowed, at or above the high one it
is blocked, in between it is ambiguous and goes on to the next stage (stage 2, then humans).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt


class Route(StrEnum):
    ALLOW = "allow"
    BLOCK = "block"
    STAGE2 = "stage2"
    REVIEW = "review"


class Outcome(StrEnum):
    ALLOW = "allow"
    BLOCK = "block"


class Decider(StrEnum):
    STAGE1 = "stage1"
    STAGE2 = "stage2"
    HUMAN = "human"
    CACHE = "cache"


@dataclass(frozen=True)
class ThresholdSet:
    """The four thresholds of the cascade. ``version`` 0 is the built-in default."""

    t1_lo: float
    t1_hi: float
    t2_lo: float
    t2_hi: float
    version: int = 0

    def __post_init__(self) -> None:
        for name in ("t1_lo", "t1_hi", "t2_lo", "t2_hi"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value} is outside [0, 1]")
        if self.t1_lo > self.t1_hi:
            raise ValueError(f"t1_lo={self.t1_lo} must be <= t1_hi={self.t1_hi}")
        if self.t2_lo > self.t2_hi:
            raise ValueError(f"t2_lo={self.t2_lo} must be <= t2_hi={self.t2_hi}")

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


# Conservative until the feedback service has audit data: stage 1 decides only when very sure,
# stage 2 decides the clear cases, everything else goes to a human.
DEFAULT_THRESHOLDS = ThresholdSet(t1_lo=0.05, t1_hi=0.98, t2_lo=0.10, t2_hi=0.90, version=0)


def route_stage1(s1: float, ts: ThresholdSet) -> Route:
    """Route an image from its stage-1 score."""
    if s1 < ts.t1_lo:
        return Route.ALLOW
    if s1 >= ts.t1_hi:
        return Route.BLOCK
    return Route.STAGE2


def route_stage2(s2: float, ts: ThresholdSet) -> Route:
    """Route an image that reached stage 2 from its stage-2 score."""
    if s2 < ts.t2_lo:
        return Route.ALLOW
    if s2 >= ts.t2_hi:
        return Route.BLOCK
    return Route.REVIEW


# Integer codes for the vectorised form: 0 allow, 1 block, 2 human review.
ALLOW_CODE, BLOCK_CODE, REVIEW_CODE = 0, 1, 2


def route_arrays(
    s1: npt.ArrayLike, s2: npt.ArrayLike, ts: ThresholdSet
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.bool_]]:
    """Vectorised cascade for images that carry both scores (the audit sample).

    Returns ``(final, reached_stage2)``: the final automatic outcome code per image
    (allow / block / review) and whether it would have run stage 2.
    """
    a1 = np.asarray(s1, dtype=np.float64)
    a2 = np.asarray(s2, dtype=np.float64)
    reached2 = (a1 >= ts.t1_lo) & (a1 < ts.t1_hi)
    final = np.full(a1.shape, REVIEW_CODE, dtype=np.int8)
    final[a1 < ts.t1_lo] = ALLOW_CODE
    final[a1 >= ts.t1_hi] = BLOCK_CODE
    final[reached2 & (a2 < ts.t2_lo)] = ALLOW_CODE
    final[reached2 & (a2 >= ts.t2_hi)] = BLOCK_CODE
    return final, reached2
