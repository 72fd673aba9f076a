"""Zero-shot classification: class prompts -> text features -> nearest class for each image."""

from __future__ import annotations

from torch import Tensor


def classify(image_features: Tensor, classifier: Tensor) -> Tensor:
    """Predicted class index of each image: the class feature (C, D) nearest to its feature (N, D)."""
    return (image_features @ classifier.to(image_features).T).argmax(dim=1)
