"""`cascade bench peers`: what a cascade saves in front of a real moderation model.

The peer is Yahoo's open_nsfw (ResNet-50 at 224 px), what a team would otherwise run on every
image; the screener is the default preset's stage 1 (mobilenetv3_large_100 at 224 px). Both are
measured **in one run, on this machine, on the same real photographs** (scikit-image's sample
data), through the same engine (ONNX Runtime FP32 on the CPU, same thread count), alternating
rounds so that load from other processes hits both alike; the report gives their ratio, which
is what survives a noisy machine. The screener's weights are untrained (its compute does not
depend on them; nothing is downloaded).

``cascade_compute_ratio`` is **projected**, not measured: compute per image of "screener on every
image, open_nsfw on what the screener leaves" over "open_nsfw on every image", taking the stage-1
decided share that ``cascade bench cascade`` measured on the synthetic traffic set
(``reports/cascade.json``, ``summary.stage1_decided_share``). Whether a screener in front of
open_nsfw would decide that share of real traffic is exactly what it does not show.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from models.bench import images_per_second, machine_info
from services.bench.report import figure, write_report

SCREENER = "mobilenetv3_large_100"
SCREENER_SIZE = 224


def projected_compute_ratio(peer_ips: float, screener_ips: float, stage1_share: float) -> float:
    """(screener on all + peer on the undecided) / (peer on all), per image."""
    return (1.0 / screener_ips + (1.0 - stage1_share) / peer_ips) / (1.0 / peer_ips)


def read_stage1_share(path: Path) -> float | None:
    """``summary.stage1_decided_share`` of a ``cascade bench cascade`` report, if there is one."""
    if not path.is_file():
        return None
    share = json.loads(path.read_text()).get("summary", {}).get("stage1_decided_share")
    return None if share is None else float(share)


def build_engines(work: Path, threads: int) -> dict[str, Any]:
    """open_nsfw imported as a stage, and an untrained default-preset screener exported to
    ONNX: both through the engines the workers use."""
    from models.artifact import StageMeta, save_weights, write_meta
    from models.engines import load_engine
    from models.export import export_onnx
    from models.external import OPENNSFW, opennsfw_model_path
    from models.importer import import_onnx
    from models.registry import create_model, preprocess_config_for

    import_onnx(opennsfw_model_path(), work / "peer", stage=2, spec=OPENNSFW, name="open_nsfw")
    screener = work / "screener" / "stage1"
    meta = StageMeta(SCREENER, 1, preprocess_config_for(SCREENER, SCREENER_SIZE),
                     metrics={"note": "untrained: timing only"})  # fmt: skip
    write_meta(screener, meta)
    model = create_model(SCREENER).eval()
    save_weights(screener, model)
    export_onnx(screener, model=model)
    return {
        "peer": load_engine(work / "peer" / "stage2", "onnx", threads=threads),
        "screener": load_engine(screener, "onnx", threads=threads),
    }


def measure(
    engines: dict[str, Any], photos: list[tuple[str, bytes]], *, batch: int, rounds: int,
    min_seconds: float,
) -> dict[str, Any]:  # fmt: skip
    """Images/s of each engine on the photographs (each preprocessed with its own model's
    pipeline), rounds alternated; preprocessing time per image measured apart."""
    from models.preprocess import decode_image, preprocess_batch

    decoded = [decode_image(data, max_pixels=50_000_000) for _, data in photos]
    inputs, prep = {}, {}
    for name, engine in engines.items():
        start = time.perf_counter()
        inputs[name] = preprocess_batch(decoded, engine.preprocess)
        prep[name] = (time.perf_counter() - start) / len(decoded)
    best = {name: 0.0 for name in engines}
    for _ in range(rounds):
        for name, engine in engines.items():
            ips = images_per_second(engine, inputs[name], batch, rounds=1, min_seconds=min_seconds)
            best[name] = max(best[name], ips)
    return {"images_per_s": best, "preprocess_ms_per_image": {k: 1000 * v for k, v in prep.items()}}


def peers_report(
    measured: dict[str, Any], stage1_share: float | None, share_source: str, price_per_hour: float
) -> dict[str, Any]:
    peer, screener = measured["images_per_s"]["peer"], measured["images_per_s"]["screener"]
    ratio = None if stage1_share is None else projected_compute_ratio(peer, screener, stage1_share)
    per_image = price_per_hour / 3600.0
    return {
        "peer_images_per_s": round(peer, 2),
        "screener_images_per_s": round(screener, 2),
        "screener_speedup": round(screener / peer, 3),
        "cascade_compute_ratio": None if ratio is None else round(ratio, 4),
        "peer_dollars_per_image": per_image / peer,
        "screener_dollars_per_image": per_image / screener,
        "stage1_decided_share": stage1_share,
        "stage1_decided_share_source": share_source,
        "preprocess_ms_per_image": {k: round(v, 2) for k, v in measured["preprocess_ms_per_image"].items()},
        "measured": ["peer_images_per_s", "screener_images_per_s", "screener_speedup",
                     "peer_dollars_per_image", "screener_dollars_per_image", "preprocess_ms_per_image"],
        "projected": ["cascade_compute_ratio"],
    }  # fmt: skip


def _markdown(result: dict[str, Any]) -> str:
    r = result
    share = r["stage1_decided_share"]
    ratio = r["cascade_compute_ratio"]
    lines = [
        "# Peer benchmark: open_nsfw vs the default screener", "",
        f"Command: `{r['command']}`", "",
        f"Same {r['n_photos']} real photographs (scikit-image sample data), ONNX Runtime FP32 on "
        f"the CPU, {r['threads']} thread(s), batch {r['batch']}, best of {r['rounds']} alternating "
        "rounds. Compare the ratio, not the absolute figures: the machine is shared.", "",
        "| model | images/s (measured) | $/image compute (at "
        f"${r['price_per_hour']}/h) | preprocessing ms/image |",
        "|---|---|---|---|",
        f"| open_nsfw (ResNet-50 @224) | {r['peer_images_per_s']:.1f} | "
        f"{r['peer_dollars_per_image']:.3g} | {r['preprocess_ms_per_image']['peer']:.1f} |",
        f"| {SCREENER} @{SCREENER_SIZE} (untrained) | {r['screener_images_per_s']:.1f} | "
        f"{r['screener_dollars_per_image']:.3g} | {r['preprocess_ms_per_image']['screener']:.1f} |",
        "", f"- **Measured**: screener speed-up {r['screener_speedup']:.2f}x.",
    ]  # fmt: skip
    if ratio is None:
        lines.append("- **Projected** cascade compute ratio: not computed — no stage-1 decided "
                     "share (run `cascade bench cascade` first, or pass --stage1-share).")  # fmt: skip
    else:
        lines.append(
            f"- **Projected**, not measured: a cascade would spend {ratio:.3f}x the compute of "
            f"open_nsfw on every image, if its screener decided {100 * share:.1f}% of images "
            f"(stage-1 decided share from {r['stage1_decided_share_source']}). That share was "
            "measured on the synthetic traffic set, not on real photographs in front of open_nsfw."
        )
    return "\n".join([*lines, ""])


def _plot(result: dict[str, Any]) -> Any:
    """Measured throughputs; the projected ratio as a function of the stage-1 decided share
    (a line, since the share is the one input not measured here), with the share from
    ``cascade bench cascade`` marked when there is one."""
    fig, (left, right) = figure(1, 2, figsize=(10, 4))
    peer, screener = result["peer_images_per_s"], result["screener_images_per_s"]
    left.bar(["open_nsfw", SCREENER], [peer, screener], color=["#b55", "#58b"])
    left.set_ylabel("images/s (measured)")
    left.set_title("throughput: same photographs, same engine")
    shares = [i / 100 for i in range(101)]
    right.plot(shares, [projected_compute_ratio(peer, screener, x) for x in shares], color="#8a8")
    right.axhline(1.0, color="#b55", linestyle="--", label="open_nsfw on every image")
    share = result["stage1_decided_share"]
    if share is not None:
        right.plot([share], [result["cascade_compute_ratio"]], "ko",
                   label=f"stage-1 share {share:.2f} ({result['stage1_decided_share_source']})")  # fmt: skip
    right.set_xlabel("stage-1 decided share")
    right.set_ylabel("cascade compute / open_nsfw compute")
    right.set_title("projected")
    right.legend()
    return fig


@click.command("peers")
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports"), show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--min-seconds", type=float, default=2.0, show_default=True, help="Per timed round.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--stage1-share", type=click.FloatRange(0, 1), default=None,
              help="Stage-1 decided share; default: reports/cascade.json (`cascade bench cascade`).")  # fmt: skip
def peers(out: Path, batch: int, rounds: int, min_seconds: float, threads: int, stage1_share: float | None) -> None:  # fmt: skip
    """open_nsfw vs the default-preset screener on real photographs; the compute a cascade
    would save in front of open_nsfw (projected from `cascade bench cascade`)."""
    import sys

    from cascade.config import get_settings
    from models.sample_photos import sample_photos

    try:
        photos = sample_photos()
        source = "--stage1-share" if stage1_share is not None else str(out / "cascade.json")
        share = (
            stage1_share if stage1_share is not None else read_stage1_share(out / "cascade.json")
        )
        with tempfile.TemporaryDirectory() as tmp:
            engines = build_engines(Path(tmp), threads)
            measured = measure(engines, photos, batch=batch, rounds=rounds, min_seconds=min_seconds)
    except ImportError as exc:
        raise click.ClickException(str(exc)) from exc
    price = get_settings().device_price("cpu")
    result = peers_report(measured, share, source if share is not None else "", price) | {
        "command": " ".join(["cascade", *sys.argv[1:]]), "n_photos": len(photos), "batch": batch,
        "rounds": rounds, "threads": threads, "price_per_hour": price, "machine": machine_info(threads),
    }  # fmt: skip
    paths = write_report(out, "peers", result, _markdown(result), _plot(result))
    click.echo(_markdown(result))
    click.echo("wrote " + ", ".join(str(p) for p in paths))
