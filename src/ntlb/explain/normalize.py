"""Named normalisations of relevance (SPEC section 1) and word relevance (SPEC section 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import NtlbError
from ..models.tokenizer import Word

TEXT_NORMALIZATIONS = ("visual", "coop", "max", "raw")


def normalize_text(rows: Tensor, eot: Tensor, mode: str = "visual") -> Tensor:
    """Rows R[EOT, :] (..., T, L) or (..., L) with EOT positions broadcastable to the rows' leading dims.

    "visual": words only (SOT and EOT zeroed), divided by their sum. "coop": EOT zeroed, divided by the sum
    over all positions, SOT included. "max": "visual" divided by its max. "raw": unchanged.
    The result keeps the positions, so word spans index it directly.
    """
    if mode not in TEXT_NORMALIZATIONS:
        raise NtlbError(f"unknown text normalisation '{mode}': use one of {', '.join(TEXT_NORMALIZATIONS)}")
    if mode == "raw":
        return rows
    positions = torch.arange(rows.shape[-1], device=rows.device)
    eot = eot.to(rows.device).unsqueeze(-1)
    if mode == "coop":
        kept = rows * (positions != eot)
    else:
        kept = rows * ((positions >= 1) & (positions < eot))
    out = kept / kept.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(rows.dtype).tiny)
    if mode == "max":
        out = out / out.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(rows.dtype).tiny)
    return out


def word_relevance(row: Tensor, words: list[Word]) -> list[tuple[str, float]]:
    """A word's relevance is the max over its BPE tokens."""
    return [(word.text, float(row[word.start : word.end].max())) for word in words]


def upsample(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear upsampling of (..., h, w) maps to (..., H, W)."""
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:])
    return F.interpolate(flat, size=size, mode="bilinear", align_corners=False).reshape(*lead, *size)


def minmax(maps: Tensor, dims: tuple[int, ...] = (-2, -1)) -> Tensor:
    """Min-max scaling of each map (over `dims`: (h, w), or (-1,) for flat rows) to [0, 1] (constant: 0)."""
    low = maps.amin(dim=dims, keepdim=True)
    high = maps.amax(dim=dims, keepdim=True)
    return (maps - low) / (high - low).clamp_min(torch.finfo(maps.dtype).tiny)
