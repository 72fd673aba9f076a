"""Perturbation tests of faithfulness (Chefer et al. 2021; SPEC section 7).

Remove image patches (or text tokens) in order of decreasing relevance (positive test: the score should
fall fast, lower area is better) or increasing relevance (negative test: higher area is better), 10% more at
each step, and record the pair's CLIP score. The area under the curve is the mean over the steps. Insertion
(Petsiuk et al. 2018) runs the other way: from a blank image, the most relevant patches are shown first (higher
area is better).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.adapter import ClipAdapter
from ..models.features import accumulation_dtype

FRACTIONS = tuple(i / 10 for i in range(10))  # 0%, 10%, ..., 90% removed


def _order(relevance: Tensor, positive: bool) -> Tensor:
    return relevance.argsort(descending=positive, stable=True)


@torch.no_grad()
def patch_perturbation_curve(adapter: ClipAdapter, pixels: Tensor, text_features: Tensor, patch_map: Tensor,
                             positive: bool = True, fractions: tuple[float, ...] = FRACTIONS,
                             insertion: bool = False) -> Tensor:
    """Scaled CLIP score of one image (3, H, W) with one text feature (D,) as its patches are blanked (or, with
    `insertion`, as the most relevant patches are shown on a blank image, that share at each step).

    A blank patch is set to 0 in the normalised input (the dataset's mean colour).
    """
    h, w = patch_map.shape
    order = _order(patch_map.flatten().float(), positive or insertion)
    size_h, size_w = pixels.shape[-2] // h, pixels.shape[-1] // w
    batch = pixels.unsqueeze(0).repeat(len(fractions), 1, 1, 1)
    for step, fraction in enumerate(fractions):
        count = int(round(fraction * h * w))
        for index in (order[count:] if insertion else order[:count]).tolist():
            y, x = divmod(index, w)
            batch[step, :, y * size_h : (y + 1) * size_h, x * size_w : (x + 1) * size_w] = 0
    dtype = accumulation_dtype(adapter.dtype)
    image = F.normalize(adapter.encode_image(batch).features.to(dtype), dim=-1)
    return adapter.logit_scale.to(dtype) * image @ F.normalize(text_features.to(dtype), dim=-1)


@torch.no_grad()
def token_perturbation_curve(adapter: ClipAdapter, image_features: Tensor, ids: Tensor, eot: int,
                             token_relevance: Tensor, positive: bool = True,
                             fractions: tuple[float, ...] = FRACTIONS) -> Tensor:
    """Scaled CLIP score of one image feature (D,) with a text whose tokens (between SOT and EOT) are deleted
    in relevance order; token_relevance covers positions 1..eot-1."""
    inner = ids[1:eot]
    order = _order(token_relevance.float(), positive)
    texts = []
    for fraction in fractions:
        removed = set(order[: int(round(fraction * len(inner)))].tolist())
        kept = [int(t) for i, t in enumerate(inner) if i not in removed]
        texts.append([int(ids[0]), *kept, int(ids[eot])])
    length = max(len(t) for t in texts)
    batch = torch.zeros(len(texts), length, dtype=ids.dtype)
    for row, text in enumerate(texts):
        batch[row, : len(text)] = torch.tensor(text)
    ends = torch.tensor([len(t) - 1 for t in texts])
    dtype = accumulation_dtype(adapter.dtype)
    features = F.normalize(adapter.encode_text(batch, ends).features.to(dtype), dim=-1)
    return adapter.logit_scale.to(dtype) * features @ F.normalize(image_features.to(dtype), dim=-1)


def curve_area(scores: Tensor) -> float:
    """Area under a perturbation curve over the removed share, as the mean score over the steps."""
    return float(scores.float().mean())
