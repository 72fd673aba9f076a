"""Explanations of image-image similarity (retrieval, near duplicates): maps on both images of each pair.

The similarity of images a and b is the cosine of their CLIP features. Its relevance on a's patches is what any
explainer gives for image a against a "text" whose features are b's (and the other way round): the score's
derivative with respect to a's attention does not depend on how b's feature was computed. So every registered
explainer explains pairs of images, gradient-attention ones (chefer2021, the default) and the model-agnostic
`occlusion` baseline alike.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ..errors import NtlbError
from ..models.adapter import ClipAdapter
from ..models.inputs import ImageInput, TextFeatures, prepare_images
from ..models.loading import wrap
from .explanation import Explanation
from .registry import create
from .targets import AllPairs, Diagonal, Targets, as_targets


@dataclass
class PairExplanation:
    """Maps on both sides of image pairs; each side is an Explanation of its images against the other side's
    features, (B, K, h, w) as every Explanation. All pairs: `first.image[i, j]` is the map on first image i for its
    similarity with second image j, `second.image[j, i]` the map on second image j for the same pair; Diagonal:
    `first.image[i, 0]` and `second.image[i, 0]` for pair i. `maps(i, j)` gives both; `similarity` the scores
    explained."""

    first: Explanation
    second: Explanation

    @property
    def targets(self) -> Targets:
        return self.first.targets

    @property
    def similarity(self) -> Tensor:
        """(B1, B2) for all pairs; (B, 1) for diagonal ones: the cosine (or scaled cosine) of each pair explained."""
        return self.first.logits.gather(1, self.first.columns.to(self.first.logits.device))

    def maps(self, i: int, j: int | None = None) -> tuple[Tensor, Tensor]:
        """(map on the first image, map on the second image) of pair (i, j), or of pair i when diagonal."""
        if j is None:
            return self.first.image[self.first.key(i)], self.second.image[self.second.key(i)]
        return self.first.image[i, j], self.second.image[j, i]


def explain_pair(model, first: ImageInput, second: ImageInput, *, method: str = "chefer2021",
                 pairs: str | AllPairs | Diagonal = "all", logit_mode: str = "cosine", **options) -> PairExplanation:
    """Explain the CLIP similarity of every first image with every second image (pairs="all") or of first i with
    second i (pairs="diagonal"): a map on each image of each pair. Any explainer with image maps; options go to it
    (e.g. start_layer_image, window for occlusion)."""
    targets = None if isinstance(pairs, str) and pairs not in ("all", "diagonal") else as_targets(pairs)
    if not isinstance(targets, (AllPairs, Diagonal)):
        raise NtlbError(f"unknown pairs {pairs!r} for image pairs: use 'all' or 'diagonal'")
    pairs = targets
    adapter: ClipAdapter = wrap(model)
    explainer = create(method, logit_mode=logit_mode, **options)
    explainer.check(adapter)
    first_pixels, first_originals = prepare_images(adapter, first)
    second_pixels, second_originals = prepare_images(adapter, second)
    if isinstance(pairs, Diagonal) and len(first_pixels) != len(second_pixels):
        raise NtlbError(f"pairs='diagonal' needs as many second images as first ones, got {len(first_pixels)} and "
                        f"{len(second_pixels)}")
    with torch.no_grad():
        first_features = adapter.encode_image(first_pixels).features
        second_features = adapter.encode_image(second_pixels).features
    on_first = explainer(adapter, first_pixels, TextFeatures(second_features), pairs=pairs)
    on_second = explainer(adapter, second_pixels, TextFeatures(first_features), pairs=pairs)
    if on_first.image is None:
        raise NtlbError(f"{method} gives no image maps for this model: {on_first.image_note}")
    return PairExplanation(replace(on_first, originals=first_originals),
                           replace(on_second, originals=second_originals))
