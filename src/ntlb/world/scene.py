"""Scenes of coloured shapes on textured backgrounds, rendered with exact masks and boxes.

Everything is a function of a seed, so every scene, caption and mask can be regenerated anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
COLOURS = {
    "red": (215, 35, 35), "green": (40, 170, 55), "blue": (40, 70, 220), "yellow": (235, 210, 40),
    "purple": (140, 50, 180), "orange": (245, 135, 25), "pink": (245, 120, 190), "cyan": (40, 200, 215),
}
SIZES = {"small": (0.10, 0.14), "large": (0.19, 0.25)}  # radius as a share of the image side


@dataclass(frozen=True)
class SceneObject:
    """One object: what it is, where it is (centre and radius as shares of the image side)."""

    shape: str
    colour: str
    size: str
    cx: float
    cy: float
    radius: float
    angle: float = 0.0


@dataclass
class Style:
    """How a scene is drawn: the knobs the shifted variants turn."""

    outline: bool = False
    palette_shift: float = 0.0  # hue rotation in [0, 1)
    texture: str = "noise"  # "noise", "stripes" or "checker"
    distractors: int = 0  # grey clutter shapes drawn under the objects
    noise: float = 0.05
    background: tuple[float, float, float] | None = None  # the background's base colour (None: drawn at random)


@dataclass
class Scene:
    """Objects in drawing order (later objects occlude earlier ones), a style, and a seed for the texture."""

    objects: list[SceneObject]
    seed: int
    style: Style = field(default_factory=Style)


def shape_mask(shape: str, x: np.ndarray, y: np.ndarray, r: float, angle: float = 0.0) -> np.ndarray:
    """Boolean mask of a shape of radius r centred at the origin of the coordinate grids x, y."""
    if angle:
        c, s = np.cos(angle), np.sin(angle)
        x, y = c * x + s * y, -s * x + c * y
    if shape == "circle":
        return x**2 + y**2 <= r**2
    if shape == "square":
        return np.maximum(np.abs(x), np.abs(y)) <= 0.82 * r
    if shape == "diamond":
        return np.abs(x) / 0.8 + np.abs(y) <= r
    if shape == "triangle":
        return (y <= 0.6 * r) & (np.abs(x) * 1.732 <= (y + r))
    if shape == "cross":
        arm = 0.32 * r
        return ((np.abs(x) <= arm) & (np.abs(y) <= r)) | ((np.abs(y) <= arm) & (np.abs(x) <= r))
    if shape == "star":
        theta = np.arctan2(x, -y)
        rho = np.hypot(x, y)
        spike = np.abs(((theta * 5 / (2 * np.pi)) % 1.0) - 0.5) * 2  # 1 at a point, 0 between points
        return rho <= r * (0.45 + 0.55 * spike**1.5)
    raise ValueError(f"unknown shape {shape!r}")


def _hue_shift(rgb: tuple[int, int, int], shift: float) -> np.ndarray:
    import colorsys

    if not shift:
        return np.array(rgb, dtype=np.float32)
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    return np.array(colorsys.hsv_to_rgb((h + shift) % 1.0, s * 0.8, v), dtype=np.float32) * 255


def _background(size: int, rng: np.random.Generator, style: Style) -> np.ndarray:
    base = rng.uniform(90, 170, size=3).astype(np.float32)  # drawn even when fixed: the rest of the scene is the same
    if style.background is not None:
        base = np.array(style.background, dtype=np.float32)
    yy, xx = _grid(size, 0.0)
    if style.texture == "stripes":
        freq, phase = rng.uniform(4, 9), rng.uniform(0, 6.3)
        pattern = np.sin(2 * np.pi * freq * (xx * np.cos(phase) + yy * np.sin(phase)))[..., None] * 25
    elif style.texture == "checker":
        cells = int(rng.integers(4, 9))
        pattern = (((xx * cells).astype(int) + (yy * cells).astype(int)) % 2)[..., None] * 40.0 - 20
    else:  # smooth blotches, mostly in brightness
        coarse = rng.normal(0, 1, size=(6, 6, 1)) + 0.3 * rng.normal(0, 1, size=(6, 6, 3))
        weights = _interpolation_matrix(size, 6)
        rows = np.tensordot(weights, coarse.astype(np.float32), axes=(1, 0))  # (size, 6, 3)
        pattern = np.tensordot(rows, weights, axes=(1, 1)).transpose(0, 2, 1) * 22
    return base + pattern


def background(size: int, seed: int, style: Style | None = None) -> np.ndarray:
    """A world background (size, size, 3) float in [0, 255] as `render` draws it for the seed (no objects, no pixel
    noise): what the world-render generator paints its objects on."""
    return np.clip(_background(size, np.random.default_rng(seed), style or Style()), 0, 255)


@lru_cache(maxsize=8)
def _grid(size: int, offset: float) -> tuple[np.ndarray, np.ndarray]:
    """(yy, xx) pixel coordinates as shares of the side, (i + offset) / size; cached, read-only."""
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + offset) / size
    yy.flags.writeable = xx.flags.writeable = False
    return yy, xx


@lru_cache(maxsize=8)
def _interpolation_matrix(size: int, cells: int) -> np.ndarray:
    """(size, cells) weights of linear interpolation from a coarse grid to `size` pixels."""
    position = (np.arange(size) + 0.5) / size * cells - 0.5
    low = np.clip(np.floor(position).astype(int), 0, cells - 1)
    high = np.clip(low + 1, 0, cells - 1)
    frac = np.clip(position - low, 0, 1).astype(np.float32)
    weights = np.zeros((size, cells), dtype=np.float32)
    weights[np.arange(size), low] += 1 - frac
    weights[np.arange(size), high] += frac
    weights.flags.writeable = False
    return weights


def _drawn(obj: SceneObject, size: int, radius_scale: float = 1.0) -> np.ndarray:
    """The object's shape mask (size, size), evaluated only inside the square that holds its circle of radius r
    (every shape lies within r of its centre, so the result equals evaluating the whole grid)."""
    mask = np.zeros((size, size), dtype=bool)
    r = obj.radius * radius_scale
    x0, x1 = max(0, int((obj.cx - r) * size) - 1), min(size, int((obj.cx + r) * size) + 2)
    y0, y1 = max(0, int((obj.cy - r) * size) - 1), min(size, int((obj.cy + r) * size) + 2)
    if x0 >= x1 or y0 >= y1:
        return mask
    xs = (np.arange(x0, x1, dtype=np.float32) + 0.5) / size - obj.cx
    ys = (np.arange(y0, y1, dtype=np.float32) + 0.5) / size - obj.cy
    mask[y0:y1, x0:x1] = shape_mask(obj.shape, xs[None, :], ys[:, None], r, obj.angle)
    return mask


def object_masks(objects: list[SceneObject], size: int, outline: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(full, visible) boolean masks (objects, size, size): drawn shape, and what later objects leave of it."""
    full = np.zeros((len(objects), size, size), dtype=bool)
    for index, obj in enumerate(objects):
        full[index] = _drawn(obj, size)
        if outline:
            full[index] &= ~_drawn(obj, size, 0.72)
    visible = full.copy()
    covered = np.zeros((size, size), dtype=bool)
    for index in range(len(objects) - 1, -1, -1):
        visible[index] &= ~covered
        covered |= full[index]
    return full, visible


