"""The layout loss of Algorithm 1 (paper section 3.4; SPEC section 6): Dice between soft relevance and boxes."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import NtlbError
from ..explain.explanation import Explanation
from ..explain.normalize import upsample

DICE_VARIANTS = ("paper", "released")

def soft_relevance_mask(relevance: Tensor, threshold: float = 0.1, temperature: float = 20.0) -> Tensor:
    """b = sigmoid((R / max R - T) * temp) for maps (..., H, W): a differentiable foreground."""
    peak = relevance.flatten(-2).amax(dim=-1)[..., None, None].clamp_min(torch.finfo(relevance.dtype).tiny)
    return torch.sigmoid((relevance / peak - threshold) * temperature)


def dice(soft: Tensor, mask: Tensor, variant: str = "paper") -> Tensor:
    """Dice of soft foregrounds (..., H, W) with box masks: 2 sum(b m) / (sum b + sum m) ("paper", default), or
    the released code's 2 sum(b m) / (2 sum(b m) + sum(b (1 - m))) with no false-negative term."""
    if variant not in DICE_VARIANTS:
        raise NtlbError(f"unknown Dice variant '{variant}': use one of {', '.join(DICE_VARIANTS)}")
    overlap = (soft * mask).flatten(-2).sum(dim=-1)
    tiny = torch.finfo(soft.dtype).tiny
    if variant == "paper":
        return 2 * overlap / (soft.flatten(-2).sum(dim=-1) + mask.flatten(-2).sum(dim=-1)).clamp_min(tiny)
    outside = (soft * (1 - mask)).flatten(-2).sum(dim=-1)
    return 2 * overlap / (2 * overlap + outside).clamp_min(tiny)


def box_weights(area_ratios: list[float] | Tensor, scale: float = 0.15) -> Tensor:
    """lambda_j = 0.15 / sqrt(area(m_j) / area(image)): small boxes weigh more."""
    ratios = torch.as_tensor(area_ratios, dtype=torch.float32)
    if (ratios <= 0).any():
        raise NtlbError("a box has zero area: every box needs a positive width and height")
    return scale / ratios.sqrt()


def layout_loss(explanation: Explanation, masks: Tensor, weights: Tensor, variant: str = "paper",
                threshold: float = 0.1, temperature: float = 20.0,
                per_view: bool = False) -> tuple[Tensor, dict[str, float]]:
    """Algorithm 1's loss for n views x k texts: -sum_j lambda_j Dice_j - sum_j CLIP(view, t_j), both averaged
    over the views; the maps (upsampled to the masks) and scores come from any explainer's differentiable
    explanation of every view with every text (pairs="all"), masks (n, k, H, W), weights (k,)."""
    explanation.require("the layout loss", image=True, all_pairs=True)
    maps = upsample(explanation.image, tuple(masks.shape[-2:]))
    dices = dice(soft_relevance_mask(maps, threshold, temperature), masks, variant)  # (n, k)
    similarity = explanation.logits
    loss = -(weights.to(dices) * dices).sum(dim=1) - similarity.sum(dim=1)  # (n,)
    parts = {"dice": float(dices.mean().detach()), "similarity": float(similarity.mean().detach())}
    return (loss if per_view else loss.mean()), parts
