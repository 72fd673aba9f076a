"""Tasks built on CLIP and its explanations (runners): zero-shot classification, explanation of image files,
prompt learning, layout generation, the explainer benchmark."""

from .zero_shot import classify

__all__ = ["classify"]
