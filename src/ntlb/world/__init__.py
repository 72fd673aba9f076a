"""A procedural world with known truth: scenes, masks, captions with word roles, datasets, training."""

from .captions import CONTENT_ROLES, Caption, CaptionWord, describe, random_caption, relate
from .datasets import (
                       VARIANTS,
                       WorldCaptions,
                       WorldClassification,
                       WorldScenes,
                       captioned_sample,
                       class_names,
                       export_classification,
                       labelled_sample,
)
from .scene import COLOURS, SHAPES, SIZES, Scene, SceneObject, Style, box_of, random_scene, render

__all__ = [
    "COLOURS", "CONTENT_ROLES", "Caption", "CaptionWord", "SHAPES", "SIZES", "Scene", "SceneObject", "Style",
    "VARIANTS", "WorldCaptions", "WorldClassification", "WorldScenes", "box_of", "captioned_sample", "class_names",
    "describe", "export_classification", "labelled_sample", "random_caption", "random_scene", "relate", "render",
]
