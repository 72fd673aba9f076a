"""Object detectors for the layout evaluation, by name: `create_detector(name, **options)` gives a callable
`detector(image (3, H, W) in [0, 1]) -> list[Detection]` (box in pixels, label, score).

"world": the world's exact colour-and-shape detector. "torchvision": any torchvision detection model with the
user's weights file (labels are the COCO category names of torchvision's metadata). More plug in with
`DETECTORS.register("name")`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from .errors import NtlbError
from .registry import Registry
from .training import read_checkpoint
from .world.detector import Detection, WorldDetector

DETECTORS = Registry("detector")


def create_detector(name: str, **options) -> Callable[[torch.Tensor], list[Detection]]:
    """A detector by name ("world", "torchvision" with model= and weights=, or one registered by a user)."""
    return DETECTORS.create(name, **options)


DETECTORS.register("world")(WorldDetector)


@DETECTORS.register("torchvision")
class TorchvisionDetector:
    """A torchvision detection model (e.g. "fasterrcnn_resnet50_fpn") with weights from a local file."""

    def __init__(self, model: str = "fasterrcnn_resnet50_fpn", weights: str | Path | None = None,
                 min_score: float = 0.05, device: str = "cpu"):
        from torchvision.models import get_model, get_model_weights

        if weights is None or not Path(weights).is_file():
            raise NtlbError(f"detector weights not found: {weights}: give --detector-weights, a state dict of "
                            f"torchvision's {model} (no weights can be downloaded here)")
        try:
            self.categories = get_model_weights(model).DEFAULT.meta["categories"]
        except (ValueError, KeyError, AttributeError):
            raise NtlbError(f"unknown torchvision detection model '{model}': see torchvision.models.list_models("
                            "module=torchvision.models.detection)") from None
        self.model = get_model(model, weights=None, weights_backbone=None, num_classes=len(self.categories))
        state = read_checkpoint(weights, what="detector weights", fix=f"give a state dict of torchvision's {model}")
        try:
            self.model.load_state_dict(state)
        except RuntimeError as err:
            raise NtlbError(f"{weights} does not fit {model}: {str(err).splitlines()[1].strip()}") from None
        self.model.eval().to(device)
        self.min_score = min_score
        self.device = device

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> list[Detection]:
        found = self.model([image.detach().float().to(self.device)])[0]
        return [Detection(tuple(float(v) for v in box), self.categories[int(label)], float(score))
                for box, label, score in zip(found["boxes"].cpu(), found["labels"].cpu(), found["scores"].cpu())
                if float(score) >= self.min_score]
