"""The arithmetic shared by gradient-weighted explainers: scores, batched attention gradients, propagation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import NtlbError
from ..models.features import accumulation_dtype

LOGIT_MODES = ("scaled", "cosine", "sigmoid")


def clip_scores(image_features: Tensor, text_features: Tensor, scale: Tensor, mode: str = "scaled",
                bias: Tensor | None = None) -> Tensor:
    """The score of every image x text, shape (B, T): s * cos (+ b, SigLIP's bias, where the model has one)
    ("scaled"), cos ("cosine"), or SigLIP's match probability sigmoid(s * cos + b) ("sigmoid")."""
    if mode not in LOGIT_MODES:
        raise NtlbError(f"unknown logit_mode '{mode}': use 'scaled', 'cosine' or 'sigmoid'")
    cosine = F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
    if mode == "cosine":
        return cosine
    logits = cosine * scale if bias is None else cosine * scale + bias.to(cosine.dtype)
    if mode == "sigmoid":
        if bias is None:
            raise NtlbError("logit_mode='sigmoid' is SigLIP's score and this model has no logit bias: use 'scaled'")
        return logits.sigmoid()
    return logits


def gradient_weighted(attention: Tensor, gradient: Tensor) -> Tensor:
    """Abar = mean over heads of max(G * A, 0), in float32 or wider; heads are dim -3."""
    dtype = accumulation_dtype(attention.dtype)
    return (gradient.to(dtype) * attention.to(dtype)).clamp(min=0).mean(dim=-3)


def propagate_row(abars: list[Tensor], row: Tensor) -> Tensor:
    """Row `row` of R = prod_l (I + Abar_l), computed from the last layer down (SPEC 1, speed-up 5).

    abars: per layer (..., N, N), first layer first; row: (...) integer positions broadcastable to them.
    Returns (..., N).
    """
    lead = torch.broadcast_shapes(abars[0].shape[:-2], row.shape)
    return propagate_vector(abars, F.one_hot(row.expand(lead), abars[0].shape[-1]).to(abars[0].dtype))


def propagate_vector(abars: list[Tensor], r: Tensor) -> Tensor:
    """r @ prod_l (I + Abar_l) for a start row r (..., N): a one-hot position, or an attention-pooling head's
    gradient-weighted attention over the tokens (SigLIP, CoCa), where the feature is read."""
    for abar in reversed(abars):
        r = r + torch.einsum("...i,...ij->...j", r, abar)
    return r


def select_row(matrices: Tensor, row: Tensor) -> Tensor:
    """Row `row` of each (..., N, N) matrix -> (..., N); `row` broadcasts against the leading dims."""
    lead = matrices.shape[:-2]
    index = row.expand(lead)[..., None, None].expand(*lead, 1, matrices.shape[-1])
    return matrices.gather(-2, index).squeeze(-2)


def attention_gradients(
    output: Tensor,
    inputs: list[Tensor],
    targets: Tensor,
    create_graph: bool,
    retain_graph: bool,
) -> list[Tensor]:
    """d<target_k, output>/d input for every input (all layers) in one autograd call (speed-up 2).

    targets: (K, *output.shape) selectors; K > 1 are vector-Jacobian products batched with vmap (speed-up 3).
    Returns (K, *input.shape) per input; an input the output does not reach gets zeros.
    """
    batched = targets.shape[0] > 1
    grads = torch.autograd.grad(
        output,
        inputs,
        grad_outputs=targets if batched else targets[0],
        is_grads_batched=batched,
        create_graph=create_graph,
        retain_graph=retain_graph,
        allow_unused=True,
    )
    if not create_graph:
        grads = [g.detach() if g is not None else None for g in grads]
    return [
        torch.zeros(targets.shape[0], *a.shape, dtype=a.dtype, device=a.device) if g is None
        else g if batched else g.unsqueeze(0)
        for g, a in zip(grads, inputs)
    ]
