"""The domains of the mini-decathlon: one drawing function per domain, ``draw(rng, label, size) -> uint8 HWC``.

Five target domains differ the way the Visual Decathlon's do, plus a broad source domain to pretrain the
backbone on (the role ImageNet plays in the papers; :mod:`mdlprune.data.mini.source`). Like the Decathlon's
small domains (Aircraft, DTD, VGG-Flowers, Omniglot: 10-70 training images per class), the targets have few
training images per class, so fine-tuning a whole backbone overfits where the frozen features transfer:

============  =======  =========  =====  ====  ====  =======================================================
domain        classes  per class  train  val   test  what it imitates
============  =======  =========  =====  ====  ====  =======================================================
``digits``    10       20         200    600   1000  SVHN: printed digits in varied fonts on cluttered colour
                                                     backgrounds, with neighbours
``glyphs``    40       10         400    400   1000  Omniglot: characters of five non-Latin scripts, elastic
                                                     stroke jitter, ink on paper
``textures``  16       40         640    400   800   DTD: procedural texture families at random scale,
                                                     orientation and colours
``signs``     25       10         250    500   1000  GTSRB: traffic-sign shapes, colours and symbols, under
                                                     varying light and blur
``flowers``   20       10         200    300   600   VGG-Flowers: fine-grained flowers told apart by petal
                                                     count, shape and colour
``source``    116      200        23200  2000  2000  broad, as ImageNet is (see :mod:`.source`)
============  =======  =========  =====  ====  ====  =======================================================

Every class definition is fixed by the generator version, not by the seed: the seed only changes which
samples are drawn. Bump :data:`GENERATOR_VERSION` whenever a drawing function changes its output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from . import render as R

GENERATOR_VERSION = 3


@dataclass(frozen=True)
class DomainSpec:
    """How to draw a domain, and its default split sizes."""

    name: str
    num_classes: int
    draw: Callable[[np.random.Generator, int, int], np.ndarray]
    sizes: dict[str, int]
    flip: bool  # horizontal flips are a valid augmentation (not for text, digits, signs)
    description: str
    class_names: list[str] = field(default_factory=list)


# -- digits: SVHN-like --------------------------------------------------------------------------------------
_DIGIT_FONTS = R.LATIN_FONTS


def draw_digits(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    n = R.SUPERSAMPLE * size
    c0, c1 = R.random_color(rng, v=(0.2, 1.0)), R.random_color(rng, v=(0.2, 1.0))
    img = R.gradient(rng, n, c0, c1)
    R.clutter(rng, img, int(rng.integers(1, 5)))
    bg = np.asarray(img, np.float32).reshape(-1, 3).mean(0)
    fg = R.contrasting_color(rng, bg, rng.uniform(45, 120))
    font_name = _DIGIT_FONTS[int(rng.integers(len(_DIGIT_FONTS)))]
    px = int(n * rng.uniform(0.6, 0.85))
    f = R.font(font_name, px)
    mask = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(mask)
    cy = n / 2 + rng.uniform(-0.06, 0.06) * n
    cx = n / 2 + rng.uniform(-0.06, 0.06) * n
    spacing = rng.uniform(0.5, 0.7) * px
    for k, digit in ((0, label), (-1, int(rng.integers(10))), (1, int(rng.integers(10)))):
        if k and rng.random() < 0.3:
            continue  # sometimes no neighbour on that side
        box = f.getbbox(str(digit))
        w, h = box[2] - box[0], box[3] - box[1]
        draw.text((cx + k * spacing - w / 2 - box[0], cy - h / 2 - box[1]), str(digit), font=f, fill=255)
    mask = mask.rotate(rng.uniform(-12, 12), resample=Image.BILINEAR)
    R.paste_colored(img, mask, fg)
    out = R.finish(img, size, rng, noise=rng.uniform(2, 12), blur=rng.uniform(0, 1.6))
    return R.jitter_colors(rng, out)


# -- glyphs: Omniglot-like ----------------------------------------------------------------------------------
# Eight characters from each of five scripts DejaVu Sans covers, chosen to look unlike each other.
_GLYPHS = (
    "ԱԲԴԺԽՃՋՖ"  # Armenian
    "აბგდევზთ"  # Georgian
    "ⴰⴱⴳⴷⴹⴻⵀⵅ"  # Tifinagh
    "ᐁᐅᐊᐯᐱᑌᑎᑭ"  # Canadian syllabics
    "ߊߋߌߍߎߏߐߒ"  # N'Ko
)
_GLYPH_FONTS = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf"]


def draw_glyphs(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    return draw_ink_character(rng, _GLYPHS[label], size)


def draw_ink_character(rng: np.random.Generator, char: str, size: int) -> np.ndarray:
    """A handwritten-looking character: jittered strokes of ink on paper."""
    n = R.SUPERSAMPLE * size
    font_name = _GLYPH_FONTS[int(rng.integers(len(_GLYPH_FONTS)))]
    mask = R.text_mask(char, font_name, n, n, rng, scale=(0.5, 0.72), rotate=15, offset=0.06)
    if rng.random() < 0.5:  # pen pressure: thicker or thinner strokes
        mask = mask.filter(ImageFilter.MaxFilter(3) if rng.random() < 0.6 else ImageFilter.MinFilter(3))
    ink = R.warp(np.asarray(mask, np.float32) / 255.0, rng, strength=rng.uniform(1.0, 2.5) * n / 32)
    paper = rng.uniform(215, 255) + rng.normal(0, 4, (n, n))
    gray = paper * (1 - ink) + rng.uniform(0, 60) * ink
    img = Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8), "L").convert("RGB")
    return R.finish(img, size, rng, noise=rng.uniform(0, 6))


# -- textures: DTD-like -------------------------------------------------------------------------------------
_TEXTURES = [
    "stripes", "checkered", "dotted", "grid", "zigzag", "wavy", "rings", "spiral",
    "crosshatched", "bricks", "honeycomb", "marbled", "cracked", "scaly", "fibrous", "speckled",
]  # fmt: skip


def texture_field(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """A pattern in [0, 1] over an n×n grid, at a random frequency, orientation and phase."""
    f = rng.uniform(3, 8) * 2 * np.pi / n
    a = rng.uniform(0, np.pi)
    y, x = np.mgrid[0:n, 0:n].astype(np.float32) - n / 2 + rng.uniform(-n, n, 2)[:, None, None]
    u, v = x * np.cos(a) + y * np.sin(a), -x * np.sin(a) + y * np.cos(a)
    if kind == "stripes":
        return (np.sin(f * u) > rng.uniform(-0.4, 0.4)).astype(np.float32)
    if kind == "checkered":
        return ((np.sin(f * u) > 0) ^ (np.sin(f * v) > 0)).astype(np.float32)
    if kind == "dotted":
        return ((np.sin(f * u) * np.sin(f * v)) > rng.uniform(0.35, 0.7)).astype(np.float32)
    if kind == "grid":
        return ((np.abs(np.sin(f * u / 2)) < 0.25) | (np.abs(np.sin(f * v / 2)) < 0.25)).astype(np.float32)
    if kind == "zigzag":
        tri = 2 * np.abs((v * f / (2 * np.pi)) % 1 - 0.5) * rng.uniform(4, 8)
        return (np.sin(f * u + tri) > 0).astype(np.float32)
    if kind == "wavy":
        return 0.5 + 0.5 * np.sin(f * u + rng.uniform(1, 3) * np.sin(f * v / 2))
    if kind == "rings":
        return (np.sin(f * np.hypot(u, v)) > 0).astype(np.float32)
    if kind == "spiral":
        return (np.sin(f * np.hypot(u, v) + int(rng.integers(2, 6)) * np.arctan2(v, u)) > 0).astype(np.float32)
    if kind == "crosshatched":
        return np.maximum(np.abs(np.sin(f * (u + v) / 2)) < 0.3, np.abs(np.sin(f * (u - v) / 2)) < 0.3).astype(np.float32)
    if kind == "bricks":
        row = np.floor(v * f / (2 * np.pi))
        mortar_h = np.abs(np.sin(f * v / 2)) < 0.2
        mortar_v = np.abs(np.sin(f * (u / 2 + row * np.pi / f) / 2)) < 0.12
        return 1.0 - (mortar_h | mortar_v).astype(np.float32)
    if kind == "honeycomb":
        k = [f * (u * np.cos(t) + v * np.sin(t)) for t in (0, 2 * np.pi / 3, 4 * np.pi / 3)]
        return (sum(np.cos(kk) for kk in k) < rng.uniform(-0.5, 0.5)).astype(np.float32)
    if kind == "marbled":
        noise = R.smooth_noise(rng, n, 5, 1)[..., 0]
        return 0.5 + 0.5 * np.sin(f * u + 12 * noise)
    if kind == "cracked":
        pts = rng.uniform(-n, n, (24, 2)).astype(np.float32)
        d = np.sort(np.hypot(x[..., None] - pts[:, 0], y[..., None] - pts[:, 1]), axis=-1)
        return (d[..., 1] - d[..., 0] > rng.uniform(1.5, 3.0) * n / 64).astype(np.float32)
    if kind == "scaly":
        row = np.floor(v * f / (2 * np.pi))
        uu = u + row * np.pi / f
        cu, cv = (np.round(uu * f / (2 * np.pi)) * 2 * np.pi / f), (row * 2 * np.pi / f)
        return (np.hypot(uu - cu, v - cv) * f / (2 * np.pi) < 0.55).astype(np.float32) * ((v - cv) > -0.1 / f)
    if kind == "fibrous":
        noise = rng.random((max(2, n // 16), n)).astype(np.float32)
        streaks = np.asarray(Image.fromarray((noise * 255).astype(np.uint8)).resize((n, n), Image.BILINEAR), np.float32) / 255
        img = Image.fromarray((streaks * 255).astype(np.uint8)).rotate(np.rad2deg(a), resample=Image.BILINEAR, expand=False)
        return np.asarray(img, np.float32) / 255
    if kind == "speckled":
        return (rng.random((n, n)) < rng.uniform(0.05, 0.2)).astype(np.float32)
    raise ValueError(kind)


def draw_textures(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    n = R.SUPERSAMPLE * size
    return paint_texture(rng, texture_field(_TEXTURES[label], rng, n), size)


def paint_texture(rng: np.random.Generator, field: np.ndarray, size: int) -> np.ndarray:
    """Colour a pattern in [0, 1] with two contrasting colours under uneven lighting."""
    n = R.SUPERSAMPLE * size
    t = field[..., None]
    c0 = np.asarray(R.random_color(rng, s=(0.0, 0.9)), np.float32)
    c1 = np.asarray(R.contrasting_color(rng, c0, rng.uniform(40, 140)), np.float32)
    shade = 0.75 + 0.5 * R.smooth_noise(rng, n, 3, 1)  # uneven lighting
    img = ((1 - t) * c0 + t * c1) * shade
    return R.finish(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB"), size, rng, noise=rng.uniform(2, 10), blur=rng.uniform(0, 0.8))


# -- signs: GTSRB-like --------------------------------------------------------------------------------------
_RED, _BLUE, _WHITE, _BLACK, _YELLOW = (200, 30, 35), (25, 80, 175), (245, 245, 240), (20, 20, 20), (250, 200, 20)
_SIGNS = (
    [("prohibitory", s) for s in ("20", "30", "50", "60", "70", "80", "100", "120")]
    + [("mandatory", s) for s in ("ahead", "left", "right", "keep-right")]
    + [("warning", s) for s in ("!", "curve-left", "curve-right", "bumps", "person", "snow")]
    + [("yield", ""), ("stop", "STOP"), ("priority", ""), ("no-entry", ""), ("end", "")]
    + [("info", "P"), ("info", "H")]
)


def _arrow(draw, cx, cy, r, angle, color):
    a = np.deg2rad(angle)
    pts = [(-0.15, 0.55), (-0.15, -0.1), (-0.4, -0.1), (0.0, -0.6), (0.4, -0.1), (0.15, -0.1), (0.15, 0.55)]
    rot = [(cx + r * (x * np.cos(a) - y * np.sin(a)), cy + r * (x * np.sin(a) + y * np.cos(a))) for x, y in pts]
    draw.polygon(rot, fill=color)


def _symbol(draw, symbol, cx, cy, r, color):
    w = max(1, int(r * 0.14))
    if symbol in ("ahead", "left", "right", "keep-right"):
        _arrow(draw, cx, cy, r, {"ahead": 0, "left": -90, "right": 90, "keep-right": 135}[symbol], color)
    elif symbol in ("curve-left", "curve-right"):
        k = -1 if symbol == "curve-left" else 1
        draw.line([(cx - 0.1 * k * r, cy + 0.45 * r), (cx - 0.1 * k * r, cy), (cx + 0.25 * k * r, cy - 0.3 * r)], fill=color, width=w)
    elif symbol == "bumps":
        draw.arc([cx - 0.5 * r, cy - 0.2 * r, cx, cy + 0.3 * r], 180, 360, fill=color, width=w)
        draw.arc([cx, cy - 0.2 * r, cx + 0.5 * r, cy + 0.3 * r], 180, 360, fill=color, width=w)
    elif symbol == "person":
        draw.ellipse([cx - 0.1 * r, cy - 0.5 * r, cx + 0.1 * r, cy - 0.3 * r], fill=color)
        draw.line([(cx, cy - 0.3 * r), (cx, cy + 0.1 * r)], fill=color, width=w)
        draw.line([(cx - 0.2 * r, cy + 0.45 * r), (cx, cy + 0.1 * r), (cx + 0.2 * r, cy + 0.45 * r)], fill=color, width=w)
        draw.line([(cx - 0.25 * r, cy - 0.1 * r), (cx + 0.25 * r, cy - 0.15 * r)], fill=color, width=w)
    elif symbol == "snow":
        for t in range(3):
            a = t * np.pi / 3
            draw.line([cx - 0.45 * r * np.cos(a), cy - 0.45 * r * np.sin(a), cx + 0.45 * r * np.cos(a), cy + 0.45 * r * np.sin(a)], fill=color, width=w)
    elif symbol:
        f = R.font("DejaVuSans-Bold.ttf", max(4, int(r * (1.0 if len(symbol) == 1 else 0.75 if len(symbol) == 2 else 0.55))))
        box = f.getbbox(symbol)
        draw.text((cx - (box[2] - box[0]) / 2 - box[0], cy - (box[3] - box[1]) / 2 - box[1]), symbol, font=f, fill=color)


def draw_signs(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    n = R.SUPERSAMPLE * size
    img = R.natural_background(rng, n)
    kind, symbol = _SIGNS[label]
    sign = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    d = ImageDraw.Draw(sign)
    cx, cy, r = n / 2, n / 2, n * 0.42
    b = r * 0.18  # border width
    if kind in ("prohibitory", "no-entry", "end", "mandatory"):
        outer = _BLUE if kind == "mandatory" else (_RED if kind != "end" else _WHITE)
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=outer)
        if kind == "prohibitory":
            d.ellipse([cx - r + b, cy - r + b, cx + r - b, cy + r - b], fill=_WHITE)
            _symbol(d, symbol, cx, cy, r, _BLACK)
        elif kind == "no-entry":
            d.rectangle([cx - 0.65 * r, cy - 0.15 * r, cx + 0.65 * r, cy + 0.15 * r], fill=_WHITE)
        elif kind == "end":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=_BLACK, width=max(1, int(b / 3)))
            for k in (-0.3, 0.0, 0.3):
                d.line([cx - 0.5 * r + k * r, cy + 0.5 * r + k * r, cx + 0.5 * r + k * r, cy - 0.5 * r + k * r], fill=_BLACK, width=max(1, int(b / 2)))
        else:
            _symbol(d, symbol, cx, cy, r, _WHITE)
    elif kind in ("warning", "yield"):
        up = kind == "warning"
        phase = -np.pi / 2 if up else np.pi / 2
        d.polygon(R.regular_polygon(cx, cy + (0.15 if up else -0.15) * r, r * 1.1, 3, phase), fill=_RED)
        d.polygon(R.regular_polygon(cx, cy + (0.15 if up else -0.15) * r, r * 1.1 - 2 * b, 3, phase), fill=_WHITE)
        if up:
            _symbol(d, symbol, cx, cy + 0.25 * r, r * 0.55, _BLACK)
    elif kind == "stop":
        d.polygon(R.regular_polygon(cx, cy, r, 8, np.pi / 8), fill=_RED)
        _symbol(d, symbol, cx, cy, r, _WHITE)
    elif kind == "priority":
        d.polygon(R.regular_polygon(cx, cy, r, 4, 0), fill=_WHITE)
        d.polygon(R.regular_polygon(cx, cy, r * 0.72, 4, 0), fill=_YELLOW)
    else:  # info
        d.rectangle([cx - 0.8 * r, cy - 0.8 * r, cx + 0.8 * r, cy + 0.8 * r], fill=_BLUE)
        _symbol(d, symbol, cx, cy, r * 0.9, _WHITE)
    return place_sign(rng, img, sign, size)


def place_sign(rng: np.random.Generator, img: Image.Image, sign: Image.Image, size: int) -> np.ndarray:
    """Paste a drawn sign (RGBA) on a background with a random pose, blur, noise and lighting."""
    n = img.size[0]
    # pose: scale, small rotation, perspective squash, position
    s = rng.uniform(0.55, 0.95)
    w, h = int(n * s * rng.uniform(0.8, 1.0)), int(n * s)
    sign = sign.rotate(rng.uniform(-10, 10), resample=Image.BILINEAR).resize((w, h), Image.BILINEAR)
    x0 = int((n - w) / 2 + rng.uniform(-0.1, 0.1) * n)
    y0 = int((n - h) / 2 + rng.uniform(-0.1, 0.1) * n)
    img.paste(sign, (x0, y0), sign)
    out = R.finish(img, size, rng, noise=rng.uniform(2, 10), blur=rng.uniform(0.3, 1.8))
    return R.jitter_colors(rng, out, brightness=(0.3, 1.3), contrast=(0.5, 1.2))


# -- flowers: VGG-Flowers-like ------------------------------------------------------------------------------
_PETALS = (4, 5, 6, 8)
_HUES = {"red": 0.99, "orange": 0.07, "yellow": 0.14, "purple": 0.78, "pink": 0.92}
_FLOWERS = [(p, hue) for p in _PETALS for hue in _HUES]


def _species(cls: int) -> tuple[int, float, bool, bool]:
    """A target species: petal count, hue, pointed petals, bright centre."""
    petals, hue_name = _FLOWERS[cls]
    return petals, _HUES[hue_name], cls % 2 == 1, cls % 4 < 2


def draw_flowers(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    return draw_flower_species(rng, [_species(c) for c in range(len(_FLOWERS))], label, size)


def draw_flower_species(rng: np.random.Generator, species: list, label: int, size: int) -> np.ndarray:
    """A flower of ``species[label]`` among leaves, sometimes with another species at the border."""
    n = R.SUPERSAMPLE * size
    img = R.natural_background(rng, n, palette=[R.rgb(0.3 + rng.normal(0, 0.04), 0.6, 0.25), R.rgb(0.25, 0.5, 0.55)])
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 6))):  # leaves
        lx, ly = rng.uniform(0, n, 2)
        d.polygon(R.regular_polygon(lx, ly, n * rng.uniform(0.1, 0.25), 2, rng.uniform(0, np.pi))
                  + R.regular_polygon(lx, ly, n * 0.05, 2, rng.uniform(0, np.pi)), fill=R.rgb(0.3, 0.7, rng.uniform(0.2, 0.5)))  # fmt: skip

    def flower(cls: int, cx: float, cy: float, r: float):
        petals, hue, pointed, bright = species[cls]
        hue = hue + rng.normal(0, 0.015)
        rot = rng.uniform(0, 2 * np.pi)
        for k in range(petals):
            a = rot + 2 * np.pi * k / petals
            px, py = cx + 0.55 * r * np.cos(a), cy + 0.55 * r * np.sin(a)
            color = R.rgb(hue, rng.uniform(0.55, 0.95), rng.uniform(0.75, 1.0))
            width = r * (0.28 if pointed else 0.42) * (5 / petals) ** 0.5
            if pointed:
                tip = (cx + r * np.cos(a), cy + r * np.sin(a))
                side = (-np.sin(a) * width, np.cos(a) * width)
                d.polygon([(cx, cy), (px + side[0], py + side[1]), tip, (px - side[0], py - side[1])], fill=color)
            else:
                pts = [(px + 0.48 * r * np.cos(t) * np.cos(a) - width * np.sin(t) * np.sin(a),
                        py + 0.48 * r * np.cos(t) * np.sin(a) + width * np.sin(t) * np.cos(a))
                       for t in np.linspace(0, 2 * np.pi, 16, endpoint=False)]  # fmt: skip
                d.polygon(pts, fill=color)
        centre = R.rgb(0.12 if bright else 0.08, 0.8, 0.9 if bright else 0.35)
        d.ellipse([cx - 0.2 * r, cy - 0.2 * r, cx + 0.2 * r, cy + 0.2 * r], fill=centre)

    if rng.random() < 0.4:  # a partly visible flower of another species at the border
        other = int(rng.integers(len(species)))
        a = rng.uniform(0, 2 * np.pi)
        flower(other, n / 2 + 0.62 * n * np.cos(a), n / 2 + 0.62 * n * np.sin(a), n * rng.uniform(0.25, 0.35))
    flower(label, n / 2 + rng.uniform(-0.1, 0.1) * n, n / 2 + rng.uniform(-0.1, 0.1) * n, n * rng.uniform(0.28, 0.45))
    return R.finish(img, size, rng, noise=rng.uniform(2, 8), blur=rng.uniform(0, 1.2))


TARGETS = [
    DomainSpec("digits", 10, draw_digits, {"train": 200, "val": 600, "test": 1000}, False,
               "printed digits on cluttered colour backgrounds (SVHN-like)", [str(d) for d in range(10)]),
    DomainSpec("glyphs", 40, draw_glyphs, {"train": 400, "val": 400, "test": 1000}, False,
               "characters of five non-Latin scripts with stroke jitter (Omniglot-like)", list(_GLYPHS)),
    DomainSpec("textures", 16, draw_textures, {"train": 640, "val": 400, "test": 800}, True,
               "procedural texture families (DTD-like)", list(_TEXTURES)),
    DomainSpec("signs", 25, draw_signs, {"train": 250, "val": 500, "test": 1000}, False,
               "traffic-sign shapes, colours and symbols (GTSRB-like)", [f"{k}:{s}" if s else k for k, s in _SIGNS]),
    DomainSpec("flowers", 20, draw_flowers, {"train": 200, "val": 300, "test": 600}, True,
               "fine-grained flowers: petal count, shape and colour (VGG-Flowers-like)",
               [f"{p}-petal {'pointed' if i % 2 else 'round'} {h}" for i, (p, h) in enumerate(_FLOWERS)]),
]  # fmt: skip
#: quick mode (``size="quick"``, ``MDLPRUNE_QUICK=1``: CI and the course's quick runs): a target keeps its training
#: set, so that Finetune, the S-score's baseline, is as strong as in the default (on 200 texture images it fell
#: below Feature, and every method collected its score there), and is tested on 300 images; the source shrinks to
#: 200 images (a smoke test of pretraining)
QUICK_SIZES = {"target": {"val": 60, "test": 300}, "source": {"train": 200, "val": 60, "test": 100}}
