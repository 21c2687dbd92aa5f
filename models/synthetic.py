"""A seeded, moderation-like synthetic data set (no download possible or needed).

The harmful cue is an *emblem*: a sign-like white disc in a red ring with a diagonal cross
(an "X") inside. An image is ``block`` iff it carries the emblem; everything else is
``allow``. Look-alike distractors appear in both classes, from far to close: the X-ring in blue
or a green ring (shape right, colour wrong), an empty red ring, a bare red X, the X-ring in
orange (hue close to red) and the red ring with an upright cross ("+", the closest: only the
stroke angle differs). Far look-alikes are common, close ones rarer, as in real traffic.
Backgrounds are muted gradients with colourful clutter (rarely red), some noise and blur.

Why there is a real difficulty spectrum: the emblem and its distractors vary in size (5–40 % of
the shorter side), contrast (blended at 25–100 % opacity over a cluttered background) and
occlusion (up to half covered). A large, opaque emblem is obvious even at 64 px. A small one is
4–6 px across at 64 px, where an "X" and a "+" inside a ring are the same blur, but 10+ px at
128 px, where the stroke angle is visible. So a small low-resolution screener decides most
images and the larger, higher-resolution stage-2 model is needed for the hard tail, which is
the regime a cascade is built for. Some images (tiny, faint *and* occluded) stay ambiguous for
both, the share a cascade sends to humans.

Layout written by ``generate_dataset``: ``allow/*.jpg|png``, ``block/*.jpg|png`` (ImageFolder)
and ``manifest.jsonl`` with one line per image: file, label, split, difficulty, format and the
cue parameters. Sizes are 96–640 px, formats JPEG/PNG, some RGBA, some with an EXIF rotation.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

GENERATOR_VERSION = 3
SPLITS = (("train", 0.7), ("val", 0.15), ("test", 0.15))
# kind -> (closeness to the cue in 0..1, share among distractors)
DISTRACTORS = {
    "plus_ring": (0.9, 0.15),
    "orange_x_ring": (0.7, 0.1),
    "empty_ring": (0.5, 0.1),
    "bare_x": (0.5, 0.1),
    "blue_x_ring": (0.2, 0.3),
    "green_ring": (0.1, 0.25),
}
_COLORS = {
    "orange_x_ring": (240, 140, 20),
    "blue_x_ring": (40, 70, 220),
    "green_ring": (30, 170, 60),
}
_EXIF_ROTATIONS = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


def _color(
    rng: np.random.Generator, base: tuple[int, int, int], jitter: int
) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-jitter, jitter + 1), 0, 255)) for c in base)  # type: ignore[return-value]


def _background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A gradient with clutter: rectangles, ellipses, lines, some of them red."""
    # Muted gradients: saturated colour belongs to objects, as in most photos.
    a, b = (int(rng.integers(40, 220)) + rng.integers(-40, 41, 3) for _ in range(2))
    t = (
        np.linspace(0.0, 1.0, w)[None, :, None]
        if rng.random() < 0.5
        else np.linspace(0.0, 1.0, h)[:, None, None]
    )
    grad = np.broadcast_to(a * (1 - t) + b * t, (h, w, 3))
    img = Image.fromarray(grad.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 12))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = (
            x0 + int(rng.integers(4, max(5, w // 2))),
            y0 + int(rng.integers(4, max(5, h // 2))),
        )
        fill = (
            _color(rng, (210, 30, 30), 40)
            if rng.random() < 0.15
            else tuple(int(v) for v in rng.integers(0, 256, 3))
        )
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        elif kind == 1:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        else:
            draw.line((x0, y0, x1, y1), fill=fill, width=int(rng.integers(1, 6)))
    if rng.random() < 0.5:
        noise = rng.normal(0, rng.uniform(2, 12), (h, w, 3))
        img = Image.fromarray(np.clip(np.asarray(img, np.float64) + noise, 0, 255).astype(np.uint8))
    return img


def _emblem(rng: np.random.Generator, kind: str, diameter: int) -> Image.Image:
    """The cue or a look-alike as an RGBA patch, drawn at 4x and downsampled (smooth edges)."""
    s = int(np.clip(3 * diameter, 24, 240))  # supersampled, capped: rotation is the hot spot
    patch = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(patch)
    color = _color(rng, _COLORS.get(kind, (215, 25, 30)), 25)
    width = max(2, s // 8)
    if kind != "bare_x":  # every kind but the bare X is a white disc in a coloured ring (a sign)
        paper = _color(rng, (245, 245, 240), 10)
        box = (width // 2, width // 2, s - width // 2, s - width // 2)
        draw.ellipse(box, fill=paper, outline=color, width=width)
    if kind not in ("empty_ring", "green_ring"):
        c, r = s / 2, s / 2 - width * 1.2
        base = 0.0 if kind == "plus_ring" else 45.0
        for angle in (base, base + 90.0):
            dx, dy = r * np.cos(np.radians(angle)), r * np.sin(np.radians(angle))
            draw.line((c - dx, c - dy, c + dx, c + dy), fill=color, width=width)
    patch = patch.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR)
    return patch.resize(
        (diameter, diameter), Image.Resampling.BOX if diameter < s else Image.Resampling.BILINEAR
    )


def _place(rng: np.random.Generator, img: Image.Image, kind: str, hard: bool) -> dict[str, Any]:
    """Blend one emblem (or distractor) onto ``img`` with random size, contrast, occlusion."""
    w, h = img.size
    short = min(w, h)
    frac = float(rng.uniform(0.05, 0.12) if hard else rng.uniform(0.12, 0.4))
    diameter = max(5, int(frac * short))
    alpha = float(rng.uniform(0.25, 0.6) if hard and rng.random() < 0.6 else rng.uniform(0.6, 1.0))
    patch = _emblem(rng, kind, diameter)
    a = np.asarray(patch)[..., 3].astype(np.float64) * alpha
    patch.putalpha(Image.fromarray(a.astype(np.uint8)))
    top = int(0.12 * h)  # keep cues out of the band RGBA images fade out
    x = int(rng.integers(0, max(1, w - diameter)))
    y = int(rng.integers(top, max(top + 1, h - diameter)))
    img.paste(patch, (x, y), patch)
    occlusion = 0.0
    if rng.random() < (0.5 if hard else 0.15):
        occlusion = float(rng.uniform(0.1, 0.5))
        ow = max(1, int(diameter * occlusion))
        ox = x + (0 if rng.random() < 0.5 else diameter - ow)
        ImageDraw.Draw(img).rectangle(
            (ox, y, ox + ow, y + diameter), fill=tuple(int(v) for v in rng.integers(0, 256, 3))
        )
    return {
        "kind": kind,
        "size_frac": round(frac, 4),
        "alpha": round(alpha, 3),
        "occlusion": round(occlusion, 3),
        "xy": [x, y],
        "diameter": diameter,
    }


def _difficulty(harmful: bool, cues: list[dict[str, Any]]) -> float:
    """0 = obvious, 1 = nearly invisible (block) or a near-perfect look-alike (allow)."""

    def hardness(c: dict[str, Any]) -> float:
        small = np.clip((0.2 - c["size_frac"]) / 0.15, 0, 1)
        faint = np.clip((0.8 - c["alpha"]) / 0.55, 0, 1)
        covered = np.clip(c["occlusion"] / 0.5, 0, 1)
        return float(1 - (1 - small) * (1 - faint) * (1 - 0.7 * covered))

    if harmful:
        return round(hardness(cues[0]), 3)
    closeness = [DISTRACTORS[c["kind"]][0] * (1 - 0.5 * hardness(c)) for c in cues]
    return round(max(closeness, default=0.0), 3)


def render_image(rng: np.random.Generator, *, harmful: bool) -> tuple[Image.Image, dict[str, Any]]:
    """One image (display orientation, RGB) and its cue parameters."""
    w = int(rng.integers(96, 641))
    h = int(np.clip(w * rng.uniform(0.6, 1.6), 96, 640))
    img = _background(rng, w, h)
    hard = rng.random() < 0.3
    cues = [_place(rng, img, "x_ring", hard)] if harmful else []
    names, shares = list(DISTRACTORS), np.array([v[1] for v in DISTRACTORS.values()])
    for _ in range(int(rng.choice([0, 0, 1, 2] if harmful else [0, 1, 1, 2]))):
        kind = names[int(rng.choice(len(names), p=shares / shares.sum()))]
        cues.append(_place(rng, img, kind, rng.random() < 0.4))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))
    return img, {"width": w, "height": h, "cues": cues, "difficulty": _difficulty(harmful, cues)}


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


def generate_image(rng: np.random.Generator, *, harmful: bool) -> tuple[bytes, dict[str, Any]]:
    """One encoded image on demand (demo traffic): bytes and its metadata (label, cues, ...)."""
    img, meta = render_image(rng, harmful=harmful)
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


def generate_dataset(out: Path, *, n: int, seed: int = 0, block_rate: float = 0.5) -> Path:
    """Write ``n`` images + ``manifest.jsonl`` under ``out``; image ``i`` depends only on
    (seed, i). Returns the manifest path."""
    out = Path(out)
    for label in ("allow", "block"):
        (out / label).mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        harmful = bool(rng.random() < block_rate)
        data, meta = generate_image(rng, harmful=harmful)
        name = f"{meta['label']}/{i:06d}.{'jpg' if meta['format'] == 'JPEG' else 'png'}"
        (out / name).write_bytes(data)
        lines.append(json.dumps({"file": name, "split": split_of(i, seed)} | meta, sort_keys=True))
    manifest = out / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    (out / "dataset.json").write_text(
        json.dumps(
            {"generator_version": GENERATOR_VERSION, "n": n, "seed": seed, "block_rate": block_rate}
        )
    )
    return manifest


def dataset_fingerprint(data_dir: Path) -> str:
    """Hash of the manifest: models record it, the demo compares it before reusing them."""
    return hashlib.sha256((Path(data_dir) / "manifest.jsonl").read_bytes()).hexdigest()[:16]
