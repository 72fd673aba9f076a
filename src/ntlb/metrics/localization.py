"""Does a relevance map point at the object? (SPEC section 7: pointing game, energy in the mask, Otsu IoU, and the
segmentation mIoU of the map thresholded at its mean, as Chefer et al.'s segmentation test)."""

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


def otsu_threshold(values: Tensor) -> float:
    """Otsu's threshold: the split of the sorted values that maximises the between-class variance.

    Exact (no histogram): every gap between consecutive distinct values is a candidate; the threshold
    returned is the smallest value of the upper class, so `values >= threshold` is the foreground.
    """
    flat = values.detach().double().flatten().sort().values
    n = flat.numel()
    if n < 2 or flat[0] == flat[-1]:
        return float(flat[-1]) if n else 0.0
    counts = torch.arange(1, n, dtype=torch.float64)  # size of the lower class for a split after index k
    lower_sum = flat.cumsum(0)[:-1]
    total = flat.sum()
    mean_low = lower_sum / counts
    mean_high = (total - lower_sum) / (n - counts)
    between = counts * (n - counts) * (mean_low - mean_high) ** 2
    between[flat[1:] == flat[:-1]] = -1  # a split inside a run of equal values is not a threshold
    return float(flat[int(between.argmax()) + 1])


def otsu_mask(relevance_map: Tensor) -> Tensor:
    """The foreground of a map under Otsu's threshold (boolean, same shape)."""
    return relevance_map >= otsu_threshold(relevance_map)


def otsu_iou(maps: Tensor, masks: Tensor) -> Tensor:
    """(N,) intersection over union of each map's Otsu foreground (at the mask size) with its mask."""
    maps = _at_mask_size(maps, masks)
    out = []
    for relevance_map, mask in zip(maps, masks.bool()):
        foreground = otsu_mask(relevance_map)
        union = (foreground | mask).sum()
        out.append((foreground & mask).sum() / union.clamp_min(1))
    return torch.stack(out).float()


def segmentation_miou(maps: Tensor, masks: Tensor) -> Tensor:
    """(N,) mean over the two classes (object, background) of the IoU of each map thresholded at its mean (at the
    mask size) with its mask: a map that marks everything scores about half, unlike Otsu IoU."""
    maps = _at_mask_size(maps, masks)
    masks = masks.bool()
    foreground = maps > maps.mean(dim=(-2, -1), keepdim=True)
    ious = []
    for predicted, truth in ((foreground, masks), (~foreground, ~masks)):
        inter = (predicted & truth).flatten(-2).sum(dim=-1).float()
        union = (predicted | truth).flatten(-2).sum(dim=-1).float()
        ious.append(inter / union.clamp_min(1))
    return (ious[0] + ious[1]) / 2
