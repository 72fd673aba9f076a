"""Gradient-weighted attention relevance of Chefer, Gur & Wolf (ICCV 2021): ntlb's default explainer."""

from __future__ import annotations

from torch import Tensor

from .base import Batch
from .gradient import GradientExplainer
from .registry import register
from .relevance import gradient_weighted, propagate_row


@register("chefer2021")
class Chefer2021(GradientExplainer):
    """R = prod_l (I + mean_heads max(dy/dA_l * A_l, 0)); image map R[CLS, 1:], text row R[EOT, :].

    Every exact speed-up of SPEC section 1 is used: each image and text encoded once, one autograd call for
    all layers, batched vector-Jacobian products over the texts (image side) and images (text side), texts cut
    at their last EOT, one row of R propagated, attention kept only from the start layer on. Differentiable
    through the attention probabilities (and through the gradients with create_graph=True).
    """

    def combine(self, batch: Batch, tower: str, tensors: list[Tensor], gradients: list[Tensor],
                targets: Tensor) -> Tensor:
        abars = [gradient_weighted(a.unsqueeze(0), g) for a, g in zip(tensors, gradients)]
        return propagate_row(abars, batch.position(tower))
