"""The one interface every explainer talks to, whatever library the CLIP came from.

An adapter describes a CLIP's two towers (embedding, transformer blocks, pooling) through the model's own
modules, so `encode_image` / `encode_text` reproduce the library's forward exactly while keeping the
attention probabilities of the layers an explainer asks for.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import NtlbError
from .blocks import BlockView, causal_mask, run_blocks
from .tokenizer import ClipTokenizer


@dataclass
class Encoded:
    """Features (n, D), attention probabilities of the kept layers, the tokens after the last block, and for
    convolutional towers the output of the stage an explainer captured (n, C, h, w)."""

    features: Tensor
    attentions: list[Tensor] = field(default_factory=list)
    keep_from: int | None = None
    tokens: Tensor | None = None
    activation: Tensor | None = None
    layer_inputs: list[Tensor] = field(default_factory=list)  # the tokens entering each kept layer
    pool_attention: Tensor | None = None  # (n, heads, 1, N): an attention-pooling head's query over the tokens


@dataclass(frozen=True)
class PreprocessConfig:
    """What the image pipeline does: needed to put a patch map back on the original picture."""

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_mode: str = "shortest"
    interpolation: str = "bicubic"


def view_box(image_size: tuple[int, int], config: PreprocessConfig) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the original image that the model's input shows (its resize and crop)."""
    width, height = image_size
    out_h, out_w = config.size
    if config.resize_mode == "squash":
        return 0.0, 0.0, float(width), float(height)
    if config.resize_mode == "longest":  # resize the long side, then pad
        scale = min(out_w / width, out_h / height)
    else:  # "shortest": resize the short side, then centre-crop
        scale = max(out_w / width, out_h / height)
    view_w, view_h = out_w / scale, out_h / scale
    left, top = (width - view_w) / 2, (height - view_h) / 2
    return left, top, left + view_w, top + view_h


def interpolate_positions(positions: Tensor, grid: tuple[int, int], new_grid: tuple[int, int],
                          antialias: bool = True) -> Tensor:
    """CLS + patch position embeddings (1 + h*w, D) for another patch grid: bicubic over the grid, CLS kept, done on
    the fly so the user's model is untouched. antialias=True is open_clip's `resize_pos_embed` of a checkpoint;
    False is transformers' `interpolate_pos_encoding` (PyTorch's two bicubic kernels differ)."""
    if tuple(grid) == tuple(new_grid):
        return positions
    width = positions.shape[-1]
    patches = positions[1:].reshape(1, grid[0], grid[1], width).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=tuple(new_grid), mode="bicubic", antialias=antialias, align_corners=False)
    return torch.cat([positions[:1], patches.permute(0, 2, 3, 1).reshape(-1, width)])


