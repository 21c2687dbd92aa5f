"""PyTorch eager engine: the reference every exported engine is checked against."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.artifact import load_model, read_meta
from models.engines.base import block_probability, check_batch
from models.errors import EngineUnavailable


class TorchEngine:
    """Eager FP32 PyTorch on ``cpu`` or ``cuda``."""

    kind = "torch"

    def __init__(self, stage_dir: Path | str, device: str = "cpu") -> None:
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineUnavailable(f"device {device!r} requested but no CUDA GPU is visible.")
        meta = read_meta(stage_dir)
        if "import" in meta.metrics:
            raise EngineUnavailable(
                f"{stage_dir} holds an imported model (ONNX only, no PyTorch weights); "
                "use engine kind 'onnx' (CPU or CUDA) or 'tensorrt'."
            )
        self.name = f"stage{meta.stage}:{meta.model_name}:torch"
        self.device = device
        self.preprocess = meta.preprocess
        self.temperature = meta.temperature
        self._torch = torch
        self._model = load_model(stage_dir).to(device)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.preprocess)
        with self._torch.inference_mode():
            out = self._model(self._torch.from_numpy(batch).to(self.device))
        return out.float().cpu().numpy()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros(0, dtype=np.float32)
        return block_probability(self.logits(batch), self.temperature)
