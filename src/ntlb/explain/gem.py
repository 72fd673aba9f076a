"""GEM, Grounding Everything (Bousselham et al., CVPR 2024): training-free maps from self-self attention.

Beside the last blocks of the ViT runs a second path that adds, per block, only an attention output whose
weights come from the similarity of the queries with the queries, keys with keys and values with values
(each L2-normalised, refined `iterations` times by attending to itself, temperature = the mean token norm of
ln_1(x) / sqrt(head width) unless given), applied to the values and averaged over the three. Every block reads
ln_1 of the original path, whose CLS token still gives CLIP's own features and scores. The map of a text is the
cosine of each new patch token (through the final norm and projection) with the text, min-max scaled per pair
as in the released code, which runs the path over the last 6 blocks and 1 iteration. Differentiable; images only.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..errors import NtlbError
from ..models.adapter import ClipAdapter, Encoded
from ..models.blocks import BlockView, attention_block, run_blocks, split_heads
from ..models.features import accumulation_dtype
from .base import Batch, Explainer
from .normalize import minmax
from .registry import register


def self_self_attention(block: BlockView, x: Tensor, iterations: int = 1, temperature: float | None = None) -> Tensor:
    """The GEM path's residual for one block: out(mean over q, k, v of softmax(t * s s^T) V), s refined."""
    b, n, d = x.shape
    normed = block.ln_1(x)
    q, k, v = (split_heads(t, block.heads) for t in block.qkv(normed))
    if temperature is None:
        inverse = normed.norm(dim=-1).mean(dim=-1)[:, None, None, None] * q.shape[-1] ** -0.5  # (B, 1, 1, 1)
    else:
        inverse = temperature
    mixed = 0
    for states in (v, k, q):
        for _ in range(iterations):
            states = F.normalize(states, dim=-1)
            states = ((states @ states.transpose(-1, -2)) * inverse).softmax(dim=-1) @ states
        states = F.normalize(states, dim=-1)
        mixed = mixed + ((states @ states.transpose(-1, -2)) * inverse).softmax(dim=-1) @ v
    return block.ls_1(block.out((mixed / 3).transpose(1, 2).reshape(b, n, d)))


def gem_tokens(adapter: ClipAdapter, pixels: Tensor, layers: int, iterations: int = 1,
               temperature: float | None = None) -> tuple[Tensor, Tensor]:
    """(image features (B, D) of the original path, projected tokens (B, N, D) of the GEM path)."""
    blocks = adapter.image_blocks
    start = len(blocks) - layers
    x, _, _ = run_blocks(blocks[:start], adapter.embed_image(pixels.to(adapter.device, adapter.dtype)))
    new = x
    for block in blocks[start:]:
        new = new + self_self_attention(block, x, iterations, temperature)
        x, _ = attention_block(block, x, None, False)
    return adapter.pool_image(x), adapter.project_image_tokens(new)


@register("gem")
class Gem(Explainer):
    """Image maps from GEM's self-self attention path over the last `gem_layers` blocks; no text relevance."""

    gives_text_relevance = False

    def __init__(self, gem_layers: int = 6, iterations: int = 1, temperature: float | None = None, **options):
        super().__init__(**options)
        if gem_layers < 1 or iterations < 0:
            raise NtlbError(f"gem_layers={gem_layers}, iterations={iterations}: use >= 1 block and >= 0 iterations")
        self.gem_layers, self.iterations, self.temperature = gem_layers, iterations, temperature

    def options(self) -> dict:
        return {"gem_layers": self.gem_layers, "iterations": self.iterations, "temperature": self.temperature,
                "logit_mode": self.logit_mode}

    def check(self, adapter: ClipAdapter) -> None:
        if not adapter.has_patch_attention:
            raise NtlbError("gem needs a ViT image tower: use method='gradcam' for convolutional towers")

    def keep_from(self, adapter: ClipAdapter, tower: str) -> int | None:
        return None

    def encode_images(self, adapter: ClipAdapter, pixels: Tensor) -> Encoded:
        layers = min(self.gem_layers, len(adapter.image_blocks))
        features, projected = gem_tokens(adapter, pixels, layers, self.iterations, self.temperature)
        return Encoded(features, tokens=projected)

    def relevance(self, batch: Batch) -> tuple[Tensor | None, Tensor | None]:
        if batch.images_as_features:
            return None, None
        projected = batch.image.tokens
        dtype = accumulation_dtype(projected.dtype)
        patches = F.normalize(projected[:, 1:].to(dtype), dim=-1)
        maps = (patches @ F.normalize(batch.text.features.to(dtype), dim=-1).T).transpose(1, 2)  # (B, T, P)
        return batch.explained(minmax(maps, dims=(-1,))), None
