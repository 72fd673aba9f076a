"""Gradient-weighted attention relevance of Chefer, Gur & Wolf (ICCV 2021): ntlb's default explainer."""

from __future__ import annotations

import torch
from torch import Tensor

from ..models.loading import wrap
from .base import Batch, Explainer, no_image_maps
from .explanation import Explanation
from .registry import register
from .relevance import attention_gradients, gradient_weighted, one_hot_targets, propagate_row, propagated_rows


@register("chefer2021")
class Chefer2021(Explainer):
    """R = prod_l (I + mean_heads max(dy/dA_l * A_l, 0)); image map R[CLS, 1:], text row R[EOT, :].

    Every exact speed-up of SPEC section 1 is used: each image and text encoded once, one autograd call for
    all layers, batched vector-Jacobian products over the texts (image side) and images (text side), texts cut
    at their last EOT, one row of R propagated, attention kept only from the start layer on. Differentiable
    through the attention probabilities (and through the gradients with create_graph=True).
    """

    def __call__(self, model, images, texts, pairs: str = "all") -> Explanation:
        grad_requested = torch.is_grad_enabled()
        with torch.enable_grad():
            adapter = wrap(model)
            keep_image = (
                adapter.resolve_layer(self.start_layer_image, "image") if adapter.has_patch_attention else None
            )
            keep_text = adapter.resolve_layer(self.start_layer_text, "text")
            batch = self.encode(adapter, images, texts, pairs, keep_image, keep_text, grad_requested)
            if pairs == "diagonal":
                image_rel, text_rel = self._diagonal(batch)
            else:
                image_rel, text_rel = self._all_pairs(batch)
        note = "" if adapter.has_patch_attention else no_image_maps(self.name)
        return self.explanation(batch, image_rel, text_rel, pairs, image_note=note)

    def _relevance(self, batch: Batch, attentions: list[Tensor], targets: Tensor, row: Tensor,
                   retain: bool) -> Tensor:
        return propagated_rows(batch.logits, attentions, targets, row, self.create_graph, retain, self.chunk_size)

    def _all_pairs(self, batch: Batch) -> tuple[Tensor | None, Tensor]:
        logits = batch.logits
        b, t = logits.shape
        retain = batch.differentiable or self.create_graph
        image_rel = None
        if batch.image.attentions:
            targets = one_hot_targets(t, (b, t), 1, logits.device, logits.dtype)
            cls = torch.zeros((), dtype=torch.long, device=logits.device)
            image_rel = self._relevance(batch, batch.image.attentions, targets, cls, True).transpose(0, 1)
        targets = one_hot_targets(b, (b, t), 0, logits.device, logits.dtype)
        eot = batch.tokens.eot.to(logits.device)
        text_rel = self._relevance(batch, batch.text.attentions, targets, eot, retain)
        return image_rel, text_rel

    def _diagonal(self, batch: Batch) -> tuple[Tensor | None, Tensor]:
        retain = batch.differentiable or self.create_graph
        attentions = batch.image.attentions + batch.text.attentions
        grads = attention_gradients(batch.logits.diagonal(), attentions, None, self.create_graph, retain)
        abars = [gradient_weighted(a, g) for a, g in zip(attentions, grads)]
        n_image = len(batch.image.attentions)
        image_rel = None
        if n_image:
            cls = torch.zeros(len(batch.tokens), dtype=torch.long, device=batch.logits.device)
            image_rel = propagate_row(abars[:n_image], cls)
        text_rel = propagate_row(abars[n_image:], batch.tokens.eot.to(batch.logits.device))
        return image_rel, text_rel
