"""The in-process ceiling: what one Python process on one core does with the same images.

Bytes → decode → preprocess → stage 1 for every image, → stage 2 for exactly the images the
cascade escalated in the end-to-end run, in batches of the stack's sizes, nothing else: no
HTTP, no database, no broker, no storage. The decode is the product's own (``decode_image``
with the same JPEG draft size intake uses), the engines are the workers' (one intra-op thread:
one core). The benchmark times it more than once and keeps the fastest pass, so the yardstick is
never the slow one.

Beside it, ``raw_stage1``: the stage-1 engine alone on an already preprocessed batch; and
``Ceiling.gate_cpu_ms``: the CPU of the stages' out-of-distribution gates (``models.ood``, a third
network the workers run on every image a stage would decide automatically) on the images the
stack gated. The ceiling leaves the gates out (the issue's yardstick); this says what the
product's own gate costs beside it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cascade.config import Settings
from cascade.derivative import draft_size, stage_configs
from models.engines import load_engine
from models.preprocess import decode_image, preprocess_batch
from services.bench.e2e_report import E2EResult


@dataclass(frozen=True)
class CeilingResult:
    images_per_s: float
    decode_ms: float  # per image
    stage1_ms: float  # preprocess + inference, per image
    stage2_ms: float  # per image of all images (only the escalated ones run it)
    cpu_ms: float  # CPU per image (this process, all its threads): the load-independent figure


class Ceiling:
    """The two engines, loaded and warm (as the workers are before taking traffic); each
    ``measure`` is one timed pass."""

    def __init__(self, model_dir: Path, *, kind: str = "onnx") -> None:
        self.e1, self.e2 = (load_engine(model_dir / f"stage{s}", kind=kind, threads=1)
                            for s in (1, 2))  # fmt: skip
        self.draft_to = draft_size(stage_configs(model_dir))
        self.gates = [_gate(model_dir / f"stage{s}") for s in (1, 2)]
        for engine in (self.e1, self.e2):
            size = engine.preprocess.size
            engine.predict(np.zeros((1, 3, size, size), dtype=np.float32))

    def measure(
        self, images: Sequence[bytes], escalated: Sequence[bool], *,
        batch1: int, batch2: int, max_pixels: int,
    ) -> CeilingResult:  # fmt: skip
        """One pass over ``images``, stage 2 where ``escalated``."""
        return _one_pass(self.e1, self.e2, images, escalated, batch1, batch2, max_pixels,
                         self.draft_to)  # fmt: skip

    def gate_cpu_ms(
        self, images: Sequence[bytes], gated: tuple[Sequence[bool], Sequence[bool]], *,
        batch: int, max_pixels: int,
    ) -> float | None:  # fmt: skip
        """CPU ms per image (of all ``images``) of each stage's OOD gate on the images
        ``gated`` at that stage, in batches of ``batch``; None when the stages have no gates.
        Decoding and preprocessing are not counted (the ceiling has them already)."""
        if not any(self.gates):
            return None
        spent = 0.0
        for gate, engine, which in zip(self.gates, (self.e1, self.e2), gated, strict=True):
            picked = [b for b, g in zip(images, which, strict=True) if g]
            if gate is None or not picked:
                continue
            for start in range(0, len(picked), batch):
                decoded = [decode_image(b, max_pixels=max_pixels, draft_to=self.draft_to)
                           for b in picked[start : start + batch]]  # fmt: skip
                tensor = preprocess_batch(decoded, engine.preprocess)
                t0 = time.process_time()
                gate.far(tensor)
                spent += time.process_time() - t0
        return spent / max(len(images), 1) * 1000


def _gate(stage_dir: Path) -> Any:
    """The stage's OOD gate (``models.ood.OodGate``, one thread) when it has one."""
    from models.ood import GRAPH, REFERENCE, OodGate

    if (stage_dir / GRAPH).is_file() and (stage_dir / REFERENCE).is_file():
        return OodGate(stage_dir, threads=1)
    return None


