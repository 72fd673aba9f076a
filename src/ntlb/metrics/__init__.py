"""Measures of explanations and models: localisation against masks, retrieval, classification."""

from .localization import mask_energy, otsu_iou, pointing_game, segmentation_miou
from .retrieval import recall_at_1

__all__ = ["mask_energy", "otsu_iou", "pointing_game", "recall_at_1", "segmentation_miou"]
