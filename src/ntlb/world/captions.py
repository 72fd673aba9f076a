"""Captions whose every word knows its role and the object it refers to, so word relevance has a right answer."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import NtlbError
from .scene import COLOURS, SHAPES, SIZES, Scene, SceneObject

CONTENT_ROLES = ("colour", "shape", "size")


@dataclass(frozen=True)
class CaptionWord:
    """A word of a caption: its text, role (colour, shape, size, relation or filler) and object index."""

    text: str
    role: str
    obj: int | None = None


@dataclass(frozen=True)
class Caption:
    words: tuple[CaptionWord, ...]
    template: str

    @property
    def text(self) -> str:
        return " ".join(word.text for word in self.words)

    def objects(self) -> list[int]:
        """Indices of the objects the caption names, in order of mention."""
        seen: list[int] = []
        for word in self.words:
            if word.obj is not None and word.obj not in seen:
                seen.append(word.obj)
        return seen


def _filler(text: str) -> list[CaptionWord]:
    return [CaptionWord(part, "filler") for part in text.split()]


def _phrase(obj: SceneObject, index: int, with_size: bool) -> list[CaptionWord]:
    article = CaptionWord("a", "filler")
    size = [CaptionWord(obj.size, "size", index)] if with_size else []
    return [article, *size, CaptionWord(obj.colour, "colour", index), CaptionWord(obj.shape, "shape", index)]


def describe(scene: Scene, index: int, template: str = "plain") -> Caption:
    """A one-object caption: "plain" (a red circle), "photo" (a photo of a small red circle), "picture"."""
    obj = scene.objects[index]
    if template == "plain":
        words = _phrase(obj, index, False)
    elif template == "photo":
        words = _filler("a photo of") + _phrase(obj, index, True)
    elif template == "picture":
        words = _filler("a picture of") + _phrase(obj, index, False)
    else:
        raise ValueError(f"unknown one-object template {template!r}")
    return Caption(tuple(words), template)


def relate(scene: Scene, first: int, second: int, template: str = "and") -> Caption:
    """A two-object caption: "and", or a spatial relation that is true in the scene ("left", "above")."""
    a, b = scene.objects[first], scene.objects[second]
    if template == "and":
        middle = [CaptionWord("and", "filler")]
    elif template == "left":
        middle = [CaptionWord("left" if a.cx < b.cx else "right", "relation"), CaptionWord("of", "filler")]
    elif template == "above":
        middle = [CaptionWord("above" if a.cy < b.cy else "below", "relation")]
    else:
        raise ValueError(f"unknown two-object template {template!r}")
    return Caption(tuple(_phrase(a, first, False) + middle + _phrase(b, second, False)), template)


def random_caption(scene: Scene, rng: np.random.Generator) -> Caption:
    """A caption of the scene in a random template: one object, or two of them when there are several."""
    count = len(scene.objects)
    if count == 1 or rng.random() < 0.4:
        return describe(scene, int(rng.integers(count)), ("plain", "photo", "picture")[rng.integers(3)])
    first, second = (int(v) for v in rng.choice(count, size=2, replace=False))
    return relate(scene, first, second, ("and", "left", "above")[rng.integers(3)])


# colour and shape words a user may write that the world does not draw (a text with one cannot be rendered)
OTHER_COLOURS = ("black", "white", "grey", "gray", "brown", "magenta", "violet", "teal", "gold", "golden", "silver",
                 "beige", "maroon", "navy", "lime", "turquoise", "indigo", "crimson", "olive", "tan")
OTHER_SHAPES = ("hexagon", "pentagon", "octagon", "heart", "rectangle", "oval", "ellipse", "moon", "crescent",
                "arrow", "ring", "trapezoid", "spiral", "rhombus", "polygon", "sphere", "cube")


@dataclass(frozen=True)
class AskedObject:
    """An object a text asks for ("a large red star"): its shape, and its colour and size where the text names them."""

    shape: str
    colour: str | None = None
    size: str | None = None

    @property
    def label(self) -> str:
        """What the world detector names it ("red star", or "star" without a colour)."""
        return f"{self.colour} {self.shape}" if self.colour else self.shape


def asked_objects(text: str) -> list[AskedObject]:
    """The world objects a text names, in order: each shape word with the colour and size words just before it
    ("a red circle and a large blue star" -> red circle, large blue star); plurals count once."""
    objects, colour, size = [], None, None
    for word in re.findall(r"[a-z]+", text.lower()):
        singular = word[:-1] if word.endswith("s") and word[:-1] in SHAPES else word
        if singular in SHAPES:
            objects.append(AskedObject(singular, colour, size))
            colour = size = None
        elif word in COLOURS:
            colour = word
        elif word in SIZES:
            size = word
    return objects


def check_world_text(text: str) -> list[AskedObject]:
    """The objects of a text the world can draw; a one-line error naming a colour or shape it has not."""
    for word in re.findall(r"[a-z]+", text.lower()):
        singular = word.removesuffix("s")
        if word in OTHER_COLOURS:
            raise NtlbError(f"the world has no colour '{word}' (its colours: {', '.join(COLOURS)}): use one of those, "
                            "or another generator with a CLIP of your own")
        if word in OTHER_SHAPES or singular in OTHER_SHAPES:
            raise NtlbError(f"the world has no shape '{word}' (its shapes: {', '.join(SHAPES)}): use one of those, "
                            "or another generator with a CLIP of your own")
    return asked_objects(text)
