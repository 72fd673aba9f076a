"""Adapter for a Hugging Face transformers `SiglipModel` (SigLIP; SigLIP2's fixed-resolution checkpoints load as
the same class): a ViT without class token pooled by a multi-head attention probe, a text tower read at its last
position (padding included, no mask), and the sigmoid score sigmoid(s * cos + b)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from open_clip.transform import image_transform
from torch import Tensor, nn

from ..errors import NtlbError
from .adapter import interpolate_positions
from .blocks import multihead_pool
from .hf_adapter import HFTowers
from .piece_tokenizer import IdsOnlyTokenizer, PieceTokenizer, piece_tokenizer_of


def _no_class_token(positions: Tensor, grid: tuple[int, int], new_grid: tuple[int, int]) -> Tensor:
    """Patch position embeddings (h*w, D) for another grid, as transformers' interpolate_pos_encoding does."""
    padded = torch.cat([positions[:1], positions])  # a stand-in first row: interpolate_positions keeps row 0
    return interpolate_positions(padded, grid, new_grid, antialias=False)[1:]


class HFSiglipAdapter(HFTowers):
    """Wraps a transformers SiglipModel without changing it."""

    def __init__(self, model: nn.Module, name: str = "hf-siglip", tokenizer=None, preprocess=None,
                 directory: str | Path | None = None, image_size: int | tuple[int, int] | None = None):
        self._read_towers(model, name, directory, image_size, preprocess_default=((0.5,) * 3, (0.5,) * 3),
                          resize_mode="squash")  # SiglipImageProcessor: resized to the size, mean = std = 0.5
        if not getattr(self.vision, "use_head", True) or getattr(self.vision, "head", None) is None:
            raise NtlbError("this SigLIP vision tower has no pooling head (vision_use_head=False): ntlb explains the "
                            "pooled feature SiglipModel scores")
        config = model.config
        context = config.text_config.max_position_embeddings
        if tokenizer is None and directory is not None and any(
                (Path(directory) / f).is_file() for f in ("tokenizer.json", "spiece.model", "tokenizer.model")):
            tokenizer = directory
        if tokenizer is None:  # texts as token ids only (strings are refused in one line), words named by their ids
            warnings.warn("SigLIP wrapped without its tokenizer: texts must be token ids, and words are shown as "
                          "ids (#17); pass tokenizer=DIR for strings and words", stacklevel=2)
            self.tokenizer: PieceTokenizer | IdsOnlyTokenizer = IdsOnlyTokenizer(context,
                                                                                config.text_config.vocab_size)
        else:
            self.tokenizer = piece_tokenizer_of(tokenizer, context, "last", clean="canonicalize")
        if self.tokenizer.vocab_size > config.text_config.vocab_size:
            raise NtlbError(f"the tokenizer has {self.tokenizer.vocab_size} tokens but the model's vocabulary "
                            f"{config.text_config.vocab_size}: pass the model's own tokenizer")
        c = self.preprocess_config
        self.preprocess = preprocess or image_transform(c.size, is_train=False, mean=c.mean, std=c.std,
                                                        resize_mode="squash", interpolation="bicubic")

    @property
    def pools_image_by_attention(self) -> bool:
        return True

    @property
    def image_tower(self) -> str:
        return "SigLIP ViT with attention-pooling head"

    def embed_image(self, pixels: Tensor) -> Tensor:
        x = self._patches(pixels)
        positions = _no_class_token(self.vision.embeddings.position_embedding.weight, self._trained_grid, self._grid)
        return x + positions.to(x.dtype)

    def pool_image_attention(self, tokens: Tensor, keep: bool) -> tuple[Tensor, Tensor | None]:
        head = self.vision.head  # SiglipMultiheadAttentionPoolingHead: probe attention, then a residual MLP
        x = self.vision.post_layernorm(tokens)
        pooled, probs = multihead_pool(head.attention, head.probe[0], x, keep)
        pooled = pooled + head.mlp(head.layernorm(pooled))
        return pooled[:, 0], probs

    def pool_image(self, tokens: Tensor) -> Tensor:
        return self.pool_image_attention(tokens, False)[0]

    def project_image_tokens(self, tokens: Tensor) -> Tensor:
        raise NtlbError("SigLIP has no per-token projection into the joint space (its image feature is the pooling "
                        "head's output): use chefer2021, attention, rollout, legrad or occlusion")

    def text_inputs(self, ids: Tensor, embeddings: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.add_positions(embeddings), None  # every position sees every other: no causal mask

    def pool_text(self, tokens: Tensor, eot: Tensor) -> Tensor:
        tokens = self.text.final_layer_norm(tokens)
        return self.text.head(tokens[torch.arange(tokens.shape[0], device=tokens.device), eot])

    @property
    def logit_bias(self) -> Tensor:
        return self.model.logit_bias.reshape(())
