"""Inference engines: one ``Engine`` protocol, three runtimes, one factory.

``load_engine(stage_dir, kind, device)`` is what the workers call; each engine reads the
stage's ``meta.json`` for its preprocessing and temperature (see ``models.artifact``).
"""

from __future__ import annotations

from pathlib import Path

from models.engines.base import Engine, block_probability
from models.errors import EngineUnavailable

ENGINE_KINDS = ("torch", "onnx", "onnx-int8", "tensorrt")

__all__ = ["ENGINE_KINDS", "Engine", "EngineUnavailable", "block_probability", "load_engine"]


def load_engine(
    stage_dir: Path | str, kind: str = "onnx", device: str = "cpu", *, threads: int | None = None
) -> Engine:
    """Load one stage's model with the given runtime. Imports the runtime only when asked.

    ``threads``: CPU intra-op threads for the ONNX Runtime session (default: the usable cores,
    at most 8). PyTorch's thread count is process-wide; set it with ``torch.set_num_threads``.
    """
    if kind == "torch":
        from models.engines.torch_engine import TorchEngine

        return TorchEngine(stage_dir, device=device)
    if kind in ("onnx", "onnx-int8"):
        from models.engines.onnx_engine import OnnxEngine

        return OnnxEngine(stage_dir, int8=kind == "onnx-int8", device=device, threads=threads)
    if kind == "tensorrt":
        from models.engines.tensorrt_engine import TensorRTEngine

        return TensorRTEngine(stage_dir, device="cuda" if device == "cpu" else device)
    raise ValueError(f"Unknown engine kind {kind!r}; choose one of {', '.join(ENGINE_KINDS)}.")
