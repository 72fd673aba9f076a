"""Gradient-free explainers read from the attention probabilities: raw attention and rollout.

Both depend on one input only (the image map does not see the text, the text row does not see the image), so
each image and each text is explained once and the rows are laid over the pairs afterwards.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..models.adapter import ClipAdapter
from ..models.features import accumulation_dtype
from .base import Batch, Explainer, lay_out
from .registry import register
from .relevance import select_row


def _head_mean(attention: Tensor) -> Tensor:
    return attention.to(accumulation_dtype(attention.dtype)).mean(dim=-3)


def rollout_row(attentions: list[Tensor], positions: Tensor) -> Tensor:
    """Row `positions` of A'_{L-1} @ ... @ A'_0 with A' = row-normalised 0.5 * mean_heads(A) + 0.5 * I.

    Propagated as a row vector from the last layer down, O(N^2) per layer instead of O(N^3).
    """
    first = _head_mean(attentions[0])
    r = torch.nn.functional.one_hot(positions.expand(first.shape[:-2]), first.shape[-1]).to(first.dtype)
    eye = torch.eye(first.shape[-1], dtype=first.dtype, device=first.device)
    for attention in reversed(attentions):
        mixed = 0.5 * _head_mean(attention) + 0.5 * eye
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        r = torch.einsum("...i,...ij->...j", r, mixed)
    return r


class _AttentionReader(Explainer):
    """One row per image (CLS) and per text (EOT) from the attention the method reads, laid over the pairs."""

    def rows(self, attentions: list[Tensor], positions: Tensor) -> Tensor:
        raise NotImplementedError

    def relevance(self, batch: Batch) -> tuple[Tensor | None, Tensor | None]:
        image = self.rows(batch.image.attentions, batch.position("image")) if batch.image.attentions else None
        text = self.rows(batch.text.attentions, batch.position("text")) if batch.text.attentions else None
        return lay_out(image, text, batch.columns)


@register("attention")
class RawAttention(_AttentionReader):
    """Mean over heads of the last layer's attention, row CLS (image) or EOT (text)."""

    def keep_from(self, adapter: ClipAdapter, tower: str) -> int | None:
        return None if tower == "image" and not adapter.has_patch_attention else adapter.resolve_layer(-1, tower)

    def rows(self, attentions: list[Tensor], positions: Tensor) -> Tensor:
        return select_row(_head_mean(attentions[-1]), positions)

    def options(self) -> dict:
        return {"layer": "last"}


@register("rollout")
class Rollout(_AttentionReader):
    """Attention rollout (Abnar & Zuidema 2020) from the start layer to the last, row CLS or EOT."""

    def rows(self, attentions: list[Tensor], positions: Tensor) -> Tensor:
        return rollout_row(attentions, positions)

    def options(self) -> dict:
        return {"start_layer_image": self.start_layer_image, "start_layer_text": self.start_layer_text}
