"""Captions whose every word knows its role and the object it refers to, so word relevance has a right answer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene import Scene, SceneObject

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
