"""A pre-norm transformer block seen through its parameters, and a forward pass that keeps attention.

open_clip and Hugging Face CLIP hide the attention probabilities inside fused kernels. Instead of editing
their source, an adapter describes each block with a `BlockView` (callables over the block's own modules)
and `run_blocks` re-runs the same arithmetic, materialising the softmax probabilities as live graph tensors
only for the layers that an explainer reads (exact speed-up 6: earlier layers use the fused kernel).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

QKV = Callable[[Tensor], "tuple[Tensor, Tensor, Tensor]"]


Linear = tuple[Tensor, "Tensor | None"]  # (weight (out, in), bias)


@dataclass(frozen=True)
class BlockWeights:
    """The block's linear maps as weights, for rules that need the weights themselves (LRP): qkv (3 x width in
    q, k, v order), the attention output, and the MLP's two layers around its activation."""

    qkv: Linear
    out: Linear
    fc: Linear
    activation: Callable[[Tensor], Tensor]
    fc_out: Linear


@dataclass(frozen=True)
class BlockView:
    """x -> x + ls_1(out(attn(ln_1(x)))) -> x + ls_2(mlp(ln_2(x))), described by the block's own modules."""

    ln_1: Callable[[Tensor], Tensor]
    qkv: QKV
    out: Callable[[Tensor], Tensor]
    ln_2: Callable[[Tensor], Tensor]
    mlp: Callable[[Tensor], Tensor]
    heads: int
    ls_1: Callable[[Tensor], Tensor] = lambda x: x
    ls_2: Callable[[Tensor], Tensor] = lambda x: x
    weights: Callable[[], BlockWeights] | None = None  # read when called (the model may have moved since)
    layer_scale: bool = False  # ls_1 / ls_2 scale the residual branches (LayerScale)


def split_heads(x: Tensor, heads: int) -> Tensor:
    b, n, d = x.shape
    return x.view(b, n, heads, d // heads).transpose(1, 2)


def kept_softmax(scores: Tensor) -> Tensor:
    """Attention probabilities an explainer differentiates against: a tensor that does not require grad (frozen
    model, no grad upstream) becomes a leaf that does, so d(score)/dA can always be taken."""
    probs = scores.softmax(dim=-1)
    return probs if probs.requires_grad else probs.detach().requires_grad_(True)


def pooling_attention(q: Tensor, k: Tensor, v: Tensor, keep_probs: bool) -> tuple[Tensor, Tensor | None]:
    """An attention-pooling head's step (q: (B, heads, Q, d) from its learned queries; k, v: (B, heads, N, d) from
    the tokens): the heads' outputs (B, heads, Q, d) and, with keep_probs, the probabilities (B, heads, Q, N)."""
    if not keep_probs:
        return F.scaled_dot_product_attention(q, k, v), None
    probs = kept_softmax((q * (q.shape[-1] ** -0.5)) @ k.transpose(-1, -2))
    return probs @ v, probs


def multihead_pool(attention: nn.MultiheadAttention, queries: Tensor, tokens: Tensor,
                   keep_probs: bool) -> tuple[Tensor, Tensor | None]:
    """A torch MultiheadAttention used as a pooling head (CoCa's attentional pooler, HF SigLIP's MAP head): learned
    queries (Q, d) over tokens (B, N, kdim), computed from the module's weights so the probabilities can be kept.
    Returns the head's output (B, Q, d) and, with keep_probs, its probabilities (B, heads, Q, N)."""
    b, heads = tokens.shape[0], attention.num_heads
    if attention._qkv_same_embed_dim:
        wq, wk, wv = attention.in_proj_weight.chunk(3)
    else:
        wq, wk, wv = attention.q_proj_weight, attention.k_proj_weight, attention.v_proj_weight
    bq, bk, bv = (None,) * 3 if attention.in_proj_bias is None else attention.in_proj_bias.chunk(3)
    q = F.linear(queries, wq, bq).expand(b, -1, -1)
    out, probs = pooling_attention(split_heads(q, heads), split_heads(F.linear(tokens, wk, bk), heads),
                                   split_heads(F.linear(tokens, wv, bv), heads), keep_probs)
    return attention.out_proj(out.transpose(1, 2).reshape(b, q.shape[1], -1)), probs


def attention_block(
    block: BlockView, x: Tensor, attn_mask: Tensor | None, keep_probs: bool
) -> tuple[Tensor, Tensor | None]:
    """One block's forward. With keep_probs, returns the (B, heads, N, N) probabilities used in the product.
    attn_mask: additive, (N, N) or per text (B, 1 or heads, N, N)."""
    b, n, d = x.shape
    q, k, v = (split_heads(t, block.heads) for t in block.qkv(block.ln_1(x)))
    if keep_probs:
        scores = (q * (q.shape[-1] ** -0.5)) @ k.transpose(-1, -2)
        if attn_mask is not None:
            scores = scores + attn_mask
        probs = kept_softmax(scores)
        heads_out = probs @ v
    else:
        probs = None
        heads_out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    x = x + block.ls_1(block.out(heads_out.transpose(1, 2).reshape(b, n, d)))
    x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return x, probs


def run_blocks(
    blocks: list[BlockView], x: Tensor, attn_mask: Tensor | None = None, keep_from: int | None = None
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Run the stack: (tokens after the last block, probabilities of the layers >= keep_from, the tokens entering
    each of those layers). None keeps none. The kept inputs are in the graph anyway: keeping them costs nothing."""
    kept, inputs = [], []
    for index, block in enumerate(blocks):
        keep = keep_from is not None and index >= keep_from
        if keep:
            inputs.append(x)
        x, probs = attention_block(block, x, attn_mask, keep)
        if keep:
            kept.append(probs)
    return x, kept, inputs


def causal_mask(length: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Additive mask that lets position i attend to positions <= i only (CLIP's text tower)."""
    mask = torch.full((length, length), float("-inf"), dtype=dtype, device=device)
    return mask.triu_(1)
