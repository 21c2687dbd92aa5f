"""A seeded, moderation-like synthetic world in which a two-stage cascade is the right design.

**The cue.** An image is ``block`` iff it carries the *emblem*: a sign-like white disc in a red
ring with a diagonal cross ("X") inside. Everything else is ``allow``. Look-alikes appear in both
classes: far ones whose *colour* differs (the X-ring in blue, a green ring), close ones that
differ only in *shape* (the red ring with an upright cross "+", an empty red ring, a bare red X,
the X-ring in orange). Backgrounds are muted gradients with colourful clutter, noise and blur;
the clutter is never a saturated red, pink, magenta, violet or red-orange (saturated red belongs
to signs, as most uploads hold nothing that looks like the symbol: "nothing like it here" is
what a screener must be able to see; ``models.synthetic_draw.RED_HUES``). Files are JPEG or
PNG, 96-640 px, some RGBA, some EXIF-rotated.

**Why three bands.** A cascade pays only where most traffic is easy for a small, low-resolution
screener, a minority needs a bigger, higher-resolution model, and a small tail needs a person.
Each image is drawn from one band, recorded in the manifest as ``band``; the meaning of a band is
the same for both labels (what it takes to tell the two classes apart), so per-band accuracy
compares like with like. Sizes are fractions of the image's *longer* side: the serving resize
squeezes every image to a square, so a cue of fraction ``f`` spans at least ``f * S`` pixels of
an ``S``-pixel model input.

- ``easy`` — decidable at 64 px. Harmful: the emblem at 20-45 % (>= 13 px at 64 px, where the
  stroke angle is plain), opacity 80-100 %, sometimes a quarter covered from one side. Benign: no
  sign at all, far look-alikes at any size (colour survives any downscale), close look-alikes
  only at that large size. It exists because most uploads are plainly fine, and a screener's
  main job is to allow them confidently.
- ``medium`` — needs stage 2 (128 px). Harmful: the emblem at 8.5-11 %, opacity 85-100 %;
  benign: a close look-alike (nine in ten the "+" ring, else the empty ring) at the same size
  and contrast. Its inner strokes are thin (``SMALL_CROSS``: 0.4 of the ring's width, a
  twentieth of the sign). At 64 px either is a 5-7 px red ring whose 0.3 px inner strokes are a
  faint smudge (a screener can see a sign is there, not which: it must say "unsure"); at 128 px
  it spans 11-14 px, the strokes 0.6-0.7 px, and the X's diagonals are visible. Tried and
  dropped: world 9 drew the strokes as wide as the ring's (0.8 px at 64 px), and the X's four
  diagonal spokes against the +'s four upright ones were enough for stage 1 to decide 71 % of
  the band's benign images and 28 % of its harmful ones alone (89.7 % accurate on the band),
  so only 8-10 % of traffic needed stage 2; world 8 drew it at 9-12.5 %, some look-alikes
  orange (colour shows at any size), and stage 1 decided 82 % of the band's benign images and
  44 % of its harmful ones on its own (7 % of traffic needed stage 2); at 7.5-10 % (4.8-6.4 px,
  world 9's first draw) stage 1 left the band to stage 2 but grew wary of everything (it scored
  6 % of sign-free images above 0.16 and 5.6 % of the smallest harmful signs below 0.05), so it
  decided only 75 % of traffic; world 6 drew it at 7.5 % and 75 % opacity, and a faint blob
  could vanish, so the size and the opacity stay high and only the strokes are thin.
  It exists because some harmful content is small, and telling it from the benign sign next to
  it takes resolution and capacity the screener lacks.
- ``ambiguous`` — decidable at no resolution. A red ring-sign (20-40 %, large enough that
  the sticker shows at stage 2's size) whose inside is covered by a sticker (never paper-white, so it cannot pass for an empty ring; stickers appear nowhere
  else): the X-ring (harmful) or the "+"/empty ring (benign) underneath, drawn from one and
  the same distribution, so no model can do better than the band's base rate. It exists because
  real queues have content only context can settle; a good model says "unsure" (a score near
  its training base rate, here 0.5), never a confident wrong answer. Training targets that base
  rate here (``UNDECIDABLE``, ``models.data.Split.targets``): fitted to the coin-flip labels,
  both stages of world 9 spread their scores on these images over 0.06-0.78.

Look-alikes are painted before the deciding sign, so none ever hides it (see ``_draw_band``).

**Two mixes.** ``TRAFFIC`` is what uploads look like (band shares per label; with a prevalence
of a few percent it gives ~84 % easy, ~13 % medium, ~3 % ambiguous images, see
:func:`band_shares`); ``TRAINING`` over-represents the harder bands and the close look-alikes
(``CLOSE_SHARES``) and, with a prevalence of 0.5, gives the balanced classes training wants.

Layout written by ``generate_dataset``: ``allow/*.jpg|png``, ``block/*.jpg|png`` (ImageFolder)
and ``manifest.jsonl`` with one line per image: file, label, split, band, format, cue parameters.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from models.synthetic_draw import background, place_sign

GENERATOR_VERSION = 10
BANDS = ("easy", "medium", "ambiguous")
# Bands whose label no model can read off the image: training targets their base rate there
# (``models.data.Split.targets``), the way a team trains on moderators' split votes. A stage adds
# the bands it cannot read at its own resolution (``StageSpec.undecidable``: the demo's stage 1
# adds ``medium``). That uses the generator's band, which real data do not carry.
UNDECIDABLE = ("ambiguous",)
SPLITS = (("train", 0.7), ("val", 0.15), ("test", 0.15))
# label (harmful?) -> band -> share of that label's images
Mix = Mapping[bool, Mapping[str, float]]
TRAFFIC: Mix = {
    True: {"easy": 0.5, "medium": 0.3, "ambiguous": 0.2},
    False: {"easy": 0.86, "medium": 0.12, "ambiguous": 0.02},
}
# Covered signs are 15 % of each class in training: at 10 %, stage 1 of world 8 spread its scores
# on them over 0.1-0.67 where the truth is 0.5 for all, and the covered harmful ones it scored
# lowest were allowed with the plainly benign images.
TRAINING: Mix = {
    True: {"easy": 0.55, "medium": 0.3, "ambiguous": 0.15},
    False: {"easy": 0.65, "medium": 0.2, "ambiguous": 0.15},
}
MIXES = {"traffic": TRAFFIC, "training": TRAINING}
# A look-alike's chance of being a close one (a red sign that differs from the emblem in shape
# only). Traffic: one in five. Training shows them more often: at one in five, stage 1 of world
# v7 never learnt to tell a large "+"-ring from the emblem at 64 px (it scored them 0.4-0.6),
# and every benign image holding one had to go to stage 2.
CLOSE_SHARES = {"traffic": 0.2, "training": 0.5}
CLOSE = {"plus_ring": 0.55, "empty_ring": 0.15, "orange_x_ring": 0.15, "bare_x": 0.15}
FAR = {"blue_x_ring": 0.55, "green_ring": 0.45}
MEDIUM_BENIGN = {"plus_ring": 0.9, "empty_ring": 0.1}  # shape only: colour shows at any size
COVERED_BENIGN = {"plus_ring": 0.7, "empty_ring": 0.3}
LARGE, SMALL, ANY = (0.2, 0.45), (0.085, 0.11), (0.06, 0.45)
SMALL_CROSS = 0.4  # the medium band's inner strokes, as a share of the ring's width
# A covered sign is drawn large enough that its sticker shows at stage 2's input size: at 10 %
# of the image (13 px at 128 px) a covered ring passed for a small "+"-ring, the benign sign of
# the medium band, and stage 2 learnt to call 9 % of covered harmful signs benign with
# confidence (world v5) where it can only know "unsure".
COVERED = (0.2, 0.4)
EASY_OPACITY = (0.8, 1.0)  # faint signs are hard ones; the easy band's contrast is the backdrop's
MIN_PER_WORKER = 200  # fewer images than this per process: not worth starting a pool
_EXIF_ROTATIONS = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


def band_shares(prevalence: float, mix: Mix = TRAFFIC) -> dict[str, float]:
    """Expected share of all images in each band at ``prevalence`` (share of harmful images)."""
    return {b: prevalence * mix[True][b] + (1 - prevalence) * mix[False][b] for b in BANDS}


def _pick(rng: np.random.Generator, shares: Mapping[str, float]) -> str:
    names = list(shares)
    p = np.asarray([shares[k] for k in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _distractor(rng: np.random.Generator, img: Image.Image, close_share: float) -> dict[str, Any]:
    """A look-alike that does not change the band: far ones at any size, close ones large."""
    if rng.random() >= close_share:
        return place_sign(rng, img, _pick(rng, FAR), ANY, opacity=EASY_OPACITY)
    return place_sign(rng, img, _pick(rng, CLOSE), LARGE, opacity=EASY_OPACITY, occlusion_p=0.25)


def _draw_band(
    rng: np.random.Generator, img: Image.Image, *, harmful: bool, band: str,
    close_share: float = CLOSE_SHARES["traffic"],
) -> list[dict[str, Any]]:  # fmt: skip
    """The band's deciding sign (if any) plus look-alikes; returns their parameters, the
    deciding sign first. Look-alikes are painted first, the deciding sign over them: a
    look-alike never hides the cue that decides the label (world v7 painted them on top, and a
    third of its easy harmful images had the emblem partly under a blue or green ring; stage 1
    scored some of them 0.01)."""
    if band not in BANDS:
        raise ValueError(f"unknown band {band!r}; choose one of {BANDS}")
    if band == "easy":
        extra = int(rng.choice([0, 1, 2], p=[0.4, 0.4, 0.2] if harmful else [0.35, 0.45, 0.2]))
    else:
        extra = int(rng.choice([0, 1], p=[0.5, 0.5]))
    looks = [_distractor(rng, img, close_share) for _ in range(extra)]
    if band == "easy":
        if not harmful:
            return looks
        deciding = place_sign(rng, img, "x_ring", LARGE, opacity=EASY_OPACITY, occlusion_p=0.25)
    elif band == "medium":
        kind = "x_ring" if harmful else _pick(rng, MEDIUM_BENIGN)
        deciding = place_sign(rng, img, kind, SMALL, opacity=(0.85, 1.0), occlusion_p=0.1,
                              occlusion=(0.1, 0.2), cross=SMALL_CROSS)  # fmt: skip
    else:
        kind = "x_ring" if harmful else _pick(rng, COVERED_BENIGN)
        deciding = place_sign(rng, img, kind, COVERED, opacity=(0.7, 1.0), covered=True)
    return [deciding, *looks]


def render_image(
    rng: np.random.Generator, *, harmful: bool, band: str | None = None, mix: Mix = TRAFFIC,
    close_share: float = CLOSE_SHARES["traffic"],
) -> tuple[Image.Image, dict[str, Any]]:  # fmt: skip
    """One image (display orientation, RGB) and its parameters; ``band`` drawn from ``mix``
    for the label unless given; ``close_share``: a look-alike's chance of being a close one."""
    band = band or _pick(rng, mix[harmful])
    w = int(rng.integers(96, 641))
    h = int(np.clip(w * rng.uniform(0.6, 1.6), 96, 640))
    img = background(rng, w, h)
    cues = _draw_band(rng, img, harmful=harmful, band=band, close_share=close_share)
    if rng.random() < 0.3:  # scaled to the image, so a small file's small sign survives it
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.2, 0.8)) * max(w, h) / 320))
    return img, {"width": w, "height": h, "band": band, "cues": cues}


