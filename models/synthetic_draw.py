"""Drawing for the synthetic world (``models.synthetic``): backgrounds and ring-signs.

Every sign is drawn supersampled and downsampled (smooth edges), rotated a little, blended at an
opacity over the background and sometimes partly covered, so size, contrast and occlusion vary
the way they do in photographs. A *covered* sign has a sticker over its whole inside: what the
cross looked like is gone, whatever it was (that is what makes the ambiguous band ambiguous).
"""

from __future__ import annotations

import colorsys
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

RED = (215, 25, 30)
COLORS = {
    "orange_x_ring": (240, 140, 20),
    "blue_x_ring": (40, 70, 220),
    "green_ring": (30, 170, 60),
}
NO_CROSS = ("empty_ring", "green_ring")
# Clutter hues, in degrees: saturated clutter outside this range is too close to a sign's red.
# World 9 kept out 300-15 only; a stage 1 trained on it (world 10's first draw) scored 6.5 % of
# sign-free images whose clutter came within 30 degrees of red above 0.22 (3.2 % within 30-45,
# 2.7 % within 60-90, 0.7 % where none came within 90), so a cascade sent them to stage 2.
RED_HUES = (40.0, 280.0)


def jitter(rng: np.random.Generator, base: tuple[int, int, int], by: int) -> tuple[int, int, int]:
    r, g, b = (int(np.clip(c + rng.integers(-by, by + 1), 0, 255)) for c in base)
    return r, g, b


def _random_color(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in rng.integers(0, 256, 3))
    return r, g, b


def clutter_color(rng: np.random.Generator) -> tuple[int, int, int]:
    """Any colour but a saturated one outside ``RED_HUES`` (red, pink, magenta, violet and
    red-orange): those belong to signs, so that "nothing sign-like here" is something a screener
    can see at 64 px."""
    while True:
        r, g, b = _random_color(rng)
        hue, saturation, value = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
        if saturation <= 0.3 or value <= 60 / 255 or RED_HUES[0] < 360 * hue < RED_HUES[1]:
            return r, g, b


def sticker_color(rng: np.random.Generator) -> tuple[int, int, int]:
    """A random colour at least 150 (RGB distance) from the white paper of a sign, so that a
    covered sign never passes for an empty ring (which would make it look benign)."""
    while True:
        color = _random_color(rng)
        if np.linalg.norm(np.subtract(color, (245, 245, 240))) >= 150:
            return color


def background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A muted gradient with clutter (rectangles, ellipses, lines; never red) and noise."""
    a, b = (int(rng.integers(40, 220)) + rng.integers(-40, 41, 3) for _ in range(2))
    t = (
        np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]
        if rng.random() < 0.5
        else np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    )
    grad = np.broadcast_to(a * (1 - t) + b * t, (h, w, 3))
    if rng.random() < 0.5:
        grad = grad + np.float32(rng.uniform(2, 12)) * rng.standard_normal((h, w, 3), np.float32)
    img = Image.fromarray(np.clip(grad, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 12))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1 = x0 + int(rng.integers(4, max(5, w // 2)))
        y1 = y0 + int(rng.integers(4, max(5, h // 2)))
        fill = clutter_color(rng)
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        elif kind == 1:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        else:
            draw.line((x0, y0, x1, y1), fill=fill, width=int(rng.integers(1, 6)))
    return img


def sign_patch(
    rng: np.random.Generator, kind: str, diameter: int, *, covered: bool, cross: float = 1.0
) -> Image.Image:
    """The cue (``x_ring``) or a look-alike as an RGBA patch of ``diameter`` pixels; ``cross``:
    the inner strokes' width as a share of the ring's."""
    s = int(np.clip(3 * diameter, 32, 192))  # supersampled, capped: rotation is the hot spot
    patch = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(patch)
    color = jitter(rng, COLORS.get(kind, RED), 25)
    width = max(2, s // 8)
    if kind != "bare_x":  # every kind but the bare X is a white disc in a coloured ring
        box = (width // 2, width // 2, s - width // 2, s - width // 2)
        draw.ellipse(box, fill=jitter(rng, (245, 245, 240), 10), outline=color, width=width)
    if kind not in NO_CROSS:
        c, r = s / 2, s / 2 - width * 1.2
        base = 0.0 if kind == "plus_ring" else 45.0
        for angle in (base, base + 90.0):
            dx, dy = r * np.cos(np.radians(angle)), r * np.sin(np.radians(angle))
            draw.line((c - dx, c - dy, c + dx, c + dy), fill=color,
                      width=max(1, round(width * cross)))  # fmt: skip
    if covered:  # a sticker over the whole inside, strokes included; never paper-white
        r = s / 2 - 1.3 * width
        draw.ellipse((s / 2 - r, s / 2 - r, s / 2 + r, s / 2 + r), fill=sticker_color(rng))
    patch = patch.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR)
    return patch.resize((diameter, diameter), Image.Resampling.BOX)


def place_sign(
    rng: np.random.Generator,
    img: Image.Image,
    kind: str,
    size: tuple[float, float],
    *,
    opacity: tuple[float, float] = (0.6, 1.0),
    occlusion_p: float = 0.0,
    occlusion: tuple[float, float] = (0.1, 0.35),
    covered: bool = False,
    cross: float = 1.0,
) -> dict[str, Any]:
    """Blend one sign onto ``img``: diameter ``size`` (a range, as a fraction of the longer
    side), opacity in ``opacity``, with probability ``occlusion_p`` a strip of random colour
    over one side (``occlusion``: its share of the diameter); ``cross``: see :func:`sign_patch`.
    Returns the parameters drawn."""
    w, h = img.size
    frac = float(rng.uniform(*size))
    diameter = int(np.clip(frac * max(w, h), 5, 0.9 * min(w, h)))
    alpha = float(rng.uniform(*opacity))
    patch = sign_patch(rng, kind, diameter, covered=covered, cross=cross)
    a = np.asarray(patch)[..., 3].astype(np.float32) * alpha
    patch.putalpha(Image.fromarray(a.astype(np.uint8)))
    top = int(0.12 * h)  # keep signs out of the band RGBA files fade out
    x = int(rng.integers(0, max(1, w - diameter)))
    y = int(rng.integers(top, max(top + 1, h - diameter)))
    img.paste(patch, (x, y), patch)
    covered_share = 0.0
    if rng.random() < occlusion_p:
        covered_share = float(rng.uniform(*occlusion))
        ow = max(1, int(diameter * covered_share))
        ox = x + (0 if rng.random() < 0.5 else diameter - ow)
        ImageDraw.Draw(img).rectangle((ox, y, ox + ow, y + diameter), fill=_random_color(rng))
    return {
        "kind": kind,
        "size_frac": round(frac, 4),
        "diameter": diameter,
        "alpha": round(alpha, 3),
        "occlusion": round(covered_share, 3),
        "covered": covered,
        "xy": [x, y],
    }
