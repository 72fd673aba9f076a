"""An exact detector for the world, built from its own rendering rules: it finds regions painted in one of the
palette's colours and names their shape by the template (same shape masks, radii and angles as the renderer)
that covers them best.

It plays the role of the object detector of the paper's Table 3: a generated image "contains a red star in its
box" when this detector finds one there.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from .scene import COLOURS, SHAPES, shape_mask

ANGLES = np.linspace(-0.3, 0.3, 7)  # the renderer's range of rotations


@dataclass(frozen=True)
class Detection:
    """A box (x0, y0, x1, y1) in pixels (exclusive end), its label ("red star") and a confidence in [0, 1]."""

    box: tuple[float, float, float, float]
    label: str
    score: float


@cache
def _template(shape: str, angle: float, resolution: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A shape of radius 1 rasterised finely: (mask, its box (x0, y0, x1, y1) in radius units)."""
    axis = (np.arange(resolution) + 0.5) / resolution * 2.4 - 1.2
    mask = shape_mask(shape, axis[None, :], axis[:, None], 1.0, angle)
    ys, xs = np.nonzero(mask)
    step = 2.4 / resolution
    return mask, np.array([axis[xs.min()] - step / 2, axis[ys.min()] - step / 2,
                           axis[xs.max()] + step / 2, axis[ys.max()] + step / 2])


def _placements(component: np.ndarray, shape: str, angles, size: int = 1):
    """(IoU, cx, cy, radius, angle) of the shape's template at each of `angles`, scaled and placed to fill the box of
    the boolean mask `component`; centre and radius in units of `size` pixels (1: pixels of the array)."""
    height, width = component.shape
    ys, xs = np.nonzero(component)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    across = (np.arange(width, dtype=np.float32) + 0.5) / size
    down = (np.arange(height, dtype=np.float32) + 0.5) / size
    for angle in angles:
        _, (tx0, ty0, tx1, ty1) = _template(shape, float(angle))
        radius = max((x1 - x0) / (tx1 - tx0), (y1 - y0) / (ty1 - ty0)) / size
        cx = x0 / size - tx0 * radius + ((x1 - x0) / size - (tx1 - tx0) * radius) / 2  # template box on the box
        cy = y0 / size - ty0 * radius + ((y1 - y0) / size - (ty1 - ty0) * radius) / 2
        drawn = shape_mask(shape, across[None, :] - cx, down[:, None] - cy, radius, float(angle))
        iou = float((drawn & component).sum() / max((drawn | component).sum(), 1))
        yield iou, float(cx), float(cy), float(radius), float(angle)


def _fit(component: np.ndarray, shape: str) -> float:
    """Best IoU of `component` (its own box crop) with the shape's template scaled and placed to fill that box."""
    return max(iou for iou, *_ in _placements(component, shape, ANGLES))


def fit_object(component: np.ndarray, shape: str, angles: int = 25) -> tuple[float, float, float, float]:
    """(cx, cy, radius, angle), centre and radius as shares of the side, of the shape whose rendering covers the
    boolean mask `component` (the whole square picture) best: the template fitted to the component's box at each of
    `angles` rotations over the renderer's range, the best IoU kept -- the inverse of the renderer for one object."""
    placements = _placements(component, shape, np.linspace(ANGLES[0], ANGLES[-1], angles), component.shape[0])
    return max(placements, key=lambda placement: placement[0])[1:]


