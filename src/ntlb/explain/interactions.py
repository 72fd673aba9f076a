"""Token x patch interactions (Möller et al., TMLR 2025, "Explaining Caption-Image Interactions in CLIP Models
with Second-Order Attributions"; code `exclip`): which region each word matches, and which words a region matches.

At a chosen layer, the text's tokens x and the image's tokens y are each joined to a reference (the text
"<sot> ! <eot>", the all-zero model input) by a straight path; the integrated Jacobians J_f, J_g of the two
embeddings along their paths give e_t(x) - e_t(r) = J_f (x - r) and likewise for the image, so

    (e_t(x) - e_t(r)) . (e_i(y) - e_i(q)) = sum_{s, p} A[s, p],
    A[s, p] = sum_k u[k, s] v[k, p],  u[k, s] = sum_d J_f[k, (s, d)] (x - r)[s, d],  v likewise for patches,

divided by |e_t(x)| |e_i(y)| (the cosine's norms, as the released code) and, with logit_mode="scaled", times
CLIP's logit scale. The released code takes one backward pass per embedding dimension (512 for ViT-B/32) and
materialises the (tokens x width) x (patches x width) Jacobian product; here each column of u (one token) and of
v (one patch) is one Jacobian-vector product, batched over tokens, patches, path points and inputs, and a pair's
matrix is one contraction over the embedding dimension: u and v are computed once per text and per image, so
B images x T texts cost B + T encodings, not B * T.

Defaults as the released code: the input of the last block (start layers -1), 10 path points at 1, 0.9, ..., 0.1
("riemann"); "gauss" (Gauss-Legendre) makes the path integral exact to round-off for smooth towers, so the sum
of the interactions equals the score difference (`Explanation.completeness`). The caption's image map and the
token relevance are the two marginals of A.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..errors import NtlbError
from ..models.adapter import ClipAdapter
from ..models.blocks import run_blocks
from ..models.features import accumulation_dtype
from .base import Batch, Explainer
from .memory import memory_budget
from .registry import register

RULES = ("riemann", "gauss")
REFERENCE_FILLER = 0  # the released code's text reference: <sot>, token 0 ("!" in CLIP's vocabulary), <eot>


def path_points(steps: int, rule: str) -> tuple[Tensor, Tensor]:
    """(alphas, weights) of the path integral from the reference (0) to the input (1): "riemann" is the released
    code's 1, 1 - 1/n, ..., 1/n with equal weights; "gauss" is Gauss-Legendre on [0, 1]."""
    if rule not in RULES:
        raise NtlbError(f"unknown integration rule '{rule}': use {' or '.join(RULES)}")
    if steps < 1:
        raise NtlbError(f"steps={steps}: use at least one point on the path")
    if rule == "riemann":
        alphas = 1.0 - np.arange(steps) / steps
        weights = np.full(steps, 1.0 / steps)
    else:
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        alphas, weights = (nodes + 1) / 2, weights / 2
    return torch.from_numpy(alphas), torch.from_numpy(weights)


