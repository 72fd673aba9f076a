"""CLIP Surgery (Li et al. 2023): training-free image maps from architecture surgery and feature surgery.

Architecture surgery runs a second path beside the last blocks of the ViT: value-value self-attention fed
with ln_1 of the original path, accumulating only the attention output (no MLP). The CLS token stays the
original path's, so the image features and scores are CLIP's own; the patch tokens come from the new path.
Feature surgery then removes what the patch-text similarities of all texts share. The model is not changed
and gradients are not disabled: the maps are differentiable when the caller asks for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
from torch import Tensor

from ..errors import NtlbError
from ..models.adapter import ClipAdapter, Encoded
from ..models.blocks import BlockView, attention_block, run_blocks, split_heads
from ..models.features import accumulation_dtype, text_features
from .base import Batch, Explainer
from .normalize import minmax
from .registry import register

ENSEMBLE_TEMPLATES = tuple(template("{}") for template in OPENAI_IMAGENET_TEMPLATES)


def value_attention(block: BlockView, x: Tensor) -> Tensor:
    """The surgery path's residual: out(softmax(scale * V V^T) V) per head, V from ln_1(x) of the original path."""
    b, n, d = x.shape
    _, _, v = (split_heads(t, block.heads) for t in block.qkv(block.ln_1(x)))
    probs = ((v * v.shape[-1] ** -0.5) @ v.transpose(-1, -2)).softmax(dim=-1)
    return block.ls_1(block.out((probs @ v).transpose(1, 2).reshape(b, n, d)))


def surgery_tokens(adapter: ClipAdapter, pixels: Tensor, layers: int) -> tuple[Tensor, Tensor]:
    """(image features (B, D) of the original path, projected tokens (B, N, D): CLS original, patches new)."""
    blocks = adapter.image_blocks
    start = len(blocks) - layers
    x, _, _ = run_blocks(blocks[:start], adapter.embed_image(pixels.to(adapter.device, adapter.dtype)))
    new = x
    for block in blocks[start:]:
        new = new + value_attention(block, x)
        x, _ = attention_block(block, x, None, False)
    tokens = torch.cat([x[:, :1], new[:, 1:]], dim=1)
    return adapter.pool_image(x), adapter.project_image_tokens(tokens)


def feature_surgery(patches: Tensor, cls: Tensor, texts: Tensor, empty: Tensor | None = None) -> Tensor:
    """S[b, i, n] = w_n (F_i . T_n) - mean_n' w_n' (F_i . T_n'), w = softmax(2 F_cls T^T) / its mean.

    patches (B, P, D), cls (B, D), texts (T, D), all normalised. With one text and `empty` (the embedding of
    the empty prompt), S = F_i . (T - T_empty). Closed form: never builds a P x T x D tensor. Returns (B, P, T).
    """
    if texts.shape[0] == 1 and empty is not None:
        return patches @ (texts - empty).T
    weights = (2 * cls @ texts.T).softmax(dim=-1)
    weights = weights / weights.mean(dim=-1, keepdim=True)
    weighted = (patches @ texts.T) * weights[:, None, :]
    return weighted - weighted.mean(dim=-1, keepdim=True)


@register("clip_surgery")
class ClipSurgery(Explainer):
    """Image maps by CLIP Surgery over the last `surgery_layers` blocks; no text relevance.

    `empty_templates`: the prompt templates whose mean embedding of the empty class name is subtracted when a
    single text is explained; default open_clip's 80 ImageNet templates (the reference code uses 85).
    """

    gives_text_relevance = False

    def __init__(self, surgery_layers: int = 6, empty_templates: Sequence[str] | None = None, **options):
        super().__init__(**options)
        if surgery_layers < 1:
            raise NtlbError(f"surgery_layers={surgery_layers}: use at least 1 block")
        self.surgery_layers = surgery_layers
        self.empty_templates = tuple(empty_templates) if empty_templates is not None else ENSEMBLE_TEMPLATES
        if not self.empty_templates or any("{}" not in t for t in self.empty_templates):
            raise NtlbError("empty_templates: give templates with a {} where the class name goes")
        self._empty: dict[int, Tensor] = {}  # the empty prompt's embedding, per model

    def options(self) -> dict:
        return {"surgery_layers": self.surgery_layers, "empty_templates": len(self.empty_templates),
                "logit_mode": self.logit_mode}

    def check(self, adapter: ClipAdapter) -> None:
        if not adapter.has_patch_attention:
            raise NtlbError("clip_surgery needs a ViT image tower: use method='gradcam' for convolutional towers")

    def keep_from(self, adapter: ClipAdapter, tower: str) -> int | None:
        return None

    def _empty_prompt(self, adapter: ClipAdapter) -> Tensor:
        key = id(adapter.model)
        if key not in self._empty:
            self._empty[key] = text_features(adapter, [""], self.empty_templates)
        return self._empty[key]

    def encode_images(self, adapter: ClipAdapter, pixels: Tensor) -> Encoded:
        """Features from the original path; `tokens` holds every projected token (CLS original, patches new)."""
        features, projected = surgery_tokens(adapter, pixels, min(self.surgery_layers, len(adapter.image_blocks)))
        return Encoded(features, tokens=projected)

    def relevance(self, batch: Batch) -> tuple[Tensor | None, Tensor | None]:
        if batch.images_as_features:
            return None, None
        projected = batch.image.tokens
        dtype = accumulation_dtype(projected.dtype)
        normed = F.normalize(projected.to(dtype), dim=-1)
        text_features_ = F.normalize(batch.text.features.to(dtype), dim=-1)
        empty = self._empty_prompt(batch.adapter).to(dtype) if text_features_.shape[0] == 1 else None
        maps = feature_surgery(normed[:, 1:], normed[:, 0], text_features_, empty).transpose(1, 2)  # (B, T, P)
        return batch.explained(minmax(maps, dims=(-1,))), None
