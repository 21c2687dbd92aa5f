"""Import a timm model name + checkpoint: rebuilt with its own class count, exported to ONNX
(checked against PyTorch), then imported like any ONNX file (``models.importer``).

The default spec is timm's own evaluation transform for that model (``resolve_model_data_config``:
input size, ``crop_pct`` → resize of the shorter side then centre crop, interpolation, mean/std),
so a checkpoint trained with timm's defaults is served as it was validated.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.artifact import StageMeta
from models.errors import ModelImportError
from models.external import ImportSpec, InputSpec, OutputSpec, sha256_of
from models.importer import import_onnx
from models.samples import Sample

if TYPE_CHECKING:
    from torch import nn

EXPORT_ATOL = 1e-3


def import_timm(
    model_name: str,
    checkpoint: Path | str,
    model_dir: Path | str,
    *,
    stage: int,
    spec: ImportSpec | None = None,
    num_classes: int | None = None,
    calibration: Sequence[Sample] = (),
    method: str = "temperature",
) -> StageMeta:
    """``spec`` defaults to :func:`timm_spec` with a softmax output, harmful index 1."""
    checkpoint = Path(checkpoint)
    model = load_timm(model_name, checkpoint, num_classes)
    spec = spec or ImportSpec(timm_spec(model), OutputSpec())
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / f"{model_name}.onnx"
        export_timm(model, spec.input, onnx_path)
        return import_onnx(
            onnx_path,
            model_dir,
            stage=stage,
            spec=spec,
            name=model_name,
            calibration=calibration,
            method=method,
            provenance={
                "kind": "timm",
                "source": str(checkpoint.resolve()),
                "source_sha256": sha256_of(checkpoint),
                "timm_model": model_name,
            },
        )


def load_timm(model_name: str, checkpoint: Path, num_classes: int | None) -> nn.Module:
    """The timm model with the checkpoint's weights, strictly (every tensor must fit)."""
    import timm
    import torch

    if not checkpoint.is_file():
        raise ModelImportError(f"checkpoint {checkpoint} does not exist")
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelImportError(f"could not read checkpoint {checkpoint}: {exc}") from exc
    if isinstance(state, dict):
        state = state.get("state_dict", state.get("model", state))
    classes = num_classes or _classifier_width(model_name, state)
    try:
        model = timm.create_model(model_name, pretrained=False, num_classes=classes)
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise ModelImportError(
            f"checkpoint {checkpoint} does not fit timm's {model_name!r} with {classes} classes: {exc}"
        ) from exc
    return model.eval()


def _classifier_width(model_name: str, state: dict[str, Any]) -> int:
    import timm

    cfg = timm.get_pretrained_cfg(model_name)
    heads = cfg.classifier if cfg is not None else None
    for head in [heads] if isinstance(heads, str) else list(heads or []):
        weight = state.get(f"{head}.weight")
        if weight is not None:
            return int(weight.shape[0])
    raise ModelImportError(
        f"cannot tell the class count of this {model_name!r} checkpoint; pass --num-classes"
    )


def timm_spec(model: nn.Module) -> InputSpec:
    """timm's evaluation transform for ``model`` as an ``InputSpec``."""
    from timm.data import resolve_model_data_config

    cfg = resolve_model_data_config(model)
    size = int(cfg["input_size"][-1])
    mode = cfg.get("crop_mode", "center")
    if mode not in ("center", "squash"):
        raise ModelImportError(f"timm crop mode {mode!r} is not supported; pass an explicit spec")
    resize_to = math.floor(size / float(cfg.get("crop_pct", 1.0))) if mode == "center" else 0
    return InputSpec(
        size=size,
        resize_to=resize_to if resize_to > size else 0,
        resize="shorter" if mode == "center" else "direct",
        interpolation=str(cfg.get("interpolation", "bilinear")),
        mean=tuple(float(v) for v in cfg["mean"]),  # type: ignore[arg-type]
        std=tuple(float(v) for v in cfg["std"]),  # type: ignore[arg-type]
    )


def export_timm(model: nn.Module, spec: InputSpec, path: Path) -> Path:
    """ONNX with a dynamic batch, the exported graph checked against PyTorch."""
    import torch

    from models.export import onnx_max_abs_diff

    if spec.layout != "NCHW":
        raise ModelImportError("timm models take NCHW input; use --layout NCHW")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(2, 3, spec.size, spec.size),),
            str(path),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    diff = onnx_max_abs_diff(model, path, spec.size)
    if diff > EXPORT_ATOL:
        raise ModelImportError(
            f"the ONNX export differs from PyTorch by {diff:.2e} > {EXPORT_ATOL}"
        )
    return path
