"""The arithmetic shared by gradient-weighted explainers: scores, batched attention gradients, propagation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import NtlbError

LOGIT_MODES = ("scaled", "cosine")


def clip_scores(image_features: Tensor, text_features: Tensor, scale: Tensor, mode: str = "scaled") -> Tensor:
    """CLIP(t, i) for every image x text: s * cos ("scaled") or cos ("cosine"), shape (B, T)."""
    if mode not in LOGIT_MODES:
        raise NtlbError(f"unknown logit_mode '{mode}': use 'scaled' or 'cosine'")
    cosine = F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
    return cosine * scale if mode == "scaled" else cosine


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types, the input's own dtype when wider (float64 tests)."""
    return torch.promote_types(dtype, torch.float32)


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
    r = F.one_hot(row.expand(lead), abars[0].shape[-1]).to(abars[0].dtype)
    for abar in reversed(abars):
        r = r + torch.einsum("...i,...ij->...j", r, abar)
    return r


def attention_gradients(
    output: Tensor,
    attentions: list[Tensor],
    targets: Tensor | None,
    create_graph: bool,
    retain_graph: bool,
) -> list[Tensor]:
    """d<target_k, output>/dA_l for every layer in one autograd call (speed-up 2).

    targets: (K, *output.shape) for K vector-Jacobian products batched with vmap (speed-up 3), or None for
    the gradient of output.sum(). A layer the output does not reach gets zeros.
    """
    grads = torch.autograd.grad(
        output,
        attentions,
        grad_outputs=targets if targets is not None else torch.ones_like(output),
        is_grads_batched=targets is not None,
        create_graph=create_graph,
        retain_graph=retain_graph,
        allow_unused=True,
    )
    if not create_graph:
        grads = [g.detach() if g is not None else None for g in grads]
    shape = (targets.shape[0],) if targets is not None else ()
    return [
        g if g is not None else torch.zeros(*shape, *a.shape, dtype=a.dtype, device=a.device)
        for g, a in zip(grads, attentions)
    ]


def one_hot_targets(count: int, shape: tuple[int, int], dim: int, device, dtype) -> Tensor:
    """K = count one-hot selectors over `dim` of a (B, T) score matrix: target k selects column/row k."""
    targets = torch.zeros(count, *shape, device=device, dtype=dtype)
    index = torch.arange(count, device=device)
    if dim == 1:
        targets[index, :, index] = 1
    else:
        targets[index, index, :] = 1
    return targets


def propagated_rows(logits: Tensor, attentions: list[Tensor], targets: Tensor, row: Tensor, create_graph: bool,
                    retain_graph: bool, chunk_size: int | None = None) -> Tensor:
    """Row `row` of R = prod_l (I + Abar_l) for K batched targets over `logits`: (K, ..., N).

    `chunk_size` targets per gradient call bound the memory; the graph is kept for later chunks. The rows stay
    differentiable through the attention probabilities (and through the gradients with create_graph).
    """
    size = chunk_size or targets.shape[0]
    rows = []
    for start in range(0, targets.shape[0], size):
        chunk = targets[start : start + size]
        last = start + size >= targets.shape[0]
        grads = attention_gradients(logits, attentions, chunk, create_graph, retain_graph or not last)
        abars = [gradient_weighted(a.unsqueeze(0), g) for a, g in zip(attentions, grads)]
        rows.append(propagate_row(abars, row))
    return torch.cat(rows)
