"""Occlusion: how much the score drops when a region of the image is covered, for any image tower.

The image is cut into the model's patch grid (h x w cells; a convolutional tower's output grid). Each window of
`window` x `window` cells is filled with `fill` (0 in normalised pixels: the dataset's mean colour, as the
perturbation metrics do) and the image re-encoded; a cell's relevance is the mean drop of the score over the
windows that cover it. Model-agnostic, so it is the baseline for every tower and for image-image similarity
(`explain_pair`); it costs one forward pass per window, and the maps are not differentiable.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import NtlbError
from ..models.adapter import ClipAdapter, Encoded
from ..models.features import accumulation_dtype
from .base import Batch, Explainer
from .registry import register
from .relevance import clip_scores


def occlusion_windows(size: tuple[int, int], grid: tuple[int, int], window: int) -> tuple[Tensor, Tensor]:
    """(pixel masks (W, H, W) of the windows, cell coverage (W, h*w)): every window of `window` cells whose top-left
    cell lies in the grid, clipped at the border."""
    (height, width), (h, w) = size, grid
    rows = torch.linspace(0, height, h + 1).round().long().tolist()
    cols = torch.linspace(0, width, w + 1).round().long().tolist()
    masks, cover = [], []
    for i in range(h):
        for j in range(w):
            mask = torch.zeros(height, width, dtype=torch.bool)
            cells = torch.zeros(h, w)
            mask[rows[i] : rows[min(i + window, h)], cols[j] : cols[min(j + window, w)]] = True
            cells[i : i + window, j : j + window] = 1
            masks.append(mask)
            cover.append(cells.flatten())
    return torch.stack(masks), torch.stack(cover)


@register("occlusion")
class Occlusion(Explainer):
    """Image maps from the score drop under occluded windows; any image tower; no text relevance."""

    gives_text_relevance = False
    reads_attention_pooling = True  # forward passes only: any pooling

    def __init__(self, window: int = 1, fill: float = 0.0, occlusion_batch: int = 64, **options):
        super().__init__(**options)
        if window < 1 or occlusion_batch < 1:
            raise NtlbError(f"window={window}, occlusion_batch={occlusion_batch}: use at least 1 of each")
        self.window, self.fill, self.occlusion_batch = window, fill, occlusion_batch

    def options(self) -> dict:
        return {"window": self.window, "fill": self.fill, "logit_mode": self.logit_mode}

    def keep_from(self, adapter: ClipAdapter, tower: str) -> int | None:
        return None

    def encode_images(self, adapter: ClipAdapter, pixels: Tensor) -> Encoded:
        """CLIP's own features; `tokens` holds the features of every occluded copy (B, windows, D)."""
        from ..models.features import image_features

        features = adapter.encode_image(pixels).features
        masks, _ = occlusion_windows(tuple(pixels.shape[-2:]), adapter.grid_size, self.window)
        masks = masks.to(pixels.device)
        occluded = []
        with torch.no_grad():
            for image in pixels:
                copies = torch.where(masks[:, None], torch.full_like(image, self.fill), image)
                occluded.append(image_features(adapter, copies, self.occlusion_batch, desc="occluding"))
        return Encoded(features, tokens=torch.stack(occluded))

    def relevance(self, batch: Batch) -> tuple[Tensor | None, Tensor | None]:
        if batch.images_as_features:
            return None, None
        adapter = batch.adapter
        occluded = batch.image.tokens  # (B, W, D)
        dtype = accumulation_dtype(occluded.dtype)
        texts = batch.text.features.to(dtype)
        scale = adapter.logit_scale.to(dtype)
        bias = None if adapter.logit_bias is None else adapter.logit_bias.to(dtype)
        dropped = clip_scores(occluded.flatten(0, 1).to(dtype), texts, scale, self.logit_mode, bias)
        dropped = dropped.view(*occluded.shape[:2], -1)  # (B, W, T)
        whole = clip_scores(batch.image.features.detach().to(dtype), texts.detach(), scale, self.logit_mode, bias)
        drops = whole[:, None, :] - dropped  # (B, W, T)
        _, cover = occlusion_windows(adapter.preprocess_config.size, adapter.grid_size, self.window)
        cover = cover.to(drops.device, dtype)  # (W, P)
        maps = torch.einsum("bwt,wp->btp", drops, cover) / cover.sum(dim=0)  # mean drop over the covering windows
        return batch.explained(maps), None
