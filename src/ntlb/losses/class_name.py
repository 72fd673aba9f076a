"""The explainability loss of prompt learning (paper Eq. 2 and 3; SPEC section 4).

The score of class c for image i says how much of CLIP(t(c), i) rests on the class name rather than on the
other words of the prompt. The loss raises it for the true class and lowers it for the others.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import NtlbError
from ..explain.relevance import one_hot_targets, propagated_rows
from ..models.adapter import Encoded

SCORES = ("paper", "coop")
REDUCTIONS = ("paper", "released")


def class_relevance_rows(logits: Tensor, prompts: Encoded, eot: Tensor, create_graph: bool = False) -> Tensor:
    """R[EOT, :] of every class prompt for every image's score, (B, C, L), from one batched backward through
    the text encoder (images encoded once, prompts once). Differentiable through the attention."""
    targets = one_hot_targets(logits.shape[0], tuple(logits.shape), 0, logits.device, logits.dtype)
    return propagated_rows(logits, prompts.attentions, targets, eot.to(logits.device), create_graph, True)


def explainability_scores(rows: Tensor, eot: Tensor, names: Tensor, score: str = "paper") -> Tensor:
    """S(c) for rows (B, C, L), EOT positions (C,) and class-name token masks (C, L) -> (B, C).

    "paper" (Eq. 2, default): max relevance of the class-name tokens over the summed relevance of the other
    prompt tokens (SOT and EOT excluded); "coop" (released code): the row with EOT zeroed, divided by its sum
    over all positions (SOT included), then the max over the class-name tokens.
    """
    if score not in SCORES:
        raise NtlbError(f"unknown explainability score '{score}': use one of {', '.join(SCORES)}")
    length = rows.shape[-1]
    names = names[:, :length].to(rows.device)
    position = torch.arange(length, device=rows.device)
    eot = eot.to(rows.device)
    if score == "paper":
        inside = (position >= 1) & (position < eot[:, None])
        others = (rows * (inside & ~names)).sum(dim=-1)
        top = rows.masked_fill(~names, float("-inf")).amax(dim=-1)
        return top / others.clamp_min(torch.finfo(rows.dtype).tiny)
    row = rows.masked_fill(position == eot[:, None], 0.0)
    row = row / row.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(rows.dtype).tiny)
    return row.masked_fill(~names, float("-inf")).amax(dim=-1)


def explainability_loss(scores: Tensor, labels: Tensor, reduction: str = "paper", also_minimize: bool = True) -> Tensor:
    """-S(c_gt) + sum_{c != c_gt} S(c), averaged over the batch ("paper"), or the released code's form: the mean
    of -S(c_gt) plus the mean over the B x C matrix with the true entries zeroed. `also_minimize=False` keeps
    only the first term."""
    if reduction not in REDUCTIONS:
        raise NtlbError(f"unknown loss reduction '{reduction}': use one of {', '.join(REDUCTIONS)}")
    true = scores.gather(1, labels[:, None].to(scores.device)).squeeze(1)
    loss = -true.mean()
    if also_minimize:
        others = scores.scatter(1, labels[:, None].to(scores.device), 0.0)
        loss = loss + (others.sum(dim=1).mean() if reduction == "paper" else others.mean())
    return loss