def _one_pass(
    e1: Any, e2: Any, images: Sequence[bytes], escalated: Sequence[bool],
    batch1: int, batch2: int, max_pixels: int, draft_to: int,
) -> CeilingResult:  # fmt: skip
    spent = {"decode": 0.0, "stage1": 0.0, "stage2": 0.0}
    waiting: list[Any] = []
    started, cpu_started = time.perf_counter(), time.process_time()
    for start in range(0, len(images), batch1):
        t0 = time.perf_counter()
        chunk = range(start, min(start + batch1, len(images)))
        decoded = [decode_image(images[i], max_pixels=max_pixels, draft_to=draft_to) for i in chunk]
        t1 = time.perf_counter()
        e1.predict(preprocess_batch(decoded, e1.preprocess))
        t2 = time.perf_counter()
        waiting += [img for i, img in zip(chunk, decoded, strict=True) if escalated[i]]
        while len(waiting) >= batch2 or (waiting and start + batch1 >= len(images)):
            e2.predict(preprocess_batch(waiting[:batch2], e2.preprocess))
            waiting = waiting[batch2:]
        spent["decode"] += t1 - t0
        spent["stage1"] += t2 - t1
        spent["stage2"] += time.perf_counter() - t2
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    n = max(len(images), 1)
    return CeilingResult(
        images_per_s=len(images) / seconds if seconds > 0 else 0.0,
        decode_ms=spent["decode"] / n * 1000,
        stage1_ms=spent["stage1"] / n * 1000,
        stage2_ms=spent["stage2"] / n * 1000,
        cpu_ms=cpu / n * 1000,
    )


def raw_stage1(
    model_dir: Path, images: Sequence[bytes], *, batch: int, max_pixels: int,
    kind: str = "onnx", seconds: float = 3.0,
) -> float:  # fmt: skip
    """Images/s of the stage-1 engine alone (one thread) on one preprocessed batch."""
    engine = load_engine(model_dir / "stage1", kind=kind, threads=1)
    imgs = [decode_image(b, max_pixels=max_pixels) for b in images[:batch]]
    tensor = preprocess_batch(imgs, engine.preprocess)
    engine.predict(tensor)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        engine.predict(tensor)
        done += len(tensor)
    return done / (time.perf_counter() - started)


class CeilingRun:
    """The ceiling's passes over the measured images; ``record`` keeps the fastest."""

    def __init__(
        self, model_dir: Path, settings: Settings, images: list[bytes], escalated: list[bool],
        gated: tuple[list[bool], list[bool]] | None = None,
    ) -> None:  # fmt: skip
        self.ceiling = Ceiling(model_dir, kind=settings.engine)
        self.settings, self.images, self.escalated = settings, images, escalated
        self.gated = gated
        self.passes: list[CeilingResult] = []
        self.gate_ms: float | None = None

    def measure(self) -> None:
        s = self.settings
        self.passes.append(self.ceiling.measure(
            self.images, self.escalated, batch1=s.stage1_batch_size,
            batch2=s.stage2_batch_size, max_pixels=s.max_pixels,
        ))  # fmt: skip

    def measure_gates(self) -> None:
        """The OOD gates' CPU on the images the stack gated (once: it is CPU time)."""
        if self.gated is not None:
            s = self.settings
            self.gate_ms = self.ceiling.gate_cpu_ms(
                self.images, self.gated, batch=s.stage1_batch_size, max_pixels=s.max_pixels
            )

    def record(self, result: E2EResult) -> None:
        c = max(self.passes, key=lambda p: p.images_per_s)
        result.ceiling_images_per_s = c.images_per_s
        result.ratio_to_ceiling = (
            result.e2e_images_per_s / c.images_per_s if c.images_per_s else 0.0
        )
        result.ceiling_ms_per_image = {"decode": c.decode_ms, "stage1": c.stage1_ms,
                                       "stage2": c.stage2_ms, "cpu": c.cpu_ms}  # fmt: skip
        cpu = result.cpu_ms_per_image or {}
        product = sum(v for k, v in cpu.items() if k != "benchmark_client")
        result.cpu_ratio_two_cores = 2 * c.cpu_ms / product if product else 0.0
        if self.gate_ms is not None:
            result.ceiling_ms_per_image["ood_gate_cpu"] = self.gate_ms
            with_gate = c.cpu_ms + self.gate_ms
            result.cpu_ratio_two_cores_with_ood_gate = 2 * with_gate / product if product else 0.0
