"""The mini-decathlon's source domain, the one the backbone is pretrained on (ImageNet's role in the papers):
60 classes, broad as ImageNet is — 30 kinds of objects (compositions of coloured parts), 20 Latin letters in
varied fonts, 10 oriented noise patterns — in any pose, with clutter. None of them is a target class.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from . import render as R

__all__ = ["draw_source", "LETTERS"]

# -- source: "objects" -------------------------------------------------------------------------------------
_PART_KINDS = ("ellipse", "rectangle", "triangle", "star", "ring", "cross", "pie", "hexagon", "bar")


def _object_template(cls: int) -> list[dict]:
    g = np.random.default_rng([7919, cls])
    hue = g.random()
    parts = []
    for _ in range(int(g.integers(2, 4))):
        parts.append(
            dict(
                kind=_PART_KINDS[int(g.integers(len(_PART_KINDS)))],
                cx=g.uniform(-0.22, 0.22),
                cy=g.uniform(-0.22, 0.22),
                r=g.uniform(0.12, 0.32),
                aspect=g.uniform(0.5, 1.0),
                angle=g.uniform(0, 360),
                hsv=((hue + g.normal(0, 0.15)) % 1.0, g.uniform(0.4, 1.0), g.uniform(0.35, 1.0)),
            )
        )
    return parts


_OBJECTS = [_object_template(c) for c in range(30)]
LETTERS = "ABCDEFGHJKLMNPRSTUWY"
_N_PATTERNS = 10


def _draw_part(draw: ImageDraw.ImageDraw, p: dict, cx: float, cy: float, r: float, rot: float, color) -> None:
    a = np.deg2rad(p["angle"] + rot)
    if p["kind"] in ("ellipse", "ring"):
        pts = [(cx + r * np.cos(t) * np.cos(a) - r * p["aspect"] * np.sin(t) * np.sin(a),
                cy + r * np.cos(t) * np.sin(a) + r * p["aspect"] * np.sin(t) * np.cos(a))
               for t in np.linspace(0, 2 * np.pi, 24, endpoint=False)]  # fmt: skip
        if p["kind"] == "ring":
            draw.line(pts + pts[:1], fill=color, width=max(1, int(r * 0.35)))
        else:
            draw.polygon(pts, fill=color)
    elif p["kind"] == "rectangle":
        draw.polygon(R.regular_polygon(cx, cy, r, 4, a + np.pi / 4), fill=color)
    elif p["kind"] == "triangle":
        draw.polygon(R.regular_polygon(cx, cy, r, 3, a), fill=color)
    elif p["kind"] == "hexagon":
        draw.polygon(R.regular_polygon(cx, cy, r, 6, a), fill=color)
    elif p["kind"] == "star":
        draw.polygon(R.star(cx, cy, r, 5, 0.45, a), fill=color)
    elif p["kind"] == "cross":
        for t in (a, a + np.pi / 2):
            dx, dy = r * np.cos(t), r * np.sin(t)
            draw.line([cx - dx, cy - dy, cx + dx, cy + dy], fill=color, width=max(1, int(r * 0.4)))
    elif p["kind"] == "pie":
        deg = np.rad2deg(a)
        draw.pieslice([cx - r, cy - r, cx + r, cy + r], deg, deg + 200, fill=color)
    else:  # bar
        dx, dy = r * np.cos(a), r * np.sin(a)
        draw.line([cx - dx, cy - dy, cx + dx, cy + dy], fill=color, width=max(1, int(r * p["aspect"] * 0.5)))


def draw_source(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """Classes 0-29: objects; 30-49: Latin letters; 50-59: oriented noise patterns."""
    if label < len(_OBJECTS):
        return _draw_object(rng, label, size)
    if label < len(_OBJECTS) + len(LETTERS):
        return _draw_letter(rng, LETTERS[label - len(_OBJECTS)], size)
    return _draw_pattern(rng, label - len(_OBJECTS) - len(LETTERS), size)


def _draw_letter(rng: np.random.Generator, letter: str, size: int) -> np.ndarray:
    n = R.SUPERSAMPLE * size
    img = R.gradient(rng, n, R.random_color(rng), R.random_color(rng)) if rng.random() < 0.5 else R.natural_background(rng, n)
    R.clutter(rng, img, int(rng.integers(0, 4)))
    bg = np.asarray(img, np.float32).reshape(-1, 3).mean(0)
    font_name = R.LATIN_FONTS[int(rng.integers(len(R.LATIN_FONTS)))]
    text = letter if rng.random() < 0.6 else letter.lower()
    mask = R.text_mask(text, font_name, n, n, rng, scale=(0.45, 0.8), rotate=25, offset=0.1)
    R.paste_colored(img, mask, R.contrasting_color(rng, bg, rng.uniform(50, 130)))
    return R.finish(img, size, rng, noise=rng.uniform(0, 8), blur=rng.uniform(0, 1.0))


def _draw_pattern(rng: np.random.Generator, k: int, size: int) -> np.ndarray:
    """Noise band-passed around one orientation (k × 18°) and a class-specific frequency band."""
    n = R.SUPERSAMPLE * size
    fy, fx = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij")
    radius, angle = np.hypot(fx, fy), np.arctan2(fy, fx)
    centre = 0.06 + 0.05 * (k % 3) + rng.normal(0, 0.005)
    orient = np.deg2rad(18 * k + rng.normal(0, 4))
    band = np.exp(-((radius - centre) ** 2) / (2 * 0.02**2)) * np.cos(angle - orient) ** 8
    field = np.real(np.fft.ifft2(np.fft.fft2(rng.normal(0, 1, (n, n))) * band))
    t = (field - field.min()) / (np.ptp(field) + 1e-8)
    c0 = np.asarray(R.random_color(rng), np.float32)
    c1 = np.asarray(R.contrasting_color(rng, c0, 50), np.float32)
    img = Image.fromarray(((1 - t[..., None]) * c0 + t[..., None] * c1).astype(np.uint8), "RGB")
    return R.finish(img, size, rng, noise=rng.uniform(0, 6))


def _draw_object(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    n = R.SUPERSAMPLE * size
    if rng.random() < 0.5:
        img = R.gradient(rng, n, R.random_color(rng), R.random_color(rng))
    else:
        img = R.natural_background(rng, n)
    R.clutter(rng, img, int(rng.integers(0, 4)))
    draw = ImageDraw.Draw(img)
    scale = rng.uniform(0.7, 1.15) * n
    cx, cy = n / 2 + rng.uniform(-0.15, 0.15, 2) * n
    rot = rng.uniform(-180, 180)
    c, s = np.cos(np.deg2rad(rot)), np.sin(np.deg2rad(rot))
    dh, dv = rng.normal(0, 0.04), rng.uniform(0.75, 1.15)
    for p in _OBJECTS[label]:
        px, py = p["cx"] * scale, p["cy"] * scale
        h, sat, val = p["hsv"]
        color = R.rgb(h + dh, sat * rng.uniform(0.8, 1.1), val * dv)
        _draw_part(draw, p, cx + c * px - s * py, cy + s * px + c * py, p["r"] * scale, rot, color)
    if rng.random() < 0.3:  # an occluder in front
        R.clutter(rng, img, 1)
    return R.finish(img, size, rng, noise=rng.uniform(0, 8), blur=rng.uniform(0, 1.0))


