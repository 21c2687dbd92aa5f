"""`cascade models import`: an external ONNX or timm classifier served with its own preprocessing.

The reference in each test is computed independently of Cascade's code path: PIL geometry,
numpy normalisation and the *original* graph run by ONNX Runtime (or timm's own eval transform
and the PyTorch model), so a wrong channel order, layout, crop or output index shows up.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from models.artifact import read_meta
from models.engines import load_engine
from models.errors import EngineUnavailable, ExportError, ModelImportError
from models.export import export_stage
from models.external import ImportSpec, InputSpec, OutputSpec
from models.importer import import_onnx
from models.preprocess import decode_image, preprocess_batch


def photo(seed: int, w: int, h: int) -> bytes:
    """A smooth, photo-like PNG (gradients + blobs), so resampling differences would show."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    base = np.stack([np.sin(6 * xx + c) * 0.5 + 0.5 for c in rng.uniform(0, 6, 3)], axis=-1)
    base = base * np.cos(4 * yy)[..., None] ** 2
    noise = rng.normal(0, 0.05, (h, w, 3))
    arr = np.clip((base + noise) * 255, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


PHOTOS = [photo(i, w, h) for i, (w, h) in enumerate([(96, 64), (64, 64), (70, 110), (128, 80)])]


def tiny_classifier(
    path: Path, *, layout: str, classes: int, size: int, fixed_batch: bool = False, opset: int = 13
) -> Path:
    """A random conv net taking ``layout`` input, exported to ONNX (dynamic batch unless
    ``fixed_batch``, which reshapes with a hard-coded batch of 1 as some exporters do)."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
            self.head = torch.nn.Linear(8, classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if layout == "NHWC":
                x = x.permute(0, 3, 1, 2)
            x = torch.relu(self.conv(x)).mean(dim=(2, 3))
            return self.head(x.reshape(1, -1) if fixed_batch else x)

    torch.manual_seed(0)
    shape = (1, 3, size, size) if layout == "NCHW" else (1, size, size, 3)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(Net().eval(), shape, path, fixed_batch, opset)
    return path


def _export(net: Any, shape: tuple[int, ...], path: Path, fixed_batch: bool, opset: int) -> None:
    import torch

    torch.onnx.export(
        net,
        (torch.zeros(shape),),
        str(path),
        input_names=["pixels"],
        output_names=["scores"],
        dynamic_axes=None if fixed_batch else {"pixels": {0: "n"}, "scores": {0: "n"}},
        opset_version=opset,
        dynamo=False,
    )


def reference_scores(source: Path, spec: ImportSpec, images: list[bytes]) -> np.ndarray:
    """P(harmful) the way the model's authors would compute it, without Cascade's code."""
    inp, out = spec.input, spec.output
    batch = []
    for data in images:
        img = Image.open(io.BytesIO(data)).convert("RGB")
        resample = getattr(Image.Resampling, inp.interpolation.upper())
        side = inp.resize_to or inp.size
        img = img.resize((side, side), resample)
        off = (side - inp.size) // 2
        img = img.crop((off, off, off + inp.size, off + inp.size))
        x = np.asarray(img, np.float32)
        if inp.channels == "BGR":
            x = x[..., ::-1]
        x = (x * inp.scale - np.asarray(inp.mean, np.float32)) / np.asarray(inp.std, np.float32)
        batch.append(x if inp.layout == "NHWC" else x.transpose(2, 0, 1))
    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {session.get_inputs()[0].name: np.stack(batch).astype(np.float32)})
    y = np.asarray(y, np.float64)
    if out.activation == "softmax":
        y = np.exp(y - y.max(axis=1, keepdims=True))
        y = y / y.sum(axis=1, keepdims=True)
    elif out.activation == "sigmoid":
        y = 1 / (1 + np.exp(-y))
    return y[:, out.harmful_index]


def cascade_scores(stage_dir: Path, images: list[bytes], kind: str = "onnx") -> np.ndarray:
    engine = load_engine(stage_dir, kind)
    decoded = [decode_image(d, max_pixels=10**8) for d in images]
    return engine.predict(preprocess_batch(decoded, engine.preprocess))


CASES = [
    # layout, channels, activation, harmful index, classes, scale, mean, std
    ("NCHW", "RGB", "softmax", 1, 2, 1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ("NHWC", "BGR", "softmax", 2, 4, 1.0, (104.0, 117.0, 123.0), (1.0, 1.0, 1.0)),
    ("NCHW", "BGR", "sigmoid", 0, 3, 1 / 127.5, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)),
    ("NHWC", "RGB", "sigmoid", 0, 1, 1 / 255, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0)),
]


@pytest.mark.parametrize(
    ("layout", "channels", "activation", "k", "classes", "scale", "mean", "std"), CASES
)
def test_import_matches_the_models_own_pipeline(
    tmp_path: Path, layout, channels, activation, k, classes, scale, mean, std
) -> None:
    source = tiny_classifier(tmp_path / "m.onnx", layout=layout, classes=classes, size=32)
    spec = ImportSpec(
        InputSpec(
            size=32, resize_to=40, channels=channels, scale=scale, mean=mean, std=std, layout=layout
        ),
        OutputSpec(name="scores", harmful_index=k, activation=activation),
    )
    meta = import_onnx(source, tmp_path / "models", stage=2, spec=spec, name="tiny")
    assert meta.stage == 2 and meta.model_name == "tiny"
    got = cascade_scores(tmp_path / "models" / "stage2", PHOTOS)
    np.testing.assert_allclose(got, reference_scores(source, spec, PHOTOS), atol=1e-5)


def test_probability_outputs_keep_their_precision_near_one(tmp_path: Path) -> None:
    """A model that already outputs probabilities (open_nsfw does): P passes through, and the
    log-odds stay exact at P = 1 - 1e-6, where forming 1 - p in float32 would be 1 % off."""
    import onnx
    from onnx import TensorProto, helper

    # probs = softmax(mean pixel * [-w, w]): a white image gets P(harmful) = 1 - 1e-6
    w = np.asarray([[-1.0, 1.0]], np.float32) * np.float32(np.log(1e6) / (2 * 255))
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2, 3], keepdims=0),
            helper.make_node("Unsqueeze", ["m"], ["m2"], axes=[1]),
            helper.make_node("Mul", ["m2", "w"], ["z"]),
            helper.make_node("Softmax", ["z"], ["p"], axis=1),
        ],
        "probs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 16, 16])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["n", 2])],
        initializer=[onnx.numpy_helper.from_array(w, "w")],
    )
    source = tmp_path / "p.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), str(source))
    spec = ImportSpec(
        InputSpec(size=16, scale=1.0, mean=(0, 0, 0), std=(1, 1, 1)),
        OutputSpec(activation="probability", harmful_index=1),
    )
    import_onnx(source, tmp_path / "models", stage=1, spec=spec)
    images = [photo(1, 40, 40), _solid(255), _solid(0)]
    got = cascade_scores(tmp_path / "models" / "stage1", images)
    np.testing.assert_allclose(got, reference_scores(source, spec, images), atol=1e-6)
    engine = load_engine(tmp_path / "models" / "stage1", "onnx")
    white = preprocess_batch([decode_image(_solid(255), max_pixels=10**8)], engine.preprocess)
    logits = engine.logits(white)[0]  # type: ignore[attr-defined]
    assert logits[1] - logits[0] == pytest.approx(np.log(1e6), rel=1e-4)
    assert got[2] == pytest.approx(0.5, abs=1e-6)


def _solid(value: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), (value, value, value)).save(buf, format="PNG")
    return buf.getvalue()


def test_import_records_provenance_and_smoke_test(tmp_path: Path) -> None:
    source = tiny_classifier(tmp_path / "m.onnx", layout="NCHW", classes=2, size=32)
    spec = ImportSpec(InputSpec(size=32), OutputSpec(class_names=("safe", "unsafe")))
    import_onnx(source, tmp_path / "models", stage=1, spec=spec)
    raw = json.loads((tmp_path / "models" / "stage1" / "meta.json").read_text())
    record = raw["metrics"]["import"]
    assert record["kind"] == "onnx" and len(record["source_sha256"]) == 64
    assert record["smoke"]["dynamic_batch"] is True and len(record["smoke"]["scores"]) == 3
    assert record["spec"]["output"]["class_names"] == ["safe", "unsafe"]
    assert ImportSpec.from_dict(record["spec"]) == spec
    assert raw["class_names"] == ["allow", "block"]  # Cascade's classes; the source's are recorded
    import hashlib

    digest = hashlib.sha256(
        (tmp_path / "models" / "stage1" / "model.onnx").read_bytes()
    ).hexdigest()
    assert record["model_sha256"] == digest


def test_fixed_batch_is_refused_and_the_old_stage_survives(tmp_path: Path) -> None:
    good = tiny_classifier(tmp_path / "good.onnx", layout="NCHW", classes=2, size=32)
    bad = tiny_classifier(
        tmp_path / "bad.onnx", layout="NCHW", classes=2, size=32, fixed_batch=True
    )
    spec = ImportSpec(InputSpec(size=32), OutputSpec(name="scores"))
    import_onnx(good, tmp_path / "models", stage=1, spec=spec, name="good")
    with pytest.raises(ModelImportError, match="batch axis is fixed"):
        import_onnx(bad, tmp_path / "models", stage=1, spec=spec, name="bad")
    assert read_meta(tmp_path / "models" / "stage1").model_name == "good"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["stage1"]


def test_mistakes_in_the_spec_are_explained(tmp_path: Path) -> None:
    source = tiny_classifier(tmp_path / "m.onnx", layout="NCHW", classes=2, size=32)
    models = tmp_path / "models"
    with pytest.raises(ModelImportError, match="--layout"):
        import_onnx(source, models, stage=1, spec=ImportSpec(InputSpec(size=32, layout="NHWC")))
    with pytest.raises(ModelImportError, match="--size"):
        import_onnx(source, models, stage=1, spec=ImportSpec(InputSpec(size=48)))
    with pytest.raises(ModelImportError, match="no output 'probs'"):
        import_onnx(
            source, models, stage=1, spec=ImportSpec(InputSpec(size=32), OutputSpec(name="probs"))
        )
    with pytest.raises(ModelImportError, match="out of range"):
        import_onnx(
            source,
            models,
            stage=1,
            spec=ImportSpec(InputSpec(size=32), OutputSpec(harmful_index=5)),
        )
    with pytest.raises(ModelImportError, match="not an ONNX model"):
        (tmp_path / "junk.onnx").write_bytes(b"not a model")
        import_onnx(tmp_path / "junk.onnx", models, stage=1, spec=ImportSpec())
    with pytest.raises(ValueError, match="layout"):
        InputSpec(layout="CHW")
    assert not models.exists() or not any(models.iterdir())


def test_an_imported_stage_is_onnx_only(tmp_path: Path) -> None:
    source = tiny_classifier(tmp_path / "m.onnx", layout="NCHW", classes=2, size=32)
    import_onnx(source, tmp_path / "models", stage=1, spec=ImportSpec(InputSpec(size=32)))
    stage = tmp_path / "models" / "stage1"
    with pytest.raises(EngineUnavailable, match="imported model"):
        load_engine(stage, "torch")
    with pytest.raises(ExportError, match="imported model"):
        export_stage(stage, int8=False)


def test_timm_checkpoint_matches_timms_own_eval_transform(tmp_path: Path) -> None:
    """timm name + checkpoint: served with timm's eval transform (resize shorter side, centre
    crop, bicubic, the model's mean/std), output softmax over the checkpoint's 3 classes."""
    import timm
    import torch
    from timm.data import create_transform, resolve_model_data_config

    from models.import_timm import import_timm

    torch.manual_seed(0)
    model = timm.create_model("mobilenetv3_small_050", num_classes=3).eval()
    torch.save(model.state_dict(), tmp_path / "ckpt.pt")
    meta = import_timm("mobilenetv3_small_050", tmp_path / "ckpt.pt", tmp_path / "models", stage=1)
    assert (meta.preprocess.size, meta.preprocess.resize_to, meta.preprocess.resize) == (
        224,
        256,
        "shorter",
    )
    # Sizes whose crops land on whole pixels (torchvision rounds half-pixel offsets to even).
    images = [photo(7, 480, 320), photo(8, 256, 256), photo(9, 300, 500)]
    transform = create_transform(**resolve_model_data_config(model))
    x = torch.stack([transform(Image.open(io.BytesIO(d)).convert("RGB")) for d in images])
    with torch.inference_mode():
        expected = torch.softmax(model(x), dim=1)[:, 1].numpy()
    got = cascade_scores(tmp_path / "models" / "stage1", images)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_timm_checkpoint_of_another_architecture_is_refused(tmp_path: Path) -> None:
    import timm
    import torch

    from models.import_timm import import_timm

    torch.save(
        timm.create_model("mobilenetv3_small_050", num_classes=2).state_dict(), tmp_path / "c.pt"
    )
    with pytest.raises(ModelImportError, match="--num-classes"):
        import_timm("resnet18", tmp_path / "c.pt", tmp_path / "models", stage=1)
    with pytest.raises(ModelImportError, match="does not fit"):
        import_timm("resnet18", tmp_path / "c.pt", tmp_path / "models", stage=1, num_classes=2)
