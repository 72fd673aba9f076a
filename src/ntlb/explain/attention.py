"""Gradient-free explainers read from the attention probabilities: raw attention and rollout.

Both depend on one input only (the image map does not see the text, the text row does not see the image), so
each image and each text is explained once and the rows are laid out over the pairs afterwards.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..models.loading import wrap
from .base import Batch, Explainer, no_image_maps, per_pair
from .explanation import Explanation
from .registry import register
from .relevance import accumulation_dtype


def _head_mean(attention: Tensor) -> Tensor:
    return attention.to(accumulation_dtype(attention.dtype)).mean(dim=-3)


def _row(matrix_rows: Tensor, positions: Tensor) -> Tensor:
    """Row positions[k] of matrix k: (K, N, N), (K,) -> (K, N)."""
    return matrix_rows[torch.arange(len(positions), device=matrix_rows.device), positions]


def rollout_row(attentions: list[Tensor], positions: Tensor) -> Tensor:
    """Row `positions` of A'_{L-1} @ ... @ A'_0 with A' = row-normalised 0.5 * mean_heads(A) + 0.5 * I.

    Propagated as a row vector from the last layer down, O(N^2) per layer instead of O(N^3).
    """
    first = _head_mean(attentions[0])
    r = torch.nn.functional.one_hot(positions, first.shape[-1]).to(first.dtype)
    eye = torch.eye(first.shape[-1], dtype=first.dtype, device=first.device)
    for attention in reversed(attentions):
        mixed = 0.5 * _head_mean(attention) + 0.5 * eye
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        r = torch.einsum("ki,kij->kj", r, mixed)
    return r


class _AttentionReader(Explainer):
    """Shared call: encode with the attention the method reads, turn it into rows, lay rows over pairs."""

    def _keep_from(self, adapter, tower: str) -> int:
        raise NotImplementedError

    def _rows(self, attentions: list[Tensor], positions: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, model, images, texts, pairs: str = "all") -> Explanation:
        grad_requested = torch.is_grad_enabled()
        adapter = wrap(model)
        keep_image = self._keep_from(adapter, "image") if adapter.has_patch_attention else None
        batch: Batch = self.encode(adapter, images, texts, pairs, keep_image, self._keep_from(adapter, "text"),
                                   grad_requested)
        image_rows = None
        if batch.image.attentions:
            cls = torch.zeros(batch.logits.shape[0], dtype=torch.long, device=batch.logits.device)
            image_rows = self._rows(batch.image.attentions, cls)
        text_rows = self._rows(batch.text.attentions, batch.tokens.eot.to(batch.logits.device))
        image, text = per_pair(image_rows, text_rows, pairs, batch.logits.shape[0])
        note = "" if adapter.has_patch_attention else no_image_maps(self.name)
        return self.explanation(batch, image, text, pairs, image_note=note)


@register("attention")
class RawAttention(_AttentionReader):
    """Mean over heads of the last layer's attention, row CLS (image) or EOT (text)."""

    def _keep_from(self, adapter, tower: str) -> int:
        return adapter.resolve_layer(-1, tower)

    def _rows(self, attentions: list[Tensor], positions: Tensor) -> Tensor:
        return _row(_head_mean(attentions[-1]), positions)

    def options(self) -> dict:
        return {"layer": -1}


@register("rollout")
class Rollout(_AttentionReader):
    """Attention rollout (Abnar & Zuidema 2020) from the start layer to the last, row CLS or EOT."""

    def _keep_from(self, adapter, tower: str) -> int:
        return adapter.resolve_layer(self.start_layer_image if tower == "image" else self.start_layer_text, tower)

    def _rows(self, attentions: list[Tensor], positions: Tensor) -> Tensor:
        return rollout_row(attentions, positions)

    def options(self) -> dict:
        return {"start_layer_image": self.start_layer_image, "start_layer_text": self.start_layer_text}
