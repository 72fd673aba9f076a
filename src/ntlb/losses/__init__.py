"""Losses built from explanations: the No-Token-Left-Behind explainability losses."""

from .class_name import SCORES, class_relevance_rows, explainability_loss, explainability_scores
from .layout import DICE_VARIANTS, box_weights, dice, soft_relevance_mask

__all__ = [
    "DICE_VARIANTS", "SCORES", "box_weights", "class_relevance_rows", "dice", "explainability_loss",
    "explainability_scores", "soft_relevance_mask",
]
