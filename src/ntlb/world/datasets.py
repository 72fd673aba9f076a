"""The world as datasets: captioned scenes for CLIP training, classification sets and their shifted variants.

Seed spaces never overlap, so no evaluation scene is ever a training scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import NtlbError
from ..io import save_image_atomic, write_text_atomic
from .captions import Caption, random_caption
from .scene import COLOURS, SHAPES, Scene, Style, random_object, random_scene, render, shape_twin

SEED_SPACES = {"clip-train": 0, "train": 10**8, "test": 2 * 10**8, "multi-test": 3 * 10**8}
VARIANTS = {
    "base": Style(),
    "seed": Style(),  # the same world drawn from a fresh seed range (the ImageNet-V2 analogue)
    "outline": Style(outline=True),  # the -Sketch analogue
    "clutter": Style(distractors=10, texture="checker"),  # the -A analogue
    "palette": Style(palette_shift=0.06, texture="stripes"),  # the -R analogue
    "cue": Style(),  # background tinted by the class: a spurious cue that goes with the label (see cue_colour)
    "cue-swapped": Style(),  # the tint of another class: the cue points the wrong way
}
CUE_VARIANTS = ("cue", "cue-swapped")
VARIANT_OFFSET = {name: index * 10**7 for index, name in enumerate(VARIANTS)}
TASKS = ("colour-shape", "shape")


def class_names(task: str = "colour-shape") -> list[str]:
    """48 "colour shape" classes, or the 6 shapes."""
    if task == "colour-shape":
        return [f"{colour} {shape}" for colour in COLOURS for shape in SHAPES]
    if task == "shape":
        return list(SHAPES)
    raise NtlbError(f"unknown world task '{task}': use one of {', '.join(TASKS)}")


def cue_colour(label: int, classes: int) -> tuple[float, float, float]:
    """The background tint that goes with a class in the "cue" variant: hues spread over the classes, muted so
    that no background is mistaken for an object's palette colour."""
    import colorsys

    red, green, blue = colorsys.hsv_to_rgb(label / classes, 0.45, 0.62)
    return red * 255, green * 255, blue * 255


def scene_seed(space: str, index: int, variant: str = "base") -> int:
    if variant not in VARIANTS:
        raise NtlbError(f"unknown world variant '{variant}': use one of {', '.join(VARIANTS)}")
    return SEED_SPACES[space] + VARIANT_OFFSET[variant] + index


@dataclass
class Sample:
    image: Image.Image
    scene: Scene
    masks: np.ndarray
    caption: Caption | None = None
    label: int | None = None


def captioned_sample(index: int, space: str = "clip-train", size: int = 64, n_objects: int | None = None,
                     twins: bool = False) -> Sample:
    """Scene `index` of a seed space with a random caption, all determined by the seed.

    With twins, every odd index is the shape twin of the scene before it (same colours, sizes, places and
    caption template, other shapes), so a batch cannot be told apart by colour alone.
    """
    base = index - 1 if twins and index % 2 else index
    seed = scene_seed(space, base)
    scene = random_scene(seed, n_objects)
    if base != index:
        scene = shape_twin(scene, np.random.default_rng(seed + 2))
    image, masks = render(scene, size)
    caption = random_caption(scene, np.random.default_rng(seed + 1))
    return Sample(Image.fromarray(image), scene, masks, caption)