def encode_image(rng: np.random.Generator, img: Image.Image) -> tuple[bytes, dict[str, Any]]:
    """Encode as JPEG (some with an EXIF rotation), PNG, or RGBA PNG (top band fades out)."""
    buf, roll = io.BytesIO(), rng.random()
    if roll < 0.15:
        orientation = int(rng.choice(list(_EXIF_ROTATIONS)))
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.transpose(_EXIF_ROTATIONS[orientation]).save(
            buf, "JPEG", quality=int(rng.integers(70, 95)), exif=exif.tobytes()
        )
        return buf.getvalue(), {"format": "JPEG", "exif_orientation": orientation}
    if roll < 0.6:
        img.save(buf, "JPEG", quality=int(rng.integers(60, 96)))
        return buf.getvalue(), {"format": "JPEG"}
    if roll < 0.8:
        rgba = img.convert("RGBA")
        band = int(0.1 * img.height)
        alpha = np.full((img.height, img.width), 255, np.uint8)
        alpha[:band] = np.linspace(0, 255, max(band, 1), dtype=np.uint8)[:band, None]
        rgba.putalpha(Image.fromarray(alpha))
        rgba.save(buf, "PNG", compress_level=1)
        return buf.getvalue(), {"format": "PNG", "mode": "RGBA"}
    img.save(buf, "PNG", compress_level=1)
    return buf.getvalue(), {"format": "PNG"}


