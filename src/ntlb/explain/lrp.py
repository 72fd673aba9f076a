"""Transformer attribution of Chefer, Gur & Wolf (CVPR 2021): gradients times the LRP relevance of the attention.

LRP carries relevance from the score back through the tower with the rules of the authors' released code: linear
maps by the alpha=1, beta=0 rule (positive parts only, bias ignored); layer norms, the MLP activation and the
softmax pass relevance unchanged; a residual sum splits it in proportion to each branch's z-rule share (summed
per pair, rescaled so the two parts keep the total); the products A V and Q K^T split it by the z-rule and give
each factor half. CLIP's score is read as a classifier whose weights are the other tower's (normalised) feature,
with relevance 1 at the score. R_lrp(A_l) is the relevance that reaches layer l's attention probabilities; the map
is row CLS / EOT of prod_l (I + mean_heads max(dy/dA_l * R_lrp(A_l), 0)), as chefer2021 with A_l replaced.
All rules conserve the total relevance (1 per pair) down to the start layer's input, which the tests check.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import NtlbError
from ..models.adapter import ClipAdapter, Encoded
from ..models.blocks import BlockView, split_heads
from ..models.features import accumulation_dtype
from .base import Batch
from .gradient import GradientExplainer
from .registry import register
from .relevance import gradient_weighted, propagate_row

EPSILON = 1e-9  # the released code's stabiliser


def safe_divide(numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator / (denominator + 1e-9), and 0 where the denominator is 0 (as the released code)."""
    stable = denominator + EPSILON
    stable = torch.where(stable == 0, torch.full_like(stable, EPSILON), stable)
    return torch.where(denominator == 0, torch.zeros_like(numerator), numerator / stable)


def linear_relevance(x: Tensor, weight: Tensor, relevance: Tensor) -> Tensor:
    """alpha=1, beta=0 rule of y = x W^T: each output's relevance goes to the inputs in proportion to the positive
    contributions x+ W+ and x- W- (bias ignored). x (..., in), relevance (..., out) -> (..., in)."""
    px, nx = x.clamp(min=0), x.clamp(max=0)
    pw, nw = weight.clamp(min=0), weight.clamp(max=0)
    share = safe_divide(relevance, px @ pw.T + nx @ nw.T)
    return px * (share @ pw) + nx * (share @ nw)


def product_relevance(left: Tensor, right: Tensor, relevance: Tensor) -> tuple[Tensor, Tensor]:
    """z-rule of Z = left @ right, half to each factor: (R_left, R_right)."""
    share = safe_divide(relevance, left @ right)
    return left * (share @ right.transpose(-1, -2)) / 2, right * (left.transpose(-1, -2) @ share) / 2


def sum_relevance(first: Tensor, second: Tensor, relevance: Tensor) -> tuple[Tensor, Tensor]:
    """z-rule of first + second, then each part rescaled so that the two keep the total, in proportion to the
    absolute sums of their z-rule relevance (per pair: the last two dims are one pair's tokens and channels)."""
    share = safe_divide(relevance, first + second)
    parts = first * share, second * share
    sums = [p.sum(dim=(-2, -1), keepdim=True) for p in parts]
    total = relevance.sum(dim=(-2, -1), keepdim=True)
    weight = sums[0].abs() + sums[1].abs()
    return tuple(p * safe_divide(safe_divide(s.abs(), weight) * total, s) for p, s in zip(parts, sums))


def block_relevance(block: BlockView, x: Tensor, probs: Tensor, relevance: Tensor) -> tuple[Tensor, Tensor]:
    """One block backwards: relevance at its output (P, n, N, D), its input x (n, N, D) and kept attention
    probabilities (n, H, N, N) -> (relevance at its input, relevance at the attention probabilities)."""
    weights = block.weights()
    dtype = relevance.dtype
    w_qkv, b_qkv = weights.qkv
    normed = block.ln_1(x).to(dtype)
    q, k, v = (split_heads(t, block.heads) for t in F.linear(normed, w_qkv.to(dtype),
                                                              None if b_qkv is None else b_qkv.to(dtype)).chunk(3, -1))
    probs = probs.to(dtype)
    heads_out = probs @ v
    n, tokens, width = x.shape
    merged = heads_out.transpose(1, 2).reshape(n, tokens, width)
    attended = F.linear(merged, *(t if t is None else t.to(dtype) for t in weights.out))
    middle = x.to(dtype) + attended
    normed_2 = block.ln_2(middle.to(x.dtype)).to(dtype)
    hidden = weights.activation(F.linear(normed_2, *(t if t is None else t.to(dtype) for t in weights.fc)))
    mlp = F.linear(hidden, *(t if t is None else t.to(dtype) for t in weights.fc_out))

    to_middle, to_mlp = sum_relevance(middle, mlp, relevance)
    to_hidden = linear_relevance(hidden, weights.fc_out[0].to(dtype), to_mlp)
    to_middle = to_middle + linear_relevance(normed_2, weights.fc[0].to(dtype), to_hidden)
    to_input, to_attended = sum_relevance(x.to(dtype), attended, to_middle)
    to_merged = linear_relevance(merged, weights.out[0].to(dtype), to_attended)
    to_probs, to_v = product_relevance(probs, v, split_heads_batched(to_merged, block.heads))
    to_q, to_k_t = product_relevance(q, k.transpose(-1, -2), to_probs)
    to_qkv = torch.cat([merge_heads(t) for t in (to_q, to_k_t.transpose(-1, -2), to_v)], dim=-1)
    return to_input + linear_relevance(normed, w_qkv.to(dtype), to_qkv), to_probs


