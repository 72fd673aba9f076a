"""Measures of explanations and models: localisation against masks, retrieval, classification."""

from .localization import mask_energy, pointing_game
from .retrieval import recall_at_1

__all__ = ["mask_energy", "pointing_game", "recall_at_1"]
