"""What one image costs at each step of the cascade, in dollars, from measured device time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from cascade.config import Settings

# Used until workers have recorded batches: rough CPU figures for MobileNet-V3 and
# EfficientNet-V2 at 224 px, batched. Measured figures replace them as soon as there are any.
DEFAULT_SECONDS_PER_IMAGE = {"stage1": 0.004, "stage2": 0.045}


@dataclass(frozen=True)
class StageCosts:
    """Dollars per image: compute per stage, a human label, and the price of each error."""

    stage1: float
    stage2: float
    human: float
    miss: float
    false_block: float

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value < 0:
                raise ValueError(f"cost {name}={value} cannot be negative")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def stage_costs(
    settings: Settings, dollars_per_image: Mapping[str, float] | None = None
) -> StageCosts:
    """Costs from settings, with measured compute dollars per image where given.

    ``dollars_per_image`` maps a stage to its measured cost (see
    :func:`feedback.store.measured_dollars_per_image`); a missing stage falls back to the
    configured ``CASCADE_STAGE{1,2}_SECONDS_PER_IMAGE`` when the settings have it, else
    :data:`DEFAULT_SECONDS_PER_IMAGE`, times the price of the device type the stage is billed as.
    """
    measured = dict(dollars_per_image or {})
    compute = {}
    for stage in ("stage1", "stage2"):
        if stage in measured:
            compute[stage] = measured[stage]
            continue
        seconds = getattr(settings, f"{stage}_seconds_per_image", None)
        seconds = DEFAULT_SECONDS_PER_IMAGE[stage] if seconds is None else float(seconds)
        compute[stage] = seconds * settings.stage_price_per_hour(stage) / 3600.0
    return StageCosts(
        stage1=compute["stage1"],
        stage2=compute["stage2"],
        human=settings.human_review_cost,
        miss=settings.miss_cost,
        false_block=settings.false_block_cost,
    )
