"""``cascade models import``: an external classifier (ONNX file, or timm name + checkpoint) as a stage.

The result is an ordinary stage directory: ``model.onnx`` (the original graph wrapped by
``models.onnx_wrap``: Cascade's input in, 2-class logits out) and ``meta.json`` in the format
trained stages use, with the provenance under ``metrics.import`` (source, sha256 of the source and
of ``model.onnx``, the full import spec, the smoke test, the calibration). An import is built in a
scratch directory and swapped in only once it passed its smoke test, so a failed import never
leaves a half-written stage where workers would load it.

What an import checks, and why: the graph accepts the spec's input (size and layout), the chosen
output has the harmful index, a batch of 3 gives exactly what 3 single images give (workers batch,
so a graph exported with a fixed batch of 1 must be refused here rather than in production), and
scores are finite probabilities.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from models.artifact import ONNX, StageMeta, read_meta, stage_dir, write_meta
from models.errors import ModelImportError
from models.external import ImportSpec, sha256_of
from models.import_calibration import calibrate
from models.onnx_wrap import check_source, wrap
from models.samples import Sample

BATCH_TOLERANCE = 1e-5


def import_onnx(
    source: Path | str,
    model_dir: Path | str,
    *,
    stage: int,
    spec: ImportSpec,
    name: str | None = None,
    calibration: Sequence[Sample] = (),
    method: str = "temperature",
    provenance: dict[str, Any] | None = None,
) -> StageMeta:
    """Import an ONNX classifier as ``<model_dir>/stage<N>``; returns the written meta."""
    source = Path(source)
    if not source.is_file():
        raise ModelImportError(f"{source} does not exist")
    try:
        original = onnx.load(str(source))
    except Exception as exc:  # protobuf raises several types on a non-ONNX file
        raise ModelImportError(f"{source} is not an ONNX model: {exc}") from exc
    check_source(original, spec)
    width = output_width(original, spec)
    record = {
        "kind": "onnx",
        "source": str(source.resolve()),
        "source_sha256": sha256_of(source),
        "opset": max(
            (o.version for o in original.opset_import if o.domain in ("", "ai.onnx")), default=0
        ),
        "output_width": width,
        **(provenance or {}),
    }
    return _build_stage(
        original,
        spec,
        width,
        Path(model_dir),
        stage,
        name or source.stem,
        record,
        calibration,
        method,
    )


def output_width(model: onnx.ModelProto, spec: ImportSpec) -> int:
    """Columns of the chosen output, measured on one real run (exported graphs often leave the
    class axis symbolic)."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise ModelImportError(f"ONNX Runtime cannot load the model: {exc}") from exc
    inp = spec.input
    shape = (1, 3, inp.size, inp.size) if inp.layout == "NCHW" else (1, inp.size, inp.size, 3)
    names = [o.name for o in session.get_outputs()]
    wanted = spec.output.name or names[0]
    if wanted not in names:
        raise ModelImportError(f"the model has no output {wanted!r}; it has {names}")
    try:
        (out,) = session.run([wanted], {session.get_inputs()[0].name: np.zeros(shape, np.float32)})
    except Exception as exc:
        raise ModelImportError(
            f"the model does not run on a {inp.layout} input of {inp.size} px ({exc}); "
            "check --size and --layout"
        ) from exc
    return int(np.prod(np.asarray(out).shape[1:], dtype=np.int64))


def _build_stage(
    original: onnx.ModelProto,
    spec: ImportSpec,
    width: int,
    model_dir: Path,
    stage: int,
    name: str,
    record: dict[str, Any],
    calibration: Sequence[Sample],
    method: str,
) -> StageMeta:
    target = stage_dir(model_dir, stage)
    scratch = target.with_name(f".{target.name}.import")
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        write_graph(scratch, wrap(original, spec, width=width))
        meta = StageMeta(
            model_name=name,
            stage=stage,
            preprocess=spec.input.host_config(),
            metrics={"import": record | {"spec": spec.to_dict()}},
            data_fingerprint=record["source_sha256"][:16],
        )
        write_meta(scratch, meta)
        smoke = smoke_test(scratch)
        if calibration:
            temperature, iso, report = calibrate(scratch, calibration, method)
            if iso is not None:
                write_graph(scratch, wrap(original, spec, width=width, isotonic=iso))
                smoke = smoke_test(scratch)
            meta = meta.with_(temperature=temperature)
            record = record | {"calibration": report}
        record = record | {
            "spec": spec.to_dict(),
            "smoke": smoke,
            "model_sha256": sha256_of(scratch / ONNX),
        }
        write_meta(scratch, meta.with_(metrics={"import": record}))
        swap_in(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return read_meta(target)


def write_graph(directory: Path, model: onnx.ModelProto) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{ONNX}.tmp"
    onnx.save(model, str(tmp))
    return tmp.replace(directory / ONNX)


def smoke_test(directory: Path) -> dict[str, Any]:
    """Load the stage with the ONNX Runtime engine, score 3 images alone and as one batch."""
    from models.engines import load_engine
    from models.preprocess import preprocess_batch

    engine = load_engine(directory, "onnx", threads=1)
    images = _probe_images()
    batch = preprocess_batch(images, engine.preprocess)
    singles = np.concatenate([engine.predict(batch[i : i + 1]) for i in range(len(images))])
    try:
        together = engine.predict(batch)
    except Exception as exc:
        raise ModelImportError(
            "the model runs on one image but not on a batch of 3: its batch axis is fixed. "
            f"Re-export it with a dynamic batch axis (ONNX Runtime said: {exc})"
        ) from exc
    if not np.all(np.isfinite(together)) or together.min() < 0 or together.max() > 1:
        raise ModelImportError(f"the wrapped model gives no probabilities: {together.tolist()}")
    diff = float(np.max(np.abs(together - singles)))
    if diff > BATCH_TOLERANCE:
        raise ModelImportError(
            f"scores change with the batch (by {diff:.2e}); is the output the right one?"
        )
    return {
        "scores": [round(float(v), 6) for v in together],
        "dynamic_batch": True,
        "batch_max_abs_diff": diff,
    }


def _probe_images() -> list[Any]:
    """Three deterministic, photo-sized RGB images of different shapes."""
    from PIL import Image

    rng = np.random.default_rng(17)
    out = []
    for h, w in ((300, 400), (256, 256), (480, 320)):
        ramp = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
        noise = rng.integers(0, 60, (h, w, 3))
        out.append(Image.fromarray(np.clip(ramp + noise, 0, 255).astype(np.uint8)))
    return out


def swap_in(scratch: Path, target: Path) -> None:
    """Replace ``target`` by ``scratch`` with two renames (old stage kept until the new is in)."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    scratch.rename(target)
    shutil.rmtree(old, ignore_errors=True)
