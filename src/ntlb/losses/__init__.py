"""Losses built from explanations: the No-Token-Left-Behind explainability losses."""

from .class_name import SCORES, class_relevance_rows, explainability_loss, explainability_scores

__all__ = ["SCORES", "class_relevance_rows", "explainability_loss", "explainability_scores"]
