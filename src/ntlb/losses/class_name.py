"""The explainability loss of prompt learning (paper Eq. 2 and 3; SPEC section 4), computed from any
explainer's text relevance.

The score of class c for image i says how much of CLIP(t(c), i) rests on the class name rather than on the
other words of the prompt. The loss raises it for the true class and lowers it for the others.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import NtlbError
from ..explain.explanation import Explanation

SCORES = ("paper", "coop", "mass")
REDUCTIONS = ("released", "paper", "bounded")

def explainability_scores(rows: Tensor, eot: Tensor, names: Tensor, score: str = "coop") -> Tensor:
    """S(c) for rows (B, C, L), EOT positions (C,) and class-name token masks (C, L) -> (B, C).

    "coop" (the released code's, default): the row with EOT zeroed, divided by its sum over all positions (SOT
    included), then the max over the class-name tokens, a share in [0, 1]; "paper" (Eq. 2): the max relevance of
    the class-name tokens over the summed relevance of the other prompt tokens (SOT and EOT excluded), an unbounded
    ratio; "mass" (for the signed rows of the `interactions` explainer, whose sums can be near 0): the class name's
    interaction with the image, the raw sum over its tokens clamped at 0.
    """
    if score not in SCORES:
        raise NtlbError(f"unknown explainability score '{score}': use one of {', '.join(SCORES)}")
    length = rows.shape[-1]
    names = names[:, :length].to(rows.device)
    position = torch.arange(length, device=rows.device)
    eot = eot.to(rows.device)
    if score == "mass":
        return (rows * names).sum(dim=-1).clamp(min=0)
    if score == "paper":
        inside = (position >= 1) & (position < eot[:, None])
        others = (rows * (inside & ~names)).sum(dim=-1)
        top = rows.masked_fill(~names, float("-inf")).amax(dim=-1)
        return top / others.clamp_min(torch.finfo(rows.dtype).tiny)
    row = rows.masked_fill(position == eot[:, None], 0.0)
    row = row / row.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(rows.dtype).tiny)
    return row.masked_fill(~names, float("-inf")).amax(dim=-1)


def explainability_weights(labels: Tensor, classes: int, reduction: str = "paper", also_minimize: bool = True,
                           batch: int | None = None) -> Tensor:
    """(B, C) weights w with loss = sum(w * S): -1/B on each image's true class and, with `also_minimize`, on the
    others +1/(B C) ("released", default: the released code's mean over the B x C matrix with the true entries
    zeroed), +1/B ("paper": Eq. 3 as written, the sum over the other classes, averaged over the batch) or
    +1/(B (C - 1)) ("bounded": the mean over the other classes, so the term stays the size of one class's score
    however many classes there are). The loss is a sum over classes, so class chunks can be explained one at a
    time. `batch`: the B to divide by (the global batch when a process holds part of it)."""
    if reduction not in REDUCTIONS:
        raise NtlbError(f"unknown loss reduction '{reduction}': use one of {', '.join(REDUCTIONS)}")
    count = batch or labels.shape[0]
    true = torch.nn.functional.one_hot(labels, classes).to(torch.float64)
    share = {"released": count * classes, "paper": count, "bounded": count * max(classes - 1, 1)}[reduction]
    others = (1 - true) / share
    return -true / count + (others if also_minimize else 0.0)


def explainability_loss(scores: Tensor, labels: Tensor, reduction: str = "released",
                        also_minimize: bool = True) -> Tensor:
    """The mean of -S(c_gt) over the batch plus the term on the other classes (see `explainability_weights`:
    "released" default, "paper" Eq. 3's sum, "bounded" its mean). `also_minimize=False` keeps only the first term."""
    weights = explainability_weights(labels.to(scores.device), scores.shape[1], reduction, also_minimize)
    return (weights.to(scores.dtype) * scores).sum()


def class_name_loss(explanation: Explanation, names: Tensor, labels: Tensor | None, score: str = "coop",
                    reduction: str = "released", also_minimize: bool = True,
                    weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(loss, scores (B, C)) of an explanation of every image with every class prompt (pairs="all"), whose
    text relevance is differentiable; `names` (C, L) marks each prompt's class-name tokens. `weights` (B, C):
    the loss's weights when these prompts are a chunk of the classes or these images a share of a larger batch
    (`explainability_weights` of the whole, cut to these columns; the trainer's class chunks); without them they
    come from `labels` over these images and classes."""
    explanation.require("the class-name loss", text=True, all_pairs=True)
    scores = explainability_scores(explanation.text, explanation.tokens.eot, names, score)
    if weights is None:
        return explainability_loss(scores, labels, reduction, also_minimize), scores
    return (weights.to(scores.device, scores.dtype) * scores).sum(), scores