def split_heads_batched(x: Tensor, heads: int) -> Tensor:
    """(P, n, N, D) -> (P, n, H, N, D / H)."""
    *lead, tokens, width = x.shape
    return x.reshape(*lead, tokens, heads, width // heads).transpose(-3, -2)


def merge_heads(x: Tensor) -> Tensor:
    """(..., H, N, d) -> (..., N, H * d)."""
    *lead, heads, tokens, width = x.shape
    return x.transpose(-3, -2).reshape(*lead, tokens, heads * width)


def lrp_relevance(adapter: ClipAdapter, tower: str, encoded: Encoded, classifier: Tensor,
                  position: Tensor) -> tuple[list[Tensor], Tensor]:
    """LRP of the score <feature, classifier[p, i]> of every item i of the tower (n of them) for P classifier rows
    (P, n, E): (relevance at each kept layer's attention probabilities (P, n, H, N, N), first kept layer first;
    relevance at the first kept layer's input (P, n, N, D)). `position`: the pooled token (CLS 0, or EOT per text)."""
    head = adapter.final_norm_and_projection(tower)
    blocks = (adapter.image_blocks if tower == "image" else adapter.text_blocks)[encoded.keep_from:]
    if head is None or any(b.weights is None or b.layer_scale for b in blocks):
        raise NtlbError(f"lrp needs a {tower} tower of plain transformer blocks pooled at one token (no LayerScale): "
                        "use method='chefer2021'")
    norm, projection = head
    dtype = accumulation_dtype(encoded.tokens.dtype)
    tokens = encoded.tokens
    rows = torch.arange(tokens.shape[0], device=tokens.device)
    where = position.to(tokens.device).expand(tokens.shape[0])
    pooled = norm(tokens[rows, where]).to(dtype)  # (n, D)
    feature = pooled @ projection.to(dtype).T  # (n, E)
    classifier = classifier.to(dtype)
    px, nx, pw, nw = feature.clamp(min=0), feature.clamp(max=0), classifier.clamp(min=0), classifier.clamp(max=0)
    to_feature = safe_divide(px * pw + nx * nw, (px * pw + nx * nw).sum(-1, keepdim=True))  # one output, R = 1
    to_pooled = linear_relevance(pooled, projection.to(dtype), to_feature)  # (P, n, D)
    relevance = to_pooled[:, :, None, :] * F.one_hot(where, tokens.shape[1]).to(dtype)[None, :, :, None]
    cams = []
    for block, x, probs in reversed(list(zip(blocks, encoded.layer_inputs, encoded.attentions))):
        relevance, cam = block_relevance(block, x, probs, relevance)
        cams.append(cam)
    return cams[::-1], relevance


@register("lrp")
class Lrp(GradientExplainer):
    """R = prod_l (I + mean_heads max(dy/dA_l * R_lrp(A_l), 0)); image row CLS, text row EOT.

    Batched like chefer2021 (one gradient call per tower and chunk); the LRP pass runs once per explained pair,
    sharing the forward of each image and text. Differentiable (with create_graph for the gradients too)."""

    def check(self, adapter: ClipAdapter) -> None:
        if not adapter.has_patch_attention or adapter.final_norm_and_projection("image") is None:
            raise NtlbError("lrp needs a ViT image tower pooled at its CLS token: use method='gradcam' for "
                            "convolutional towers")

    def combine(self, batch: Batch, tower: str, tensors: list[Tensor], gradients: list[Tensor],
                targets: Tensor) -> Tensor:
        encoded = batch.image if tower == "image" else batch.text
        other = F.normalize((batch.text if tower == "image" else batch.image).features, dim=-1)
        equation = "kbt,te->kbe" if tower == "image" else "kbt,be->kte"
        classifier = torch.einsum(equation, targets.to(other.dtype), other)  # (K, n, E): each pair's other side
        cams, _ = lrp_relevance(batch.adapter, tower, encoded, classifier, batch.position(tower))
        abars = [gradient_weighted(cam, g) for cam, g in zip(cams, gradients)]
        return propagate_row(abars, batch.position(tower))