def image_size_for(size: int | tuple[int, int], patch: tuple[int, int], tower: str) -> tuple[int, int]:
    """The input size a ViT tower is run at instead of its training size; one-line errors for other towers and
    sizes that are not whole patches."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tower != "ViT":
        raise NtlbError(f"another input size needs a ViT image tower (its position embeddings are interpolated); "
                        f"this one is {tower}: leave the size out")
    if size[0] % patch[0] or size[1] % patch[1] or min(size) < max(patch):
        raise NtlbError(f"image size {size} is not a whole number of {patch[0]}x{patch[1]} patches: use a multiple "
                        f"of {patch[0]}")
    return size


class ClipAdapter(ABC):
    """A CLIP model seen the same way for open_clip and Hugging Face: towers, tokenizer, preprocessing."""

    model: nn.Module
    tokenizer: ClipTokenizer
    preprocess: Callable[[Any], Tensor]
    preprocess_config: PreprocessConfig
    name: str = "clip"

    # ---- image tower -------------------------------------------------------------------------------
    @property
    @abstractmethod
    def has_patch_attention(self) -> bool:
        """True for ViT image towers; False for ResNet towers (no patch attention to explain)."""

    @property
    @abstractmethod
    def image_blocks(self) -> list[BlockView]:
        """The image transformer's blocks (empty for a ResNet tower)."""

    @property
    @abstractmethod
    def grid_size(self) -> tuple[int, int]:
        """(h, w) of the patch grid."""

    @abstractmethod
    def embed_image(self, pixels: Tensor) -> Tensor:
        """Pixels (B, 3, H, W) -> tokens (B, 1 + h*w, width) entering the first block."""

    @abstractmethod
    def pool_image(self, tokens: Tensor) -> Tensor:
        """Tokens after the last block -> image features (B, D)."""

    @abstractmethod
    def project_image_tokens(self, tokens: Tensor) -> Tensor:
        """Every token after the last block (B, N, width) through the final norm and projection -> (B, N, D)."""

    @property
    def pools_image_by_attention(self) -> bool:
        """True when the image feature is read by an attention-pooling head (SigLIP's MAP head, CoCa's attentional
        pooler) instead of at a class token."""
        return False

    def pool_image_attention(self, tokens: Tensor, keep: bool) -> tuple[Tensor, Tensor | None]:
        """Image features and, for towers pooled by attention and with `keep`, the pooling head's probabilities of
        the query the feature is read from (B, heads, 1, N)."""
        return self.pool_image(tokens), None

    def image_head(self) -> tuple[nn.LayerNorm, Callable[[Tensor], Tensor]] | None:
        """(final layer norm, projection) when the image feature is proj(norm(CLS token)); None otherwise."""
        return None

    def final_norm_and_projection(self, tower: str) -> tuple[nn.Module, Tensor] | None:
        """(final layer norm, projection as an (out, in) weight) when the tower's feature is that projection of
        the normed CLS (image) or EOT (text) token; None otherwise. For rules that need the weights (LRP)."""
        return None

    def encode_resnet_image(self, pixels: Tensor) -> Tensor:
        """Features of a tower without patch attention (ResNet, ConvNeXt, ...): the library's own forward."""
        raise NotImplementedError

    def last_conv_stage(self) -> nn.Module | None:
        """The last convolutional stage of a convolutional tower (what Grad-CAM reads); None for ViT towers and
        for towers ntlb cannot map."""
        return None

    @property
    def image_tower(self) -> str:
        """What the image tower is, in words, for notes and errors."""
        return "ViT" if self.has_patch_attention else "convolutional"

    # ---- text tower --------------------------------------------------------------------------------
    @property
    @abstractmethod
    def text_blocks(self) -> list[BlockView]:
        """The text transformer's blocks."""

    @abstractmethod
    def embed_tokens(self, ids: Tensor) -> Tensor:
        """Token ids (T, L) -> token embeddings (T, L, width), before positions are added."""

    @abstractmethod
    def add_positions(self, embeddings: Tensor) -> Tensor:
        """Token embeddings (T, L, width) -> with positional embeddings for the first L positions."""

    @abstractmethod
    def pool_text(self, tokens: Tensor, eot: Tensor) -> Tensor:
        """Tokens after the last block (T, L, width) and EOT positions -> text features (T, D)."""

    def text_inputs(self, ids: Tensor, embeddings: Tensor) -> tuple[Tensor, Tensor | None]:
        """(tokens entering the first text block, additive attention mask): positions added and CLIP's causal
        mask by default; towers that see every position, mask padding or append a class token say so."""
        x = self.add_positions(embeddings)
        return x, causal_mask(x.shape[1], x.dtype, x.device)

    def text_pool_positions(self, eot: Tensor, length: int) -> Tensor:
        """The position each text's feature is read from (its EOT; the appended class token for CoCa)."""
        return eot

    @property
    @abstractmethod
    def logit_scale(self) -> Tensor:
        """s = exp(logit_scale), the temperature of CLIP's scores."""

    @property
    def logit_bias(self) -> Tensor | None:
        """b of SigLIP's score sigmoid(s * cos + b); None for CLIP."""
        return None

    # ---- shared forward ---------------------------------------------------------------------------
    def normalize(self, images: Tensor) -> Tensor:
        """Images (B, 3, H, W) in [0, 1] -> model input: resized to the input size (bilinear) and normalised.
        Differentiable, for generators whose pictures CLIP scores."""
        c = self.preprocess_config
        if tuple(images.shape[-2:]) != c.size:
            images = F.interpolate(images, size=c.size, mode="bilinear", align_corners=False)
        mean = torch.tensor(c.mean, device=images.device, dtype=images.dtype)[:, None, None]
        std = torch.tensor(c.std, device=images.device, dtype=images.dtype)[:, None, None]
        return (images - mean) / std

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def context_length(self) -> int:
        return self.tokenizer.context_length

    def encode_image(self, pixels: Tensor, keep_from: int | None = None) -> Encoded:
        """Image features; attention probabilities of layers >= keep_from as live graph tensors."""
        pixels = pixels.to(device=self.device, dtype=self.dtype)
        if not self.has_patch_attention:
            return Encoded(self.encode_resnet_image(pixels))
        tokens, attentions, inputs = run_blocks(self.image_blocks, self.embed_image(pixels), None, keep_from)
        features, pool = self.pool_image_attention(tokens, keep_from is not None)
        return Encoded(features, attentions, keep_from, tokens, layer_inputs=inputs, pool_attention=pool)

    def encode_text(
        self, ids: Tensor, eot: Tensor, keep_from: int | None = None, embeddings: Tensor | None = None
    ) -> Encoded:
        """Text features of ids (T, L); `embeddings` (T, L, width) replaces the token lookup (prompt learning)."""
        ids = ids.to(self.device)
        if embeddings is None:
            embeddings = self.embed_tokens(ids)
        x, mask = self.text_inputs(ids, embeddings.to(self.dtype))
        tokens, attentions, inputs = run_blocks(self.text_blocks, x, mask, keep_from)
        return Encoded(self.pool_text(tokens, eot.to(self.device)), attentions, keep_from, tokens,
                       layer_inputs=inputs)

    def resolve_layer(self, start_layer: int, tower: str) -> int:
        """A start layer as a non-negative index; negative values count from the end (-1 = last layer)."""
        depth = len(self.image_blocks if tower == "image" else self.text_blocks)
        index = start_layer + depth if start_layer < 0 else start_layer
        if not 0 <= index < depth:
            raise NtlbError(
                f"start layer {start_layer} of the {tower} tower (--start-layer-{tower}) is outside its {depth} "
                f"layers: use 0..{depth - 1}, or -1..-{depth} to count from the last"
            )
        return index
