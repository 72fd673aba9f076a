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
    return rollout_vector(attentions, r)


def rollout_vector(attentions: list[Tensor], r: Tensor) -> Tensor:
    """r @ A'_{L-1} @ ... @ A'_0 for a start row r (..., N): a one-hot position, or an attention-pooling head's
    mean attention (its query is not a token, so the head adds no identity)."""
    eye = torch.eye(r.shape[-1], dtype=r.dtype, device=r.device)
    for attention in reversed(attentions):
        mixed = 0.5 * _head_mean(attention) + 0.5 * eye
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        r = torch.einsum("...i,...ij->...j", r, mixed)
    return r


class _AttentionReader(Explainer):
    """One row per image (CLS) and per text (EOT) from the attention the method reads, laid over the pairs."""

    reads_attention_pooling = True

    def rows(self, attentions: list[Tensor], positions: Tensor) -> Tensor:
        raise NotImplementedError

    def pooled_rows(self, attentions: list[Tensor], start: Tensor) -> Tensor:
        """Rows of an image tower pooled by attention, from the head's mean attention `start` (B, N)."""
        raise NotImplementedError

    def relevance(self, batch: Batch) -> tuple[Tensor | None, Tensor | None]:
        image = text = None
        if batch.image.attentions:
            pool = batch.image.pool_attention
            image = self.rows(batch.image.attentions, batch.position("image")) if pool is None else \
                self.pooled_rows(batch.image.attentions, _head_mean(pool)[..., 0, :])
        if batch.text.attentions:
            text = self.rows(batch.text.attentions, batch.position("text"))
        return lay_out(image, text, batch.columns)


@register("attention")
class RawAttention(_AttentionReader):
    """Mean over heads of the last layer's attention, row CLS (image) or EOT (text); for an image tower pooled by
    attention, the pooling head's."""

    def keep_from(self, adapter: ClipAdapter, tower: str) -> int | None:
        return None if tower == "image" and not adapter.has_patch_attention else adapter.resolve_layer(-1, tower)

    def rows(self, attentions: list[Tensor], positions: Tensor) -> Tensor:
        return select_row(_head_mean(attentions[-1]), positions)

    def pooled_rows(self, attentions: list[Tensor], start: Tensor) -> Tensor:
        return start  # the pooling head's attention is the last the feature reads

    def options(self) -> dict:
        return {"layer": "last"}


@register("rollout")
class Rollout(_AttentionReader):
    """Attention rollout (Abnar & Zuidema 2020) from the start layer to the last, row CLS or EOT."""

    def rows(self, attentions: list[Tensor], positions: Tensor) -> Tensor:
        return rollout_row(attentions, positions)

    def pooled_rows(self, attentions: list[Tensor], start: Tensor) -> Tensor:
        return rollout_vector(attentions, start)

    def options(self) -> dict:
        return {"start_layer_image": self.start_layer_image, "start_layer_text": self.start_layer_text}
