"""TensorRT engine (GPU): runs the serialized ``model.plan`` built by ``models.export_tensorrt``.

``tensorrt`` is an optional extra (``pip install cascade-moderation[tensorrt]``) and only
imported here, when a TensorRT engine is asked for. Device buffers are torch CUDA tensors,
so no extra CUDA binding package is needed.

Each engine owns a non-default CUDA stream: copies in, ``execute_async_v3`` and the copy out are
queued on it and only it is synchronised. On the legacy default stream every launch would
serialise with all other work on the device (other engines, other threads' copies).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.artifact import PLAN, read_meta, require_file
from models.engines.base import block_probability, check_batch
from models.errors import EngineUnavailable


def import_tensorrt() -> Any:
    """``tensorrt`` or a clear ``EngineUnavailable`` saying how to get it."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EngineUnavailable(
            "TensorRT is not installed. On a CUDA host: pip install 'cascade-moderation[tensorrt]' "
            "(NVIDIA's wheels), then `cascade export --tensorrt`. Use kind='onnx' on CPU."
        ) from exc
    return trt


class TensorRTEngine:
    """Executes a TensorRT 10+ plan with the name-based I/O API (``execute_async_v3``)."""

    kind = "tensorrt"

    def __init__(self, stage_dir: Path | str, device: str = "cuda") -> None:
        trt = import_tensorrt()
        import torch

        if not device.startswith("cuda") or not torch.cuda.is_available():
            raise EngineUnavailable(f"TensorRT needs a CUDA device; got {device!r}.")
        meta = read_meta(stage_dir)
        plan = require_file(stage_dir, PLAN, "run `cascade export --tensorrt` on a GPU host.")
        self.name = f"stage{meta.stage}:{meta.model_name}:tensorrt"
        self.device = device
        self.preprocess = meta.preprocess
        self.temperature = meta.temperature
        self._torch = torch
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(plan.read_bytes())
        if self._engine is None:
            raise EngineUnavailable(f"{plan} could not be deserialized (built for another GPU?)")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._input, self._output = inputs[0], next(n for n in names if n not in inputs)
        self._max_batch = int(self._engine.get_tensor_profile_shape(self._input, 0)[2][0])
        self._in_dtype = self._torch_dtype(trt, self._input)
        self._out_dtype = self._torch_dtype(trt, self._output)
        self._stream = torch.cuda.Stream(device=torch.device(device))

    def _torch_dtype(self, trt: Any, name: str) -> Any:
        return self._torch.from_numpy(
            np.zeros(1, trt.nptype(self._engine.get_tensor_dtype(name)))
        ).dtype

    def logits(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.preprocess)
        chunks = [
            self._run(batch[i : i + self._max_batch]) for i in range(0, len(batch), self._max_batch)
        ]
        return np.concatenate(chunks).astype(np.float32)

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        """One chunk, entirely on the engine's own stream (allocations included, so torch's
        caching allocator ties the buffers to that stream)."""
        torch = self._torch
        with torch.cuda.stream(self._stream):
            x = torch.from_numpy(chunk).to(self.device, dtype=self._in_dtype, non_blocking=True)
            self._context.set_input_shape(self._input, tuple(x.shape))
            out = torch.empty(
                tuple(self._context.get_tensor_shape(self._output)),
                dtype=self._out_dtype,
                device=self.device,
            )
            self._context.set_tensor_address(self._input, x.data_ptr())
            self._context.set_tensor_address(self._output, out.data_ptr())
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
            result = out.float().cpu()  # a synchronous copy: waits for this stream only
        self._stream.synchronize()
        return result.numpy()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros(0, dtype=np.float32)
        return block_probability(self.logits(batch), self.temperature)