def generate_image(
    rng: np.random.Generator, *, harmful: bool, band: str | None = None, mix: Mix = TRAFFIC,
    close_share: float = CLOSE_SHARES["traffic"],
) -> tuple[bytes, dict[str, Any]]:  # fmt: skip
    """One encoded image on demand (demo traffic): bytes and its metadata (label, band, cues)."""
    img, meta = render_image(rng, harmful=harmful, band=band, mix=mix, close_share=close_share)
    data, fmt = encode_image(rng, img)
    return data, meta | fmt | {"label": "block" if harmful else "allow"}


def split_of(index: int, seed: int) -> str:
    """Deterministic split from a hash of (seed, index): stable when ``n`` grows."""
    u = int.from_bytes(hashlib.sha256(f"{seed}:{index}".encode()).digest()[:8], "big") / 2**64
    edge = 0.0
    for name, share in SPLITS:
        edge += share
        if u < edge:
            return name
    return SPLITS[-1][0]


def _write_range(out: Path, start: int, stop: int, seed: int, prevalence: float, mix_name: str,
                 split: str | None) -> list[str]:  # fmt: skip
    """Images ``start..stop-1`` (a worker's share); image ``i`` depends only on (seed, i)."""
    lines = []
    for i in range(start, stop):
        rng = np.random.default_rng([seed, i])
        harmful = bool(rng.random() < prevalence)
        data, meta = generate_image(rng, harmful=harmful, mix=MIXES[mix_name],
                                    close_share=CLOSE_SHARES[mix_name])  # fmt: skip
        name = f"{meta['label']}/{i:06d}.{'jpg' if meta['format'] == 'JPEG' else 'png'}"
        (out / name).write_bytes(data)
        row = {"file": name, "split": split or split_of(i, seed)} | meta
        lines.append(json.dumps(row, sort_keys=True))
    return lines