class WorldDetector:
    """Finds objects drawn with the world's palette; `detector(image)` for an image (3, H, W) in [0, 1]."""

    def __init__(self, tolerance: float = 60.0, mean_tolerance: float = 40.0, min_area: int = 12,
                 min_score: float = 0.5):
        self.tolerance = tolerance
        self.mean_tolerance = mean_tolerance
        self.min_area = min_area
        self.min_score = min_score
        self.palette = np.array(list(COLOURS.values()), dtype=np.float32)

    def __call__(self, image: torch.Tensor | np.ndarray) -> list[Detection]:
        from scipy import ndimage

        if isinstance(image, torch.Tensor):
            image = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255
        image = np.asarray(image, dtype=np.float32)
        distance = np.linalg.norm(image[:, :, None, :] - self.palette, axis=-1)  # (H, W, colours)
        nearest = distance.argmin(axis=-1)
        painted = distance.min(axis=-1) <= self.tolerance
        detections = []
        for index, colour in enumerate(COLOURS):
            regions, count = ndimage.label(painted & (nearest == index))
            for region, where in enumerate(ndimage.find_objects(regions), start=1):
                component = ndimage.binary_fill_holes(regions[where] == region)  # holes: pixel noise
                mean = image[where][component].mean(axis=0)
                if component.sum() < self.min_area or np.linalg.norm(mean - self.palette[index]) > self.mean_tolerance:
                    continue
                fits = {shape: _fit(component, shape) for shape in SHAPES}
                shape = max(fits, key=fits.get)
                if fits[shape] >= self.min_score:
                    box = (where[1].start, where[0].start, where[1].stop, where[0].stop)
                    detections.append(Detection(box, f"{colour} {shape}", fits[shape]))
        return sorted(detections, key=lambda d: -d.score)


def looks_like_world_scene(picture, size: int = 64, min_fit: float = 0.5, min_area: float = 0.008,
                           min_contrast: float = 90.0) -> bool:
    """Whether a picture (PIL) looks like a scene of the procedural world, so a note can say when the bundled world
    model is asked about a picture from outside its world. The world draws solid palette shapes on a background:
    at its models' input size, the exact detector finds a shape (template IoU >= min_fit,
    at least `min_area` of the picture, small and half-hidden ones included) with a sharp edge: two pixels out,
    the median colour is at least `min_contrast` away from the shape's palette colour (world scenes: over 110;
    the smooth gradients of photos that happen to pass the palette tolerance: under 70)."""
    from PIL import Image
    from scipy import ndimage

    small = np.asarray(picture.convert("RGB").resize((size, size), Image.BOX), dtype=np.float32)
    palette = dict(zip(COLOURS, WorldDetector().palette))
    for found in WorldDetector(min_score=min_fit)(small):
        distance = np.linalg.norm(small - palette[found.label.split()[0]], axis=-1)
        x0, y0, x1, y1 = found.box
        shape = np.zeros(distance.shape, dtype=bool)
        shape[y0:y1, x0:x1] = distance[y0:y1, x0:x1] <= WorldDetector().tolerance
        near = ndimage.binary_dilation(shape)
        ring = ndimage.binary_dilation(near, iterations=2) & ~near
        if shape.mean() >= min_area and ring.any() and float(np.median(distance[ring])) >= min_contrast:
            return True
    return False


LARGE_SHARE = 21 / 64  # a large object's box spans at least this share of the side (large: 24-32 px of 64)


def found_objects(image: torch.Tensor | np.ndarray, text: str) -> dict:
    """What the exact world detector finds in an image (3, H, W) in [0, 1] against the objects a text asks for:
    {"objects": [{"object", "found"}], "detected": [labels]}; an asked object is found when a detection has its
    label (colour and shape; the shape alone where the text names no colour), and a box spanning at least a third
    of the side where the text asks for a large one (less where it asks for a small one)."""
    from .captions import asked_objects

    detections = WorldDetector()(image)
    side = image.shape[-1] if isinstance(image, torch.Tensor) else np.asarray(image).shape[1]
    rows = []
    for asked in asked_objects(text):
        hits = [d for d in detections if d.label == asked.label or (asked.colour is None and
                                                                     d.label.split()[1] == asked.shape)]
        if asked.size:
            large = [max(d.box[2] - d.box[0], d.box[3] - d.box[1]) >= LARGE_SHARE * side for d in hits]
            hits = [d for d, big in zip(hits, large) if big == (asked.size == "large")]
        rows.append({"object": (f"{asked.size} " if asked.size else "") + asked.label, "found": bool(hits)})
    return {"objects": rows, "detected": [d.label for d in detections]}


def found_line(report: dict) -> str:
    """One line of a `found_objects` report: "world detector: red circle found, green square MISSING"."""
    parts = [f"{row['object']} {'found' if row['found'] else 'MISSING'}" for row in report["objects"]]
    return "world detector: " + (", ".join(parts) if parts else "no world object asked") + \
        f" (detected: {', '.join(report['detected']) or 'nothing'})"