def render(scene: Scene, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(image (size, size, 3) uint8, visible masks (objects, size, size) bool) of a scene."""
    rng = np.random.default_rng(scene.seed)
    style = scene.style
    image = _background(size, rng, style)
    yy, xx = _grid(size, 0.5)
    for _ in range(style.distractors):
        r = rng.uniform(0.03, 0.07)
        mask = shape_mask(SHAPES[rng.integers(len(SHAPES))], xx - rng.uniform(0, 1), yy - rng.uniform(0, 1), r)
        image[mask] = rng.uniform(60, 200)
    full, visible = object_masks(scene.objects, size, style.outline)
    for index, obj in enumerate(scene.objects):
        image[full[index]] = _hue_shift(COLOURS[obj.colour], style.palette_shift) + rng.normal(0, 10, size=3)
    image += rng.standard_normal(size=image.shape, dtype=np.float32) * np.float32(255 * style.noise)
    return np.clip(image, 0, 255, out=image).astype(np.uint8), visible


def box_of(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) pixel box (exclusive end) of a mask's visible pixels, None if fully occluded."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def random_object(rng: np.random.Generator, shape: str | None = None, colour: str | None = None,
                  size: str | None = None) -> SceneObject:
    """An object with the given attributes (random where None) at a random place that keeps it in view."""
    shape = shape or SHAPES[rng.integers(len(SHAPES))]
    colour = colour or list(COLOURS)[rng.integers(len(COLOURS))]
    size = size or list(SIZES)[rng.integers(len(SIZES))]
    radius = float(rng.uniform(*SIZES[size]))
    cx, cy = (float(v) for v in rng.uniform(radius, 1 - radius, size=2))
    return SceneObject(shape, colour, size, cx, cy, radius, float(rng.uniform(-0.3, 0.3)))


def random_scene(seed: int, n_objects: int | None = None, style: Style | None = None,
                 min_visible: float = 0.5) -> Scene:
    """1 to 4 objects with distinct (colour, shape); each keeps at least `min_visible` of itself in view."""
    rng = np.random.default_rng(seed)
    count = n_objects or int(rng.integers(1, 5))
    objects: list[SceneObject] = []
    taken = set()
    while len(objects) < count:
        candidate = random_object(rng)
        if (candidate.colour, candidate.shape) in taken:
            continue
        full, visible = object_masks([*objects, candidate], 32)
        if all(v.sum() >= min_visible * f.sum() for v, f in zip(visible, full)):
            objects.append(candidate)
            taken.add((candidate.colour, candidate.shape))
    return Scene(objects, seed, style or Style())



def shape_twin(scene: Scene, rng: np.random.Generator) -> Scene:
    """The same scene with every object's shape changed (colour, size, place kept): a hard negative."""
    objects, taken = [], set()
    for obj in scene.objects:
        choices = [s for s in SHAPES if s != obj.shape and (obj.colour, s) not in taken]
        shape = choices[rng.integers(len(choices))]
        taken.add((obj.colour, shape))
        objects.append(SceneObject(shape, obj.colour, obj.size, obj.cx, obj.cy, obj.radius, obj.angle))
    return Scene(objects, scene.seed, scene.style)
