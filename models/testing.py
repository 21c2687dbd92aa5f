"""Test helpers that other packages' tests use: a real but untrained model directory.

``make_tiny_model_dir`` builds both stages from random weights at a tiny input size and exports
them to ONNX with their ``meta.json``, so cascade and worker tests exercise the real engines and
the real file contract in a few seconds, without training or any download.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.artifact import StageMeta, save_weights, stage_dir, write_meta
from models.export import export_onnx, quantize_int8
from models.registry import create_model, preprocess_config_for

TINY_MODELS = {1: "mobilenetv3_small_050", 2: "tf_efficientnetv2_b0"}


def make_tiny_model_dir(
    out: Path,
    *,
    size: int = 32,
    seed: int = 0,
    int8: bool = False,
    temperature: float = 1.0,
    head_std: float = 0.05,
) -> Path:
    """Random-init stage 1 and stage 2 under ``out/stage1`` and ``out/stage2`` (``model.pt``,
    ``model.onnx``, ``meta.json``; ``model.int8.onnx`` when ``int8``). Returns ``out``."""
    import torch

    torch.manual_seed(seed)
    for stage, name in TINY_MODELS.items():
        directory = stage_dir(out, stage)
        model = create_model(name).eval()
        # A random (not zero) head, so untrained scores spread over (0, 1) like real ones.
        head = model.get_classifier()  # type: ignore[operator]
        torch.nn.init.normal_(head.weight, std=head_std)
        torch.nn.init.normal_(head.bias, std=head_std)
        meta = StageMeta(
            model_name=name,
            stage=stage,
            preprocess=preprocess_config_for(name, size),
            temperature=temperature,
            metrics={"note": "random init, untrained (models.testing)"},
            data_fingerprint="tiny-random",
        )
        write_meta(directory, meta)
        save_weights(directory, model)
        export_onnx(directory, model=model)
        if int8:
            rng = np.random.default_rng(seed)
            quantize_int8(directory, rng.standard_normal((8, 3, size, size)).astype(np.float32))
    return Path(out)
