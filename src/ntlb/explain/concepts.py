"""Textual concepts: a zero-shot prediction explained by a few concepts from a bank, each with its share of the
score and its own image map.

The text encoder says what a class is made of: the class's text feature t is written as a sparse non-negative
combination of the concept features c_k (non-negative orthogonal matching pursuit, at most `k` concepts; the bank
is the world's attribute words, or a user's list for photos). The image encoder says how much the image shows
each: the score s * cos(f, t) splits exactly into s * w_k cos(f, c_k) per concept plus the part of t no concept
covers (the residual). A concept's map is the chosen explainer's map of the image for that concept's text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import nnls
from torch import Tensor

from ..errors import NtlbError
from ..models.features import accumulation_dtype, text_features
from ..models.inputs import ImageInput, prepare_images
from ..models.loading import wrap
from .explanation import Explanation
from .registry import create
from .relevance import clip_scores

CLASS_TEMPLATE = "a photo of a {}."  # CLIP's prompt of a class name (and of a concept)
CONCEPTS_K = 5  # the concepts that explain an image's class, at most


def concept_weights(targets: Tensor, concepts: Tensor, k: int) -> Tensor:
    """(C, K) non-negative weights, at most k non-zero per row, with targets[c] ~ sum_k w[c, k] concepts[k]: greedy
    pick of the concept most correlated with what is left, then non-negative least squares on the picked ones."""
    basis = concepts.detach().double().cpu().numpy().T  # (D, K)
    weights = np.zeros((len(targets), basis.shape[1]))
    for row, target in enumerate(targets.detach().double().cpu().numpy()):
        support: list[int] = []
        left = target.copy()
        for _ in range(min(k, basis.shape[1])):
            correlation = basis.T @ left
            correlation[support] = -np.inf
            best = int(np.argmax(correlation))
            if correlation[best] <= 0:
                break
            support.append(best)
            solution, _ = nnls(basis[:, support], target)
            weights[row] = 0
            weights[row, support] = solution
            left = target - basis @ weights[row]
    return torch.from_numpy(weights)


@dataclass
class ConceptExplanation:
    """Per image: the class explained, its top concepts (indices into `concepts`, best first) with their
    contributions to the score, the residual, and each concept's map (`maps.image[b, j]` for concept j of image b).
    contributions.sum(-1) + residual equals the score of the class explained."""

    classes: list[str]
    concepts: list[str]
    explained: Tensor  # (B,) class index
    scores: Tensor  # (B, C)
    weights: Tensor  # (C, K)
    concept_index: Tensor  # (B, k)
    contributions: Tensor  # (B, k)
    residual: Tensor  # (B,)
    maps: Explanation | None

    def top(self, b: int) -> list[tuple[str, float]]:
        """(concept, contribution) of image b, best first, without the concepts the class does not use."""
        return [(self.concepts[int(i)], float(c)) for i, c in zip(self.concept_index[b], self.contributions[b])
                if float(self.weights[self.explained[b], i]) > 0]


def explain_with_concepts(model, images: ImageInput, classes: Sequence[str], concepts: Sequence[str], *,
                          template: str = CLASS_TEMPLATE, k: int = CONCEPTS_K, method: str | None = "chefer2021",
                          explained: Tensor | None = None, logit_mode: str = "scaled",
                          **options) -> ConceptExplanation:
    """Explain each image's zero-shot prediction among `classes` (or the class index in `explained`) by at most `k`
    concepts from `concepts`, all written into `template`; concept maps from `method` (None: no maps)."""
    if not classes:
        raise NtlbError("empty class list: give at least one class name")
    if not concepts:
        raise NtlbError("empty concept list: give at least one concept, one per line")
    repeated = next((c for i, c in enumerate(concepts) if c in concepts[:i]), None)
    if repeated is not None:
        raise NtlbError(f"concept '{repeated}' is listed twice: keep one line per concept")
    if k < 1:
        raise NtlbError(f"k={k}: explain with at least 1 concept")
    adapter = wrap(model)
    pixels, originals = prepare_images(adapter, images)
    with torch.no_grad():
        image = adapter.encode_image(pixels).features
        class_features = text_features(adapter, list(classes), (template,))
        concept_features = text_features(adapter, list(concepts), (template,))
    dtype = accumulation_dtype(image.dtype)
    image, class_features, concept_features = (x.to(dtype) for x in (image, class_features, concept_features))
    scale = adapter.logit_scale.detach().to(dtype)
    scores = clip_scores(image, class_features, scale, logit_mode)  # (B, C)
    explained = scores.argmax(dim=1) if explained is None else explained.to(scores.device)
    weights = concept_weights(class_features, concept_features, k).to(dtype=dtype, device=scores.device)
    per_concept = clip_scores(image, concept_features, scale, logit_mode) * weights[explained]  # (B, K)
    used = weights[explained] > 0  # concepts the class is made of come first, best contribution first
    index = torch.where(used, per_concept, torch.full_like(per_concept, -torch.inf)).topk(min(k, len(concepts)),
                                                                                         dim=1).indices
    contributions = per_concept.gather(1, index)
    rebuilt = weights[explained] @ concept_features  # (B, D): the part of each class feature the concepts cover
    normed = F.normalize(image, dim=-1)
    residual = (normed * (class_features[explained] - rebuilt)).sum(-1) * (scale if logit_mode == "scaled" else 1)
    maps = None
    if method is not None:
        prompts = [template.format(c) for c in concepts]
        with torch.no_grad():
            maps = create(method, logit_mode=logit_mode, **options)(adapter, pixels, prompts, pairs=index.cpu())
        maps = replace(maps, originals=originals)
    return ConceptExplanation(list(classes), list(concepts), explained, scores, weights, index, contributions,
                              residual, maps)
