"""ONNX Runtime engine: the default for CPU serving (FP32 or the INT8 QDQ graph)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from models.artifact import ONNX, ONNX_INT8, read_meta, require_file
from models.engines.base import block_probability, check_batch
from models.errors import EngineUnavailable


def default_threads() -> int:
    """Intra-op threads: all cores this process may use, capped at 8 (more rarely helps
    small convnets and starves the decode threads of the same worker)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


class OnnxEngine:
    """``kind="onnx"`` runs ``model.onnx``; ``kind="onnx-int8"`` runs ``model.int8.onnx``."""

    def __init__(
        self,
        stage_dir: Path | str,
        *,
        int8: bool = False,
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        meta = read_meta(stage_dir)
        filename = ONNX_INT8 if int8 else ONNX
        path = require_file(
            stage_dir,
            filename,
            "run `cascade export --model-dir DIR --stage N"
            + (" --int8`" if int8 else "`")
            + " to create it.",
        )
        self.kind = "onnx-int8" if int8 else "onnx"
        self.name = f"stage{meta.stage}:{meta.model_name}:{self.kind}"
        self.device = device
        self.preprocess = meta.preprocess
        self.temperature = meta.temperature
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(
            str(path), sess_options=options, providers=self._providers(ort, device)
        )
        self._input = self._session.get_inputs()[0].name

    @staticmethod
    def _providers(ort, device: str) -> list[str]:  # type: ignore[no-untyped-def]
        if device == "cpu":
            return ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        raise EngineUnavailable(
            f"ONNX Runtime here has no provider for device {device!r} "
            f"(available: {ort.get_available_providers()}); use device='cpu'."
        )

    def logits(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.preprocess)
        (out,) = self._session.run(None, {self._input: batch})
        return np.asarray(out, dtype=np.float32)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros(0, dtype=np.float32)
        return block_probability(self.logits(batch), self.temperature)
