"""The two stage networks by name, over ``timm.create_model``, and the training presets.

Stage 1 is a cheap screener that sees every image (a MobileNet-V3); stage 2 is the expensive
model that only sees what stage 1 cannot decide (an EfficientNet-V2) at a higher resolution,
which is what lets it resolve small and faint cues. Names and sizes are configurable; the
presets are the defaults (``default`` for real data and GPUs, ``demo`` trains on a 2-core CPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.errors import ModelInitError
from models.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig
from models.synthetic import UNDECIDABLE

if TYPE_CHECKING:
    from torch import nn

CLASS_NAMES = ("allow", "block")


@dataclass(frozen=True)
class StageSpec:
    """How to build and train one stage."""

    stage: int
    model_name: str
    size: int
    epochs: int = 10  # the schedule always runs to its end; the best epoch is kept
    batch_size: int = 64
    lr: float = 2e-3
    warmup: float = 0.15  # share of the schedule spent warming the learning rate up
    # Weight of a harmful image's loss against a benign one's (``models.train``: why a screener
    # wants more than 1); the logit is corrected for the prior it shifts before calibration.
    positive_weight: float = 1.0
    # Bands this stage cannot read, trained toward their base rate (``models.data.Split.targets``).
    undecidable: tuple[str, ...] = UNDECIDABLE
    # Extra timm constructor arguments, e.g. width/depth multipliers of a smaller variant.
    model_kwargs: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, dict[int, StageSpec]] = {
    "default": {
        1: StageSpec(1, "mobilenetv3_large_100", 224, epochs=30, batch_size=128, lr=1e-3),
        2: StageSpec(2, "tf_efficientnetv2_s", 384, epochs=30, batch_size=32, lr=5e-4),
    },
    # Sized for a 2-core CPU: minutes per stage, yet stage 2 sees 2x the pixels per side.
    # Stage 1 is MobileNet-V3-Small at 0.75 width: at 64 px a step costs little more than at
    # 0.5 (per-layer overhead dominates: 325 vs 341 images per CPU-second), and 0.5 underfit.
    # It trains for 32 epochs: at 20 its training loss still matched its validation loss
    # (0.23), it was underfit, not memorising; on held-out traffic 32 epochs let it allow 83 %
    # of images with 10 harmful ones in 20,000 below the threshold, against 74 % at 20.
    # Its loss weighs a harmful image 2x (models.train: why). On world 9, 4x (against 1x) let it
    # decide >= 80 % of traffic in 70-90 % of the cascade benchmark's splits instead of 42 %; on
    # world 10, whose medium band stage 1 cannot read, 4x made it hedge on large close
    # look-alikes: with training seed 0, 2x decided >= 80 % in 90 % of splits instead of 64 %;
    # with seed 1 both did in 98 % (one machine). No worse on either seed, so 2x.
    # It cannot read the medium band (by design, models.synthetic), so it is trained toward the
    # band's base rate there, as both stages are on the ambiguous tail: with hard labels it
    # scored some of the band's harmful images as low as plainly benign ones (0.007, 0.009),
    # and they were allowed with them. On three training seeds it then decided >= 80 % of
    # traffic in 98-100 % of the cascade benchmark's splits (was 90-98 %), and stage 2 was
    # needed by >= 10 % in all of them (was 90-100 %); the cascade cost the same (README, stop 29).
    # Stage 2 is EfficientNet-V2-B0 at half width and depth: full B0 at 128 px trains at
    # ~8 images/s on 2 busy shared cores, too slow for a demo; this one at ~27.
    "demo": {
        1: StageSpec(
            1,
            "mobilenetv3_small_075",
            64,
            epochs=32,
            batch_size=64,
            lr=3e-3,
            positive_weight=2.0,
            undecidable=("medium", "ambiguous"),
        ),
        2: StageSpec(
            2,
            "tf_efficientnetv2_b0",
            128,
            epochs=8,
            batch_size=48,
            lr=2e-3,
            model_kwargs={"channel_multiplier": 0.5, "depth_multiplier": 0.5},
        ),
    },
}


def stage_spec(
    stage: int,
    preset: str = "default",
    *,
    model_name: str | None = None,
    size: int | None = None,
    epochs: int | None = None,
) -> StageSpec:
    """The preset's spec for ``stage`` with any overrides applied."""
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {sorted(PRESETS)}.")
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage}")
    spec = PRESETS[preset][stage]
    return replace(
        spec,
        model_name=model_name or spec.model_name,
        model_kwargs=spec.model_kwargs if model_name in (None, spec.model_name) else {},
        size=size or spec.size,
        epochs=epochs or spec.epochs,
    )


def create_model(
    model_name: str, *, init: str | Path | None = None, model_kwargs: dict[str, Any] | None = None
) -> nn.Module:
    """A 2-class timm model. ``init``: ``None`` random, ``"pretrained"`` timm's own weights
    (needs them cached or downloadable), or a checkpoint path (a state dict, or a dict holding
    one under ``"state_dict"``/``"model"``; a classifier of another shape is re-initialised)."""
    import timm

    kwargs = dict(model_kwargs or {}, num_classes=len(CLASS_NAMES))
    if init == "pretrained":
        try:
            return _zero_classifier(timm.create_model(model_name, pretrained=True, **kwargs))
        except Exception as exc:  # network, hub and cache errors come in many types
            raise ModelInitError(
                f"Could not load pretrained weights for {model_name!r} ({type(exc).__name__}: "
                f"{exc}). They are downloaded from the Hugging Face hub on first use; without "
                "network access put them in the HF cache, pass --init PATH to a checkpoint, or "
                "omit --init to start from random weights."
            ) from exc
    model = _zero_classifier(timm.create_model(model_name, pretrained=False, **kwargs))
    if init is not None:
        _load_checkpoint(model, Path(init))
    return model


def _zero_classifier(model: nn.Module) -> nn.Module:
    """Start the new 2-class head at zero: the first loss is log 2 instead of the several-nats
    spikes timm's random head gives, which stalled from-scratch training in our runs."""
    import torch

    head = model.get_classifier()  # type: ignore[operator]
    if isinstance(head, torch.nn.Linear):
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    return model


def _load_checkpoint(model: nn.Module, path: Path) -> None:
    import torch

    if not path.is_file():
        raise ModelInitError(f"Checkpoint {path} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelInitError(f"Could not read checkpoint {path}: {exc}") from exc
    if isinstance(state, dict):
        state = state.get("state_dict", state.get("model", state))
    own = model.state_dict()
    # A checkpoint trained for another task has another classifier: keep ours for those keys.
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(usable) < len(own) // 2:
        raise ModelInitError(
            f"Checkpoint {path} matches only {len(usable)} of {len(own)} tensors of "
            f"{type(model).__name__}; is it for another architecture?"
        )
    model.load_state_dict(usable, strict=False)


def preprocess_config_for(model_name: str, size: int) -> PreprocessConfig:
    """Mean/std from the timm model's pretrained config (so pretrained weights see what they
    expect), at our input size; ImageNet statistics when the model does not say."""
    import timm

    try:
        cfg = timm.get_pretrained_cfg(model_name)
        mean = tuple(cfg.mean) if cfg is not None else IMAGENET_MEAN
        std = tuple(cfg.std) if cfg is not None else IMAGENET_STD
    except Exception:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    return PreprocessConfig(size=size, mean=mean, std=std, interpolation="bilinear")  # type: ignore[arg-type]
