"""Tasks built on CLIP and its explanations: zero-shot classification (more to come)."""

from .zero_shot import classify, encode_images, text_classifier

__all__ = ["classify", "encode_images", "text_classifier"]
