"""Relevance heatmaps laid over the original picture, where the model actually looked."""

from __future__ import annotations

import matplotlib
import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import NtlbError
from ..explain.normalize import minmax, upsample
from ..models.adapter import PreprocessConfig, view_box


def colorize(values: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 colours."""
    return (matplotlib.colormaps[cmap](np.clip(values, 0, 1))[..., :3] * 255).astype(np.uint8)


STYLES = ("spotlight", "jet")  # the first is the default


def spotlight(picture: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The picture as it is inside a black-and-white contour around the upper half of the relevance, fading to a
    dim grey as relevance falls to 0 outside it: the colours of the objects being explained stay as they are (a
    colour map would paint over them)."""
    from scipy import ndimage

    grey = picture @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    faded = np.repeat((0.45 * grey + 25)[..., None], 3, axis=-1)
    weight = np.clip(2 * heat, 0, 1)[..., None].astype(np.float32)
    out = faded * (1 - weight) + picture * weight
    hot = heat >= 0.5
    width = max(1, round(min(heat.shape) / 150))
    inner = hot & ~ndimage.binary_erosion(hot, iterations=width)
    outer = ndimage.binary_dilation(hot, iterations=width) & ~hot
    out[outer] = 0.0
    out[inner] = 255.0
    return out


def overlay(image: Image.Image, patch_map: Tensor, config: PreprocessConfig | None = None,
            alpha: float = 0.5, cmap: str = "jet", style: str = "spotlight") -> Image.Image:
    """The image with the (h, w) map upsampled over the part the model saw; the rest is dimmed. Style
    "spotlight" (default) keeps the picture's colours where relevant and greys the rest; "jet" blends the
    colour map `cmap` in at `alpha` (the paper's figures)."""
    if style not in STYLES:
        raise NtlbError(f"unknown overlay style '{style}': use one of {', '.join(STYLES)}")
    image = image.convert("RGB")
    base = np.asarray(image).astype(np.float32)
    box = view_box(image.size, config) if config is not None else (0, 0, *image.size)
    left, top, right, bottom = (int(round(v)) for v in box)
    size = (bottom - top, right - left)
    heat = minmax(upsample(patch_map.detach().float().cpu(), size)).numpy()
    out = base * 0.35  # outside the model's view: dimmed
    canvas = np.zeros((size[0], size[1], 3), dtype=np.float32)
    src_top, src_left = max(0, -top), max(0, -left)
    dst_top, dst_left = max(0, top), max(0, left)
    h = min(base.shape[0] - dst_top, size[0] - src_top)
    w = min(base.shape[1] - dst_left, size[1] - src_left)
    canvas[src_top : src_top + h, src_left : src_left + w] = base[dst_top : dst_top + h, dst_left : dst_left + w]
    if style == "jet":
        blended = (1 - alpha) * canvas + alpha * colorize(heat, cmap).astype(np.float32)
    else:
        blended = spotlight(canvas, heat)
    out[dst_top : dst_top + h, dst_left : dst_left + w] = blended[src_top : src_top + h, src_left : src_left + w]
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def to_pil(pixels: Tensor, config: PreprocessConfig) -> Image.Image:
    """A preprocessed (3, H, W) tensor back to a picture (undoing the normalisation)."""
    mean = torch.tensor(config.mean).view(3, 1, 1)
    std = torch.tensor(config.std).view(3, 1, 1)
    rgb = (pixels.detach().float().cpu() * std + mean).clamp(0, 1)
    return Image.fromarray((rgb.permute(1, 2, 0).numpy() * 255).astype(np.uint8))


def captioned(picture: Image.Image, caption: str, min_side: int = 224, font_size: int = 14) -> Image.Image:
    """The picture (enlarged to at least `min_side` pixels on its short side, so a small one stays readable)
    above a white strip with the caption wrapped to its width."""
    import textwrap

    from PIL import ImageDraw, ImageFont

    scale = max(1.0, min_side / min(picture.size))
    if scale > 1:
        picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.NEAREST)
    font = ImageFont.load_default(size=font_size)
    per_line = max(8, int(picture.width / (0.55 * font_size)))
    lines = textwrap.wrap(caption, per_line)[:3] or [""]
    line_height = font_size + 4
    out = Image.new("RGB", (picture.width, picture.height + line_height * len(lines) + 6), "white")
    out.paste(picture, (0, 0))
    draw = ImageDraw.Draw(out)
    for row, line in enumerate(lines):
        draw.text((4, picture.height + 3 + row * line_height), line, fill="black", font=font)
    return out


def legend(width: int = 256, height: int = 14, cmap: str = "jet", style: str = "spotlight") -> Image.Image:
    """A bar of the overlay's look, low relevance on the left, high on the right: for "spotlight", a band of hues
    fading from the dim grey to full colour at half the relevance; for "jet", the colour map."""
    ramp = np.tile(np.linspace(0, 1, width, dtype=np.float32), (height, 1))
    if style == "jet":
        return Image.fromarray(colorize(ramp, cmap))
    ramp = np.clip(2 * ramp, 0, 1)
    hues = np.tile(np.linspace(0, 1, height, endpoint=False, dtype=np.float32)[:, None], (1, width))
    colours = colorize(hues, "hsv").astype(np.float32)
    grey = colours @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    faded = np.repeat((0.45 * grey + 25)[..., None], 3, axis=-1)
    bar = faded * (1 - ramp[..., None]) + colours * ramp[..., None]
    return Image.fromarray(np.clip(bar, 0, 255).astype(np.uint8))
