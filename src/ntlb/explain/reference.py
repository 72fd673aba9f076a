"""The reference algorithm as released: one pair at a time, written straight from the formula.

The image is re-encoded for every text, every text is encoded at full context length, every layer's
attention is kept, one gradient call is made per layer, and the full N x N relevance matrix is built.
It is the slow path the fast explainer is tested against and benchmarked against; it is not for use.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..models.adapter import ClipAdapter
from ..models.tokenizer import TokenizedTexts
from .relevance import clip_scores


def _relevance_matrix(score: Tensor, attentions: list[Tensor], start: int, create_graph: bool) -> Tensor:
    n = attentions[0].shape[-1]
    dtype = torch.promote_types(attentions[0].dtype, torch.float32)
    r = torch.eye(n, dtype=dtype, device=score.device)
    for layer, attention in enumerate(attentions):
        if layer < start:
            continue
        grad = torch.autograd.grad(score, [attention], retain_graph=True, create_graph=create_graph)[0]
        cam = (grad[0].to(dtype) * attention[0].to(dtype)).clamp(min=0).mean(dim=0)
        r = r + cam @ r
    return r


def reference_relevance(
    adapter: ClipAdapter,
    pixels: Tensor,
    tokens: TokenizedTexts,
    start_layer_image: int = 0,
    start_layer_text: int = 0,
    logit_mode: str = "scaled",
    create_graph: bool = False,
) -> tuple[Tensor | None, Tensor, Tensor]:
    """(image (B, T, N-1) or None for ResNet towers, text (B, T, L), logits (B, T)) computed pair by pair.

    With gradients enabled the outputs keep their graph, so gradients through them can be compared with the
    fast path's; under torch.no_grad() each pair's results are detached as soon as they are computed.
    """
    b_count, t_count = pixels.shape[0], tokens.ids.shape[0]
    image_rows, text_rows, logits = [], [], []
    keep = torch.is_grad_enabled()
    done = (lambda x: x) if keep else (lambda x: x.detach())
    with torch.enable_grad():
        for b in range(b_count):
            for t in range(t_count):
                image = adapter.encode_image(pixels[b : b + 1], keep_from=0)
                text = adapter.encode_text(tokens.ids[t : t + 1], tokens.eot[t : t + 1], keep_from=0)
                score = clip_scores(image.features, text.features, adapter.logit_scale, logit_mode,
                                    adapter.logit_bias)[0, 0]
                if image.attentions:
                    r_image = _relevance_matrix(score, image.attentions, start_layer_image, create_graph)
                    if image.pool_attention is None:
                        image_rows.append(done(r_image[0, 1:]))
                    else:  # read at the pooling head's query: its gradient-weighted attention times R
                        grad = torch.autograd.grad(score, [image.pool_attention], retain_graph=True,
                                                   create_graph=create_graph)[0]
                        cam = (grad[0].to(r_image.dtype) * image.pool_attention[0].to(r_image.dtype))
                        row = cam.clamp(min=0).mean(dim=0)[0] @ r_image
                        image_rows.append(done(row[-adapter.grid_size[0] * adapter.grid_size[1]:]))
                r_text = _relevance_matrix(score, text.attentions, start_layer_text, create_graph)
                position = int(adapter.text_pool_positions(tokens.eot[t : t + 1], tokens.ids.shape[1])[0])
                text_rows.append(done(r_text[position, : tokens.ids.shape[1]]))
                logits.append(done(score))
    image_out = torch.stack(image_rows).reshape(b_count, t_count, -1) if image_rows else None
    text_out = torch.stack(text_rows).reshape(b_count, t_count, -1)
    return image_out, text_out, torch.stack(logits).reshape(b_count, t_count)
