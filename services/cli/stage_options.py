"""The import spec as command-line options: each given option overrides the base spec (a
preset, timm's own transform, or the defaults); what is not given keeps the base's value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from models.external import ImportSpec

_INPUT = {
    "size": click.option("--size", type=click.IntRange(min=8), default=None, help="Model input, px."),
    "resize_to": click.option("--resize-to", type=click.IntRange(min=0), default=None,
                              help="Resize to this, then centre-crop --size (0: straight to --size)."),
    "resize": click.option("--resize", type=click.Choice(["direct", "shorter"]), default=None,
                           help="direct: to a square; shorter: the shorter side, aspect kept."),
    "interpolation": click.option("--interpolation", default=None,
                                  type=click.Choice(["nearest", "bilinear", "bicubic", "lanczos"])),
    "jpeg_quality": click.option("--jpeg-quality", type=click.IntRange(0, 95), default=None,
                                 help="JPEG round trip after the crop (0: none)."),
    "channels": click.option("--channels", type=click.Choice(["RGB", "BGR"]), default=None),
    "scale": click.option("--scale", type=float, default=None, help="Pixel (0..255) multiplier."),
    "mean": click.option("--mean", default=None, help="3 values, model channel order, after --scale."),
    "std": click.option("--std", default=None, help="3 values, model channel order, after --scale."),
    "layout": click.option("--layout", type=click.Choice(["NCHW", "NHWC"]), default=None),
}  # fmt: skip
_OUTPUT = {
    "output": click.option("--output", default=None, help="Output name (default: the first)."),
    "harmful_index": click.option("--harmful-index", type=click.IntRange(min=0), default=None),
    "activation": click.option("--activation", default=None,
                               type=click.Choice(["softmax", "sigmoid", "probability"])),
    "class_names": click.option("--class-names", default=None, help="Comma-separated."),
    "spec_file": click.option("--spec", "spec_file", default=None,
                              type=click.Path(exists=True, dir_okay=False),
                              help="A JSON import spec (as meta.json records it) as the base."),
}  # fmt: skip


def import_spec_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([*_INPUT.values(), *_OUTPUT.values()]):
        command = option(command)
    return command


def spec_from_options(base: ImportSpec, options: dict[str, Any]) -> ImportSpec:
    import json
    from pathlib import Path

    if options.get("spec_file"):
        base = ImportSpec.from_dict(json.loads(Path(options["spec_file"]).read_text()))
    given = {k: v for k, v in options.items() if v is not None and k != "spec_file"}
    for key in ("mean", "std"):
        if key in given:
            given[key] = _three(key, given[key])
    inputs = {k: v for k, v in given.items() if k in _INPUT}
    outputs = {("name" if k == "output" else k): v for k, v in given.items() if k in _OUTPUT}
    if "class_names" in outputs:
        outputs["class_names"] = tuple(n.strip() for n in outputs["class_names"].split(","))
    try:
        return base.with_input(**inputs).with_output(**outputs)
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(str(exc)) from exc


def _three(name: str, text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise click.BadParameter(f"--{name} takes 3 comma-separated numbers, got {text!r}")
    return values  # type: ignore[return-value]
