"""Drawing helpers for the procedural mini-decathlon: canvases, backgrounds, warps, fonts, noise.

Everything is drawn with PIL at twice the stored resolution and box-filtered down (cheap anti-aliasing),
from a ``numpy.random.Generator`` seeded per image, so an image depends only on (seed, domain, split,
index): the data are byte-identical whatever the number of worker processes.
"""

from __future__ import annotations

import colorsys
import functools
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SUPERSAMPLE = 2
#: the DejaVu fonts that draw Latin letters and digits
LATIN_FONTS = [
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf", "DejaVuSerif-BoldItalic.ttf",
]  # fmt: skip


def font_path(name: str = "DejaVuSans.ttf") -> str:
    """A DejaVu font shipped inside matplotlib (no system fonts needed)."""
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
    if not path.is_file():
        raise FileNotFoundError(f"matplotlib does not ship the font {name} (looked in {path.parent})")
    return str(path)


def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    """The font at ``size`` pixels, rounded to an even size so that the cache of loaded fonts stays small."""
    return _font(name, max(4, int(size) // 2 * 2))


@functools.lru_cache(maxsize=512)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(font_path(name), size)


def rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    """HSV in [0, 1] → an RGB triple in 0..255."""
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def random_color(rng: np.random.Generator, s=(0.3, 1.0), v=(0.3, 1.0)) -> tuple[int, int, int]:
    return rgb(rng.random(), rng.uniform(*s), rng.uniform(*v))


def luminance(c) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def contrasting_color(rng: np.random.Generator, bg, min_diff: float = 60.0) -> tuple[int, int, int]:
    """A random colour whose luminance differs from ``bg``'s by at least ``min_diff`` (of 255)."""
    for _ in range(20):
        c = random_color(rng, s=(0.0, 1.0), v=(0.0, 1.0))
        if abs(luminance(c) - luminance(bg)) >= min_diff:
            return c
    return (255, 255, 255) if luminance(bg) < 128 else (0, 0, 0)


def gradient(rng: np.random.Generator, size: int, c0, c1) -> Image.Image:
    """A linear colour gradient from ``c0`` to ``c1`` in a random direction."""
    a = rng.uniform(0, 2 * np.pi)
    r = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    t = np.clip(r[None, :] * np.cos(a) + r[:, None] * np.sin(a) + 0.5, 0, 1)[..., None]
    c0, c1 = np.asarray(c0, np.float32), np.asarray(c1, np.float32)
    return Image.fromarray((c0 + t * (c1 - c0)).astype(np.uint8), "RGB")


def smooth_noise(rng: np.random.Generator, size: int, cells: int = 4, channels: int = 3) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a ``cells``×``cells`` random grid, bicubically upsampled."""
    grid = (rng.random((cells, cells, channels)) * 255).astype(np.uint8)
    mode = "RGB" if channels == 3 else "L"
    img = Image.fromarray(grid if channels == 3 else grid[..., 0], mode).resize((size, size), Image.BICUBIC)
    out = np.asarray(img, np.float32) / 255.0
    return out if channels == 3 else out[..., None]


def natural_background(rng: np.random.Generator, size: int, palette=None) -> Image.Image:
    """Blurry, low-frequency 'scenery': two noise octaves mixed into a random (or given) palette."""
    c0 = np.asarray(palette[0] if palette else random_color(rng, v=(0.2, 0.9)), np.float32)
    c1 = np.asarray(palette[1] if palette else random_color(rng, v=(0.2, 0.9)), np.float32)
    t = 0.65 * smooth_noise(rng, size, 3, 1) + 0.35 * smooth_noise(rng, size, 9, 1)
    img = (1 - t) * c0 + t * c1 + rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def clutter(rng: np.random.Generator, img: Image.Image, n: int, alpha: bool = False) -> None:
    """Draw ``n`` random rectangles, ellipses and thick lines on ``img`` (in place)."""
    size = img.size[0]
    draw = ImageDraw.Draw(img)
    for _ in range(n):
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * size
        w, h = rng.uniform(0.1, 0.6, 2) * size
        c = random_color(rng, s=(0.0, 1.0), v=(0.1, 1.0))
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=c)
        elif kind == 1:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=c)
        else:
            draw.line([x0, y0, x0 + w, y0 + h], fill=c, width=int(rng.integers(1, max(2, size // 12))))


def finish(img: Image.Image, size: int, rng: np.random.Generator, noise: float = 0.0, blur: float = 0.0) -> np.ndarray:
    """Optional blur, box-filter down to ``size``, optional Gaussian pixel noise; uint8 (size, size, 3)."""
    if blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    img = img.convert("RGB").resize((size, size), Image.BOX)
    out = np.asarray(img, np.float32)
    if noise > 0:
        out = out + rng.normal(0, noise, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def jitter_colors(rng: np.random.Generator, img: np.ndarray, brightness=(0.6, 1.3), contrast=(0.6, 1.3)) -> np.ndarray:
    """Random brightness and contrast (as photographs under varying light)."""
    x = img.astype(np.float32)
    mean = x.mean()
    x = (x - mean) * rng.uniform(*contrast) + mean * rng.uniform(*brightness)
    return np.clip(x, 0, 255).astype(np.uint8)


def warp(mask: np.ndarray, rng: np.random.Generator, strength: float, cells: int = 5) -> np.ndarray:
    """Elastic distortion: displace every pixel by a smooth random field of up to ``strength`` pixels
    (bilinear sampling, numpy only)."""
    h, w = mask.shape
    field = (smooth_noise(rng, h, cells, 3)[..., :2] - 0.5) * 2 * strength
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    sy, sx = np.clip(yy + field[..., 0], 0, h - 1), np.clip(xx + field[..., 1], 0, w - 1)
    y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = sy - y0, sx - x0
    m = mask.astype(np.float32)
    top = m[y0, x0] * (1 - fx) + m[y0, x1] * fx
    bottom = m[y1, x0] * (1 - fx) + m[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def paste_colored(canvas: Image.Image, mask: Image.Image, color) -> None:
    """Paint ``color`` onto ``canvas`` through the L-mode ``mask`` (in place)."""
    canvas.paste(Image.new("RGB", canvas.size, tuple(int(c) for c in color)), (0, 0), mask)


def text_mask(text: str, font_name: str, size: int, canvas: int, rng: np.random.Generator,
              scale=(0.55, 0.8), rotate: float = 0.0, offset: float = 0.0) -> Image.Image:
    """An L-mode mask of ``text`` roughly centred on a ``canvas``-sized square, randomly scaled, rotated
    by up to ``rotate`` degrees and shifted by up to ``offset`` × canvas."""
    f = font(font_name, max(4, int(size * rng.uniform(*scale))))
    box = f.getbbox(text)
    tw, th = box[2] - box[0], box[3] - box[1]
    layer = Image.new("L", (canvas, canvas), 0)
    dx, dy = rng.uniform(-offset, offset, 2) * canvas
    ImageDraw.Draw(layer).text(
        ((canvas - tw) / 2 - box[0] + dx, (canvas - th) / 2 - box[1] + dy), text, font=f, fill=255
    )
    if rotate:
        layer = layer.rotate(rng.uniform(-rotate, rotate), resample=Image.BILINEAR)
    return layer


def regular_polygon(cx: float, cy: float, r: float, n: int, phase: float = 0.0) -> list[tuple[float, float]]:
    a = phase + np.arange(n) * 2 * np.pi / n
    return list(zip(cx + r * np.cos(a), cy + r * np.sin(a)))


def star(cx: float, cy: float, r: float, n: int, inner: float = 0.45, phase: float = 0.0) -> list[tuple[float, float]]:
    a = phase + np.arange(2 * n) * np.pi / n
    rr = np.where(np.arange(2 * n) % 2 == 0, r, r * inner)
    return list(zip(cx + rr * np.cos(a), cy + rr * np.sin(a)))
