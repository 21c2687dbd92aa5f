"""The model directory contract shared by training, export and the workers.

```
<model_dir>/stage1/ and <model_dir>/stage2/, each holding
    meta.json        timm model name (+ constructor kwargs), stage, PreprocessConfig, class names, temperature,
                     training metrics (with the quality gate's verdict, ``metrics.quality``),
                     data fingerprint, created_at
    model.pt         PyTorch state dict (the reference; TorchEngine)
    model.onnx       FP32 graph, dynamic batch, output = logits [N, 2] (OnnxEngine)
    model.int8.onnx  optional: QDQ INT8 graph (OnnxEngine kind "onnx-int8")
    model.fp16.onnx  optional: FP16 graph, input of the TensorRT FP16 build
    model.plan       optional: serialized TensorRT engine (TensorRTEngine)
```

Engines apply the temperature to the logits, so a recalibration only rewrites ``meta.json``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.errors import ModelArtifactError
from models.preprocess import PreprocessConfig
from models.registry import CLASS_NAMES, create_model

if TYPE_CHECKING:
    from torch import nn

META = "meta.json"
WEIGHTS = "model.pt"
ONNX = "model.onnx"
ONNX_INT8 = "model.int8.onnx"
ONNX_FP16 = "model.fp16.onnx"
PLAN = "model.plan"


@dataclass(frozen=True)
class StageMeta:
    """Everything needed to rebuild, serve and audit one stage model."""

    model_name: str
    stage: int
    preprocess: PreprocessConfig
    class_names: tuple[str, ...] = CLASS_NAMES
    temperature: float = 1.0
    metrics: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str = ""
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "stage": self.stage,
            "preprocess": self.preprocess.to_dict(),
            "class_names": list(self.class_names),
            "temperature": self.temperature,
            "metrics": self.metrics,
            "data_fingerprint": self.data_fingerprint,
            "created_at": self.created_at,
            "model_kwargs": self.model_kwargs,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageMeta:
        return cls(
            model_name=str(data["model_name"]),
            stage=int(data["stage"]),
            preprocess=PreprocessConfig.from_dict(data["preprocess"]),
            class_names=tuple(data.get("class_names", CLASS_NAMES)),
            temperature=float(data.get("temperature", 1.0)),
            metrics=dict(data.get("metrics", {})),
            data_fingerprint=str(data.get("data_fingerprint", "")),
            created_at=str(data.get("created_at", "")),
            model_kwargs=dict(data.get("model_kwargs", {})),
        )

    def with_(self, **changes: Any) -> StageMeta:
        return replace(self, **changes)


def stage_dir(model_dir: Path | str, stage: int) -> Path:
    """``<model_dir>/stage<N>``."""
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage}")
    return Path(model_dir) / f"stage{stage}"


def write_meta(directory: Path, meta: StageMeta) -> None:
    """Atomically (write + rename), so a worker reloading never reads half a file."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".meta.", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(meta.to_dict(), fh, indent=2, sort_keys=True)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; workers may run as another user
    os.replace(tmp, directory / META)


class ModelRefused(ModelArtifactError):
    """The stage was refused by the quality gate (``models.quality``) and nobody forced it."""


def read_meta(directory: Path | str, *, refused_ok: bool = False) -> StageMeta:
    """The stage's ``meta.json``. Every engine reads it before loading weights, so refusing a
    gated-and-refused model here keeps it out of workers, benchmarks and the demo; training,
    export and the gate itself read with ``refused_ok=True``."""
    path = Path(directory) / META
    if not path.is_file():
        raise ModelArtifactError(
            f"{path} not found: train and export a model first (`cascade train`, "
            "`cascade export`), or run `cascade demo` to build the demo models."
        )
    try:
        meta = StageMeta.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelArtifactError(f"{path} is not a valid model meta file: {exc}") from exc
    if tuple(meta.class_names) != CLASS_NAMES:
        raise ModelArtifactError(f"{path}: class names must be {list(CLASS_NAMES)}")
    quality = meta.metrics.get("quality") or {}
    if not refused_ok and quality.get("passed") is False and not quality.get("forced"):
        reasons = "; ".join(quality.get("reasons", [])) or "no reason recorded"
        raise ModelRefused(
            f"{path}: stage {meta.stage} was refused by the quality gate ({reasons}). Retrain "
            "it, or accept it for an experiment with `cascade export --force`."
        )
    return meta


def require_file(directory: Path | str, name: str, hint: str) -> Path:
    path = Path(directory) / name
    if not path.is_file():
        raise ModelArtifactError(f"{path} not found; {hint}")
    return path


def remove_exports(directory: Path) -> None:
    """Delete exported graphs and engines: after retraining they belong to other weights."""
    for name in (ONNX, ONNX_INT8, ONNX_FP16, PLAN):
        (Path(directory) / name).unlink(missing_ok=True)


def save_weights(directory: Path, model: nn.Module) -> Path:
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / WEIGHTS
    torch.save(model.state_dict(), path)
    return path


def load_model(directory: Path | str, *, refused_ok: bool = False) -> nn.Module:
    """The stage's PyTorch model in eval mode, rebuilt from ``meta.json`` + ``model.pt``."""
    import torch

    meta = read_meta(directory, refused_ok=refused_ok)
    path = require_file(directory, WEIGHTS, "the PyTorch weights are written by training.")
    model = create_model(meta.model_name, model_kwargs=meta.model_kwargs)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
