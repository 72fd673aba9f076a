"""Losses built from explanations: the No-Token-Left-Behind explainability losses. Each takes an explainer's
differentiable `Explanation` (chefer2021 by default, any registered explainer with the maps it needs)."""

from .class_name import (
    REDUCTIONS,
    SCORES,
    class_name_loss,
    explainability_loss,
    explainability_scores,
    explainability_weights,
)
from .layout import DICE_VARIANTS, box_weights, dice, layout_loss, soft_relevance_mask

__all__ = [
    "DICE_VARIANTS", "REDUCTIONS", "SCORES", "box_weights", "class_name_loss", "dice", "explainability_loss",
    "explainability_scores", "explainability_weights", "layout_loss", "soft_relevance_mask",
]
