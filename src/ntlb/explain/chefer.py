"""Gradient-weighted attention relevance of Chefer, Gur & Wolf (ICCV 2021): ntlb's default explainer."""

from __future__ import annotations

from torch import Tensor

from .base import Batch
from .gradient import GradientExplainer
from .registry import register
from .relevance import gradient_weighted, propagate_row, propagate_vector


@register("chefer2021")
class Chefer2021(GradientExplainer):
    """R = prod_l (I + mean_heads max(dy/dA_l * A_l, 0)); image map R[CLS, 1:], text row R[EOT, :]. An image
    tower pooled by attention (SigLIP's MAP head, CoCa's pooler) is read at the head's query: Abar_pool @ R.

    Every exact speed-up of SPEC section 1 is used: each image and text encoded once, one autograd call for
    all layers, batched vector-Jacobian products over the texts (image side) and images (text side), texts cut
    at their last EOT, one row of R propagated, attention kept only from the start layer on. Differentiable
    through the attention probabilities (and through the gradients with create_graph=True).
    """

    reads_attention_pooling = True

    def gradient_inputs(self, batch: Batch, tower: str) -> list[Tensor]:
        """The kept attention probabilities, and last the pooling head's where the image is pooled by attention."""
        encoded = batch.image if tower == "image" else batch.text
        pool = [encoded.pool_attention] if encoded.pool_attention is not None and encoded.attentions else []
        return encoded.attentions + pool

    def combine(self, batch: Batch, tower: str, tensors: list[Tensor], gradients: list[Tensor],
                targets: Tensor) -> Tensor:
        abars = [gradient_weighted(a.unsqueeze(0), g) for a, g in zip(tensors, gradients)]
        if tower == "image" and batch.image.pool_attention is not None:
            # attention pooling: the feature is the head's query, whose row is its gradient-weighted attention
            # over the tokens (no identity term: the query is not one of them)
            return propagate_vector(abars[:-1], abars[-1][..., 0, :])
        return propagate_row(abars, batch.position(tower))