def _layer_norm_from_definition(x: Tensor, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    dims = tuple(range(-len(normalized_shape), 0))
    mean = x.mean(dim=dims, keepdim=True)
    out = (x - mean) * torch.rsqrt((x - mean).square().mean(dim=dims, keepdim=True) + eps)
    out = out if weight is None else out * weight
    return out if bias is None else out + bias


@contextmanager
def _forward_mode_safe() -> Iterator[None]:
    """Attention through its composite kernel (the fused ones have no forward-mode derivative) and layer norms from
    their definition: PyTorch's layer_norm gives right Jacobian-vector products but a wrong gradient of them, which
    a loss on the interactions takes (checked against central differences in tests/test_interactions.py)."""
    native = F.layer_norm
    F.layer_norm = _layer_norm_from_definition
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            yield
    finally:
        F.layer_norm = native


def integrated_columns(head: Callable[[Tensor, Tensor], Tensor], x: Tensor, reference: Tensor, alphas: Tensor,
                       weights: Tensor, per_call: tuple[int, int]) -> Tensor:
    """(n, D, P): for each input i and position p, sum_j w_j J(r + a_j (x_i - r)) . (x_i - r) restricted to p, the
    integrated Jacobian of `head` (tokens (m, P, W), input index (m,) -> embeddings (m, D)) applied to the
    difference at one position. Jacobian-vector products batched over positions (vmap), path points and inputs,
    `per_call` = (inputs, positions) at a time."""
    inputs_per_call, positions_per_call = per_call
    groups = []
    for first in range(0, len(x), inputs_per_call):
        group = torch.arange(first, min(first + inputs_per_call, len(x)), device=x.device)
        own_reference = reference if len(reference) == 1 else reference[group]
        groups.append(_group_columns(head, x[group], own_reference, group, alphas, weights, positions_per_call))
    return torch.cat(groups)


def _group_columns(head, x: Tensor, reference: Tensor, owners: Tensor, alphas: Tensor, weights: Tensor,
                   positions_per_call: int) -> Tensor:
    n, length, width = x.shape
    dtype = accumulation_dtype(x.dtype)
    delta = x - reference
    a = alphas.to(x.device, x.dtype)
    steps = len(a)
    points = (reference[:, None] + a[None, :, None, None] * delta[:, None]).reshape(-1, length, width)
    owners = owners.repeat_interleave(steps)
    w = weights.to(x.device, dtype).repeat(n).reshape(n, -1)

    def directional(position: Tensor) -> Tensor:  # one position's tangent for every path point
        mask = F.one_hot(position, length).to(x.dtype)[None, :, None]
        tangent = (delta * mask)[:, None].expand(-1, steps, -1, -1).reshape(-1, length, width)
        return torch.func.jvp(lambda z: head(z, owners), (points,), (tangent,))[1]

    columns = []
    with _forward_mode_safe():
        for start in range(0, length, positions_per_call):
            index = torch.arange(start, min(start + positions_per_call, length), device=x.device)
            out = torch.func.vmap(directional)(index)  # (p, n * steps, D)
            out = out.reshape(len(index), n, steps, -1).to(dtype)
            columns.append(torch.einsum("pnsd,ns->ndp", out, w))
    return torch.cat(columns, dim=-1)


@register("interactions")
class Interactions(Explainer):
    """Second-order token x patch interactions of every explained pair; marginals as the usual maps and rows."""

    gives_interactions = True

    def __init__(self, start_layer_image: int = -1, start_layer_text: int = -1, steps: int = 10,
                 rule: str = "riemann", logit_mode: str = "scaled", **options):
        if logit_mode == "sigmoid":
            raise NtlbError("interactions split the scaled score or the cosine, not sigmoid(score): use "
                            "logit_mode='scaled' or 'cosine'")
        super().__init__(start_layer_image, start_layer_text, logit_mode=logit_mode, **options)
        path_points(steps, rule)  # one-line errors at build time
        self.steps, self.rule = steps, rule

    def check(self, adapter: ClipAdapter) -> None:
        if not adapter.image_blocks:
            raise NtlbError(f"interactions need transformer towers, and this model's image tower is "
                            f"{adapter.image_tower}: use method='gradcam' for its image maps")

    def options(self) -> dict:
        return {**super().options(), "steps": self.steps, "rule": self.rule}

    def relevance(self, batch: Batch) -> tuple[Tensor | None, Tensor | None]:
        if batch.images_as_features and not batch.texts_as_features:
            return None, self._text_rows_from_features(batch)
        batch.interactions, batch.completeness = self._interactions(batch)
        return batch.interactions.sum(dim=-2), batch.interactions.sum(dim=-1)

    def _text_rows_from_features(self, batch: Batch) -> Tensor:
        """Images given as features (prompt learning, the word term of guidance): each token's interaction with the
        whole image, sum_k u[k, s] (e_i - e_i(reference))_k, the image side's path integral taken exactly (the
        token marginal of the full matrix with a complete image side)."""
        adapter = batch.adapter
        alphas, weights = path_points(self.steps, self.rule)
        layer = self.keep_from(adapter, "text")
        head, reference = self._text_side(adapter, layer, batch)
        x_text = batch.text.layer_inputs[0]
        u = integrated_columns(head, x_text, reference, alphas, weights, self._per_call(adapter, batch, len(alphas))[1])
        pixels = torch.zeros(1, 3, *adapter.preprocess_config.size, device=adapter.device, dtype=adapter.dtype)
        image_reference = adapter.encode_image(pixels).features.to(u.dtype)
        image_features, text_features = batch.image.features.to(u.dtype), batch.text.features.to(u.dtype)
        columns = batch.columns.to(u.device)
        factor = self._score_unit(adapter, image_features, text_features, columns)
        return torch.einsum("bkdl,bd->bkl", u[columns], image_features - image_reference) * factor[..., None]

    def _interactions(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """(B, K, L, 1 + h*w) interactions of the explained pairs and (B, K, 2) their sum with the score difference
        it must equal."""
        if batch.texts_as_features:
            raise NtlbError("interactions need texts, not text features (so no image-image pairs): pass strings or "
                            "token ids, or use another explainer")
        adapter = batch.adapter
        alphas, weights = path_points(self.steps, self.rule)
        image_layer = self.keep_from(adapter, "image")
        text_layer = self.keep_from(adapter, "text")
        image_head, image_reference = self._image_side(adapter, image_layer, batch)
        text_head, text_reference = self._text_side(adapter, text_layer, batch)
        x_image, x_text = batch.image.layer_inputs[0], batch.text.layer_inputs[0]
        image_chunk, text_chunk = self._per_call(adapter, batch, len(alphas))
        v = integrated_columns(image_head, x_image, image_reference, alphas, weights, image_chunk)  # (B, D, N)
        u = integrated_columns(text_head, x_text, text_reference, alphas, weights, text_chunk)  # (T, D, L)
        dtype = v.dtype
        image_end = image_head(image_reference, torch.zeros(1, dtype=torch.long, device=x_image.device))  # (1, D)
        text_end = text_head(text_reference.expand_as(x_text), torch.arange(len(x_text), device=x_text.device))
        image_features = batch.image.features.to(dtype)
        text_features = batch.text.features.to(dtype)
        columns = batch.columns.to(v.device)
        factor = self._score_unit(adapter, image_features, text_features, columns)
        pairs = torch.einsum("bkdl,bdn->bkln", u[columns], v) * factor[..., None, None]
        expected = torch.einsum("bd,bkd->bk", image_features - image_end.to(dtype),
                                (text_features - text_end.to(dtype))[columns]) * factor
        return pairs, torch.stack([pairs.sum(dim=(-1, -2)), expected], dim=-1)

    def _score_unit(self, adapter: ClipAdapter, image_features: Tensor, text_features: Tensor,
                    columns: Tensor) -> Tensor:
        """(B, K) what a unit of e_t . e_i is worth in the explained score: 1 / (|e_i| |e_t|) for the cosine, times
        CLIP's logit scale for the scaled score."""
        factor = 1 / (image_features.norm(dim=-1)[:, None] * text_features.norm(dim=-1)[columns])
        if self.logit_mode == "scaled":
            factor = factor * adapter.logit_scale.to(image_features.dtype)
        return factor

    def _image_side(self, adapter: ClipAdapter, layer: int, batch: Batch):
        blocks = adapter.image_blocks[layer:]

        def head(tokens: Tensor, owners: Tensor) -> Tensor:
            out, _, _ = run_blocks(blocks, tokens)
            return adapter.pool_image(out)

        pixels = torch.zeros(1, 3, *adapter.preprocess_config.size, device=adapter.device, dtype=adapter.dtype)
        reference, _, _ = run_blocks(adapter.image_blocks[:layer], adapter.embed_image(pixels))
        return head, reference.detach()

    def _text_side(self, adapter: ClipAdapter, layer: int, batch: Batch):
        tokens = batch.tokens
        ids = tokens.ids.to(adapter.device)
        length = ids.shape[1]
        _, mask = adapter.text_inputs(ids, adapter.embed_tokens(ids))
        eot = tokens.eot.to(adapter.device)
        blocks = adapter.text_blocks[layer:]

        def head(states: Tensor, owners: Tensor) -> Tensor:
            own_mask = mask if mask is None or mask.ndim == 2 else mask[owners]
            out, _, _ = run_blocks(blocks, states, own_mask)
            return adapter.pool_text(out, eot[owners])

        reference_ids = torch.full((1, length), REFERENCE_FILLER, dtype=ids.dtype, device=ids.device)
        sot = getattr(adapter.tokenizer, "sot_id", None)
        end = 2 if sot is not None else 1
        if sot is not None:
            reference_ids[0, 0] = sot
        reference_ids[0, min(end, length - 1)] = getattr(adapter.tokenizer, "eot_id", None) or adapter.tokenizer.eos_id
        states, reference_mask = adapter.text_inputs(reference_ids, adapter.embed_tokens(reference_ids))
        reference, _, _ = run_blocks(adapter.text_blocks[:layer], states.to(adapter.dtype), reference_mask)
        return head, reference.detach()

    def _per_call(self, adapter: ClipAdapter, batch: Batch, steps: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(inputs, positions) per batched Jacobian-vector call for the image and the text side: everything at once
        (chunk_size=None), a fixed number of positions, or (auto) as many as an estimate of one call's transient
        memory (primal and tangent activations of one block) allows within the budget."""
        sides = [batch.text.layer_inputs[0] if batch.images_as_features else batch.image.layer_inputs[0],
                 batch.text.layer_inputs[0]]
        heads = [adapter.image_blocks[-1].heads, adapter.text_blocks[-1].heads]
        if self.chunk_size is None:
            return tuple((len(x), x.shape[1]) for x in sides)
        if isinstance(self.chunk_size, int):
            return tuple((len(x), self.chunk_size) for x in sides)
        budget = memory_budget(self.max_memory, adapter.device)
        element = torch.finfo(adapter.dtype).bits // 8
        plan = []
        for x, count in zip(sides, heads):
            length, width = x.shape[1], x.shape[2]
            unit = 2 * steps * length * (16 * width + count * length) * element  # one input, one position
            units = max(1, budget // unit)
            positions = min(length, units)
            plan.append((max(1, min(len(x), units // positions)), positions))
        return tuple(plan)