def generate_dataset(
    out: Path, *, n: int, seed: int = 0, prevalence: float = 0.5, mix: str = "training",
    split: str | None = None, workers: int | None = None,
) -> Path:  # fmt: skip
    """Write ``n`` images + ``manifest.jsonl`` + ``dataset.json`` under ``out``; returns the
    manifest path. ``split`` puts every image in one split (a held-out traffic set); otherwise
    train/val/test by hash. Same arguments, same bytes, whatever ``workers`` is."""
    if mix not in MIXES:
        raise ValueError(f"unknown mix {mix!r}; choose one of {sorted(MIXES)}")
    out = Path(out)
    for label in ("allow", "block"):
        (out / label).mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, -(-n // MIN_PER_WORKER)))
    edges = np.linspace(0, n, 4 * workers + 1 if workers > 1 else 2).astype(int)
    args = [
        (out, int(a), int(b), seed, prevalence, mix, split) for a, b in itertools.pairwise(edges)
    ]
    if workers == 1:
        parts = [_write_range(*a) for a in args]
    else:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_write_range, *zip(*args, strict=True)))
    manifest = out / "manifest.jsonl"
    manifest.write_text("\n".join(line for part in parts for line in part) + "\n")
    info = dataset_info(n=n, seed=seed, prevalence=prevalence, mix=mix, split=split)
    (out / "dataset.json").write_text(json.dumps(info, sort_keys=True))
    return manifest


def dataset_info(*, n: int, seed: int, prevalence: float, mix: str, split: str | None) -> dict[str, Any]:  # fmt: skip
    """What ``dataset.json`` records: enough to tell whether a folder holds the wanted set."""
    shares = {"harmful" if label else "benign": dict(b) for label, b in MIXES[mix].items()}
    return {"generator_version": GENERATOR_VERSION, "n": n, "seed": seed,
            "prevalence": prevalence, "mix": mix, "split": split, "mix_shares": shares,
            "close_share": CLOSE_SHARES[mix]}  # fmt: skip


def ensure_dataset(out: Path, **wanted: Any) -> bool:
    """Generate unless ``out`` already holds exactly this set. True when it generated."""
    info = Path(out) / "dataset.json"
    if info.is_file() and (Path(out) / "manifest.jsonl").is_file():
        try:
            if json.loads(info.read_text()) == dataset_info(**wanted):
                return False
        except ValueError:
            pass
    generate_dataset(Path(out), **wanted)
    return True


def dataset_fingerprint(data_dir: Path) -> str:
    """Hash of the manifest: models record it, the demo compares it before reusing them."""
    return hashlib.sha256((Path(data_dir) / "manifest.jsonl").read_bytes()).hexdigest()[:16]