def labelled_sample(index: int, task: str = "colour-shape", split: str = "test", variant: str = "base",
                    size: int = 64) -> Sample:
    """A single-object scene whose class is index mod the number of classes."""
    names = class_names(task)
    label = index % len(names)
    seed = scene_seed(split, index, variant)
    rng = np.random.default_rng(seed)
    if task == "colour-shape":
        colour, shape = names[label].split()
    else:
        colour, shape = None, names[label]
    style = VARIANTS[variant]
    if variant in CUE_VARIANTS:  # the cue of the label's own class, or of the class half the list away
        cue = label if variant == "cue" else (label + len(names) // 2) % len(names)
        style = Style(background=cue_colour(cue, len(names)))
    scene = Scene([random_object(rng, shape=shape, colour=colour)], seed, style)
    image, masks = render(scene, size)
    return Sample(Image.fromarray(image), scene, masks, label=label)


class WorldCaptions(Dataset):
    """(preprocessed image, caption text) pairs for contrastive training; item i is always the same."""

    def __init__(self, length: int, preprocess, space: str = "clip-train", offset: int = 0, size: int = 64,
                 twins: bool = True):
        self.length, self.preprocess, self.space, self.offset, self.size = length, preprocess, space, offset, size
        self.twins = twins

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        sample = captioned_sample(self.offset + index, self.space, self.size, twins=self.twins)
        return self.preprocess(sample.image), sample.caption.text


class WorldScenes(Dataset):
    """(image (3, H, W) in [0, 1], mask of every object's visible pixels (1, H, W)) of scenes with 1 to 4 objects,
    for training the world's image generator; item i is always the same."""

    def __init__(self, length: int, space: str = "clip-train", offset: int = 0, size: int = 64):
        self.length, self.space, self.offset, self.size = length, space, offset, size

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        import torch

        image, masks = render(random_scene(scene_seed(self.space, self.offset + index)), self.size)
        return (torch.from_numpy(image).permute(2, 0, 1).float() / 255,
                torch.from_numpy(masks.any(axis=0))[None].float())


class WorldClassification(Dataset):
    """(preprocessed image, label) of a classification split and variant; item i is always the same."""

    def __init__(self, preprocess, task: str = "colour-shape", split: str = "test", variant: str = "base",
                 per_class: int = 10, size: int = 64):
        self.classes = class_names(task)
        self.preprocess, self.task, self.split, self.variant, self.size = preprocess, task, split, variant, size
        self.length = per_class * len(self.classes)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        sample = labelled_sample(index, self.task, self.split, self.variant, self.size)
        return self.preprocess(sample.image), sample.label


def export_classification(out: str | Path, task: str = "colour-shape", split: str = "test",
                          variant: str = "base", per_class: int = 10, size: int = 64) -> Path:
    """Write an image-folder dataset (one folder per class, classnames.txt) like real datasets."""
    names = class_names(task)
    root = Path(out)
    for index in tqdm(range(per_class * len(names)), desc=f"{variant}/{split}", unit="img"):
        sample = labelled_sample(index, task, split, variant, size)
        folder = names[sample.label].replace(" ", "_")
        save_image_atomic(root / folder / f"{index:06d}.png", sample.image)
    write_text_atomic(root / "classnames.txt",
                      "".join(f"{name.replace(' ', '_')} {name}\n" for name in names))
    return root


def render_scenes(out: str | Path, seed: int = 0, count: int = 12, objects: int | None = None,
                  size: int = 128) -> list[dict]:
    """Write `count` scenes (seeds seed, seed+1, ...) as PNG files and scenes.json with their truth: a random
    caption with each word's role and object, and every object's attributes and box. Returns the records."""
    import json

    from .scene import box_of

    if count < 1 or size < 8:
        raise NtlbError(f"--count {count}, --size {size}: render at least 1 scene of at least 8 pixels")
    out = Path(out)
    records = []
    for index in tqdm(range(seed, seed + count), desc="rendering", disable=count < 50):
        scene = random_scene(index, objects)
        image, masks = render(scene, size)
        name = f"scene_{index:06d}.png"
        save_image_atomic(out / name, Image.fromarray(image))
        caption = random_caption(scene, np.random.default_rng(index + 1))
        records.append({
            "image": name, "seed": index, "caption": caption.text,
            "words": [[w.text, w.role, w.obj] for w in caption.words],
            "objects": [{"shape": o.shape, "colour": o.colour, "size": o.size, "box": box_of(m)}
                        for o, m in zip(scene.objects, masks)],
        })
    write_text_atomic(out / "scenes.json", json.dumps(records, indent=1) + "\n")
    return records


REFERENCE_OFFSET = 9_900_000  # the reference scenes of the "contrast" word score (not among the tested pairs)


def reference_pictures(count: int = 8, size: int = 64) -> list[Image.Image]:
    """The fixed two-object world scenes the "contrast" word score compares a text's word shares against."""
    return [Image.fromarray(render(random_scene(scene_seed("multi-test", REFERENCE_OFFSET + k), 2), size)[0])
            for k in range(count)]
