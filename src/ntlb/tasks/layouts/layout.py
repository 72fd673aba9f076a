"""Layouts for layout-conditioned generation: boxes in pixels with one text each (JSON), COCO's boxes with the
paper's 50% filter, and random layouts of the procedural world."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...errors import NtlbError
from ...io import write_json_atomic
from ...metrics.detection import Box


@dataclass
class Layout:
    """An image size and boxes, each with the text that should appear in it."""

    width: int
    height: int
    boxes: list[Box]
    texts: list[str]

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise NtlbError(f"layout size {self.width}x{self.height}: give a positive width and height")
        if not self.boxes:
            raise NtlbError("layout has no boxes: give at least one box with its text")
        if len(self.boxes) != len(self.texts):
            raise NtlbError(f"layout has {len(self.boxes)} boxes but {len(self.texts)} texts: give one text per box")
        for box, text in zip(self.boxes, self.texts):
            x0, y0, x1, y1 = box
            if not (0 <= x0 < x1 <= self.width and 0 <= y0 < y1 <= self.height):
                raise NtlbError(f"box {list(box)} for '{text}' is outside the {self.width}x{self.height} image or "
                                "empty: use x0 < x1 <= width and y0 < y1 <= height, in pixels")

    def masks(self, size: tuple[int, int] | None = None) -> Tensor:
        """(k, H, W) float masks of the boxes, at the layout's size or scaled to `size` (H, W)."""
        height, width = size or (self.height, self.width)
        sy, sx = height / self.height, width / self.width
        masks = torch.zeros(len(self.boxes), height, width)
        for index, (x0, y0, x1, y1) in enumerate(self.boxes):
            masks[index, round(y0 * sy) : max(round(y1 * sy), round(y0 * sy) + 1),
                  round(x0 * sx) : max(round(x1 * sx), round(x0 * sx) + 1)] = 1.0
        return masks

    def labels(self) -> list[str]:
        """The texts without the prompt's lead-in ("a photo of a red star" -> "red star"): what a detector names."""
        return [re.sub(r"^(a photo of )?(an? |the )?", "", text.strip().rstrip(".")) for text in self.texts]

    def area_ratios(self) -> list[float]:
        return [(x1 - x0) * (y1 - y0) / (self.width * self.height) for x0, y0, x1, y1 in self.boxes]


def read_layout(path: str | Path) -> Layout:
    """A layout JSON: {"width": W, "height": H, "objects": [{"box": [x0, y0, x1, y1], "text": "..."}, ...]}."""
    path = Path(path)
    if not path.is_file():
        raise NtlbError(f"layout file not found: {path}: check the path")
    try:
        data = json.loads(path.read_text())
        objects = data["objects"]
        return Layout(int(data["width"]), int(data["height"]), [tuple(float(v) for v in o["box"]) for o in objects],
                      [str(o.get("text") or o["label"]) for o in objects])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        problem = (f"not JSON (line {err.lineno}: {err.msg})" if isinstance(err, json.JSONDecodeError) else
                   f"'{'text' if err.args[0] == 'label' else err.args[0]}' is missing" if isinstance(err, KeyError)
                   else "a value of the wrong kind")
        raise NtlbError(f"cannot read layout {path}: {problem}: expected "
                        '{"width", "height", "objects": [{"box": [x0, y0, x1, y1], "text"}]}') from None


def write_layout(layout: Layout, path: str | Path) -> Path:
    data = asdict(layout)
    objects = [{"box": list(b), "text": t} for b, t in zip(data["boxes"], data["texts"])]
    return write_json_atomic(path, {"width": layout.width, "height": layout.height, "objects": objects})


def largest_boxes_under(areas: list[float], image_area: float, share: float = 0.5) -> list[int]:
    """Indices of the k largest boxes, k as large as possible with their summed area < share of the image."""
    order = sorted(range(len(areas)), key=lambda i: -areas[i])
    kept, total = [], 0.0
    for index in order:
        if total + areas[index] >= share * image_area:
            break
        kept.append(index)
        total += areas[index]
    return kept


def coco_layout(annotations: str | Path, image_id: int, share: float = 0.5,
                template: str = "a photo of a {}") -> Layout:
    """The layout of a COCO image with the paper's filter: the k largest (non-crowd) boxes whose summed area
    stays under `share` of the image, each with "a photo of a {category}"."""
    path = Path(annotations)
    if not path.is_file():
        raise NtlbError(f"COCO annotations not found: {path}: give instances_*.json")
    data = json.loads(path.read_text())
    images = {image["id"]: image for image in data["images"]}
    if image_id not in images:
        raise NtlbError(f"image id {image_id} is not in {path.name}: pick one of its {len(images)} images")
    names = {c["id"]: c["name"] for c in data["categories"]}
    image = images[image_id]
    boxes = [a for a in data["annotations"] if a["image_id"] == image_id and not a.get("iscrowd", 0)]
    areas = [a["bbox"][2] * a["bbox"][3] for a in boxes]
    kept = largest_boxes_under(areas, image["width"] * image["height"], share)
    if not kept:
        raise NtlbError(f"COCO image {image_id} has no box under {share:.0%} of the image: pick another image")
    chosen = [boxes[i] for i in kept]
    return Layout(image["width"], image["height"],
                  [(a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3])
                   for a in chosen],
                  [template.format(names[a["category_id"]]) for a in chosen])


def random_world_layout(seed: int, size: int = 64, objects: int | None = None) -> Layout:
    """1 to 3 non-overlapping boxes with world labels ("a photo of a red circle"), determined by the seed."""
    from ...world.datasets import class_names

    rng = np.random.default_rng(seed)
    count = objects or int(rng.integers(1, 4))
    names = class_names()
    boxes: list[Box] = []
    while len(boxes) < count:
        side = float(rng.uniform(0.3, 0.5) * size)
        x0, y0 = (float(v) for v in rng.uniform(0, size - side, size=2))
        box = (round(x0), round(y0), round(x0 + side), round(y0 + side))
        if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1] for b in boxes):
            boxes.append(box)
    picked = rng.choice(len(names), size=count, replace=False)
    return Layout(size, size, boxes, [f"a photo of a {names[i]}" for i in picked])
