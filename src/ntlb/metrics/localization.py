"""Does a relevance map point at the object? (SPEC section 7: pointing game, energy in the mask)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..explain.normalize import upsample


def _at_mask_size(maps: Tensor, masks: Tensor) -> Tensor:
    maps = maps.detach().float()
    return maps if maps.shape[-2:] == masks.shape[-2:] else upsample(maps, tuple(masks.shape[-2:]))


def pointing_game(maps: Tensor, masks: Tensor) -> Tensor:
    """(N,) hits: the argmax of each (h, w) map, upsampled to the mask size, falls inside its mask."""
    maps = _at_mask_size(maps, masks)
    flat = maps.flatten(-2).argmax(dim=-1)
    return masks.flatten(-2).gather(-1, flat.unsqueeze(-1)).squeeze(-1).bool()


def mask_energy(maps: Tensor, masks: Tensor) -> Tensor:
    """(N,) share of each map's (non-negative) mass that lies inside its mask."""
    maps = _at_mask_size(maps, masks).clamp(min=0)
    total = maps.flatten(-2).sum(dim=-1).clamp_min(torch.finfo(maps.dtype).tiny)
    return (maps * masks.float()).flatten(-2).sum(dim=-1) / total
