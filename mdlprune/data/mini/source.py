"""The mini-decathlon's source domain, the one the backbone is pretrained on (ImageNet's role in the papers).

116 classes, broad as ImageNet is, and like ImageNet it holds the *kinds* of structure the targets are made of
without holding their classes:

=========  =======  ==========================================================================================
classes    count    what
=========  =======  ==========================================================================================
0-29       30       objects: compositions of 2-3 coloured parts, any pose, clutter, occluders
30-49      20       Latin letters in varied fonts on cluttered backgrounds
50-59      10       oriented band-pass noise patterns
60-79      20       Greek and Cyrillic characters, handwritten-looking (strokes, as in glyphs)
80-91      12       blends of two texture families (as in textures, but never one family alone)
92-103     12       boards: six outline shapes in two colour schemes (sign-like, none of the signs)
104-115    12       flowers of species no target has: 3, 7 or 10 petals in blue, cyan, lime or magenta
=========  =======  ==========================================================================================
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from . import render as R
from .domains import (
    DomainSpec,
    draw_flower_species,
    draw_ink_character,
    paint_texture,
    place_sign,
    texture_field,
)

__all__ = ["SOURCE", "draw_source", "LETTERS"]

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


# -- source: target-like structure, other classes ----------------------------------------------------------
SCRIPT = "ΓΔΘΛΞΠΣΦΨΩБДЖЗИЛЦЧШЯ"
BLENDS = [
    ("stripes", "dotted"), ("checkered", "wavy"), ("grid", "rings"), ("zigzag", "speckled"),
    ("spiral", "bricks"), ("honeycomb", "fibrous"), ("crosshatched", "marbled"), ("cracked", "stripes"),
    ("scaly", "grid"), ("rings", "zigzag"), ("dotted", "wavy"), ("bricks", "speckled"),
]  # fmt: skip
BOARDS = [(shape, scheme) for scheme in ("green", "orange") for shape in (0, 3, 4, 5, 6, 8)]  # 0 sides: a disc
_SCHEMES = {"green": ((20, 120, 60), (245, 245, 240)), "orange": ((240, 130, 20), (20, 20, 20))}
_HUES = {"blue": 0.6, "cyan": 0.5, "lime": 0.25, "magenta": 0.85}
SPECIES = [(p, hue, (i % 2) == 1, (i % 4) < 2) for i, (p, hue) in enumerate((p, h) for p in (3, 7, 10) for h in _HUES.values())]


def _draw_board(rng: np.random.Generator, shape: int, scheme: str, size: int, letter: str | None = None) -> np.ndarray:
    """A board of ``shape`` sides (0: a disc) in colour ``scheme``, with ``letter`` inside (default: a random one,
    a nuisance: the class is the shape and the scheme)."""
    n = R.SUPERSAMPLE * size
    img = R.natural_background(rng, n)
    board = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    d = ImageDraw.Draw(board)
    outer, inner = _SCHEMES[scheme]
    cx, cy, r = n / 2, n / 2, n * 0.42
    for radius, colour in ((r, outer), (r * 0.8, inner)):
        if shape == 0:
            d.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
        else:
            d.polygon(R.regular_polygon(cx, cy, radius, shape, -np.pi / 2), fill=colour)
    if letter is None:
        letter = LETTERS[int(rng.integers(len(LETTERS)))]  # a nuisance symbol, not the class
    f = R.font("DejaVuSans-Bold.ttf", max(4, int(r * 0.7)))
    box = f.getbbox(letter)
    d.text((cx - (box[2] - box[0]) / 2 - box[0], cy - (box[3] - box[1]) / 2 - box[1]), letter, font=f, fill=outer)
    return place_sign(rng, img, board, size)


def draw_source(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """Draw one image of source class ``label`` (the table in this module's docstring)."""
    start = 0
    for count, draw in (
        (len(_OBJECTS), lambda k: _draw_object(rng, k, size)),
        (len(LETTERS), lambda k: _draw_letter(rng, LETTERS[k], size)),
        (_N_PATTERNS, lambda k: _draw_pattern(rng, k, size)),
        (len(SCRIPT), lambda k: draw_ink_character(rng, SCRIPT[k], size)),
        (len(BLENDS), lambda k: paint_texture(rng, _blend(rng, *BLENDS[k], R.SUPERSAMPLE * size), size)),
        (len(BOARDS), lambda k: _draw_board(rng, *BOARDS[k], size)),
        (len(SPECIES), lambda k: draw_flower_species(rng, SPECIES, k, size)),
    ):
        if label < start + count:
            return draw(label - start)
        start += count
    raise ValueError(f"source class {label} out of range 0-{start - 1}")


def _blend(rng: np.random.Generator, a: str, b: str, n: int) -> np.ndarray:
    return np.maximum(texture_field(a, rng, n), 0.7 * texture_field(b, rng, n))


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




_NAMES = (
    [f"object{c:02d}" for c in range(len(_OBJECTS))] + [f"letter {c}" for c in LETTERS]
    + [f"pattern{k}" for k in range(_N_PATTERNS)] + [f"script {c}" for c in SCRIPT]
    + [f"{a}+{b}" for a, b in BLENDS] + [f"board {k or 'disc'}-{s}" for k, s in BOARDS]
    + [f"{p}-petal {'pointed' if pointed else 'round'} {h}" for (p, _, pointed, _), h in zip(SPECIES, [h for _ in (3, 7, 10) for h in _HUES])]
)  # fmt: skip
SOURCE = DomainSpec(
    "source", len(_NAMES), draw_source, {"train": 200 * len(_NAMES), "val": 2000, "test": 2000}, True,
    "broad, as ImageNet is: objects, letters, noise patterns, and the kinds of structure the targets are made "
    "of (strokes, texture blends, boards, flowers) in classes no target has",
    _NAMES,
)
