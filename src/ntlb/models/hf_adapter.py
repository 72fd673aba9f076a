"""Adapter for a Hugging Face transformers `CLIPModel` (ViT towers, CLIP's BPE vocabulary)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.transform import image_transform
from torch import Tensor, nn

from ..errors import NtlbError
from .adapter import ClipAdapter, PreprocessConfig, image_size_for, interpolate_positions
from .blocks import BlockView, BlockWeights
from .tokenizer import ClipTokenizer


def _block_view(layer: nn.Module) -> BlockView:
    attn = layer.self_attn

    def qkv(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)

    def weights() -> BlockWeights:
        parts = (attn.q_proj, attn.k_proj, attn.v_proj)
        biases = [p.bias for p in parts]
        mlp = layer.mlp
        return BlockWeights(
            qkv=(torch.cat([p.weight for p in parts]), None if any(b is None for b in biases) else torch.cat(biases)),
            out=(attn.out_proj.weight, attn.out_proj.bias), fc=(mlp.fc1.weight, mlp.fc1.bias),
            activation=mlp.activation_fn, fc_out=(mlp.fc2.weight, mlp.fc2.bias))

    return BlockView(ln_1=layer.layer_norm1, qkv=qkv, out=attn.out_proj, ln_2=layer.layer_norm2,
                     mlp=layer.mlp, heads=attn.num_heads, weights=weights)


def _read_preprocess(directory: str | Path | None, size: tuple[int, int], default=None,
                     resize_mode: str = "shortest") -> PreprocessConfig:
    """The image mean and std of a saved model's preprocessor_config.json (default: CLIP's, or `default`)."""
    mean, std = default or (OPENAI_DATASET_MEAN, OPENAI_DATASET_STD)
    path = Path(directory) / "preprocessor_config.json" if directory else None
    if path is not None and path.is_file():
        cfg = json.loads(path.read_text())
        mean = tuple(cfg.get("image_mean", mean))
        std = tuple(cfg.get("image_std", std))
    return PreprocessConfig(size=tuple(size), mean=tuple(mean), std=tuple(std), resize_mode=resize_mode)


class HFTowers(ClipAdapter):
    """What transformers' CLIPModel and SiglipModel share: encoder layers of the same shape, a patch grid from the
    vision config, token and position embeddings of the text, the temperature."""

    def _read_towers(self, model: nn.Module, name: str, directory: str | Path | None,
                     image_size: int | tuple[int, int] | None, preprocess_default=None,
                     resize_mode: str = "shortest") -> None:
        self.model, self.name = model, name
        self.vision, self.text = model.vision_model, model.text_model
        self._image_blocks = [_block_view(layer) for layer in self.vision.encoder.layers]
        self._text_blocks = [_block_view(layer) for layer in self.text.encoder.layers]
        vc = model.config.vision_config
        self._trained_grid = (vc.image_size // vc.patch_size, vc.image_size // vc.patch_size)
        size = (vc.image_size, vc.image_size) if image_size is None else \
            image_size_for(image_size, (vc.patch_size, vc.patch_size), "ViT")
        self._grid = (size[0] // vc.patch_size, size[1] // vc.patch_size)
        self.preprocess_config = _read_preprocess(directory, size, preprocess_default, resize_mode)

    @property
    def has_patch_attention(self) -> bool:
        return True

    @property
    def image_blocks(self) -> list[BlockView]:
        return self._image_blocks

    @property
    def grid_size(self) -> tuple[int, int]:
        return self._grid

    def _patches(self, pixels: Tensor) -> Tensor:
        """Patch embeddings (B, h*w, width), after checking the input size."""
        if tuple(pixels.shape[-2:]) != self.preprocess_config.size:
            raise NtlbError(
                f"images are {tuple(pixels.shape[-2:])} but the model takes {self.preprocess_config.size}: "
                "pass PIL images or paths and ntlb preprocesses them"
            )
        return self.vision.embeddings.patch_embedding(pixels).flatten(2).transpose(1, 2)

    @property
    def text_blocks(self) -> list[BlockView]:
        return self._text_blocks

    def embed_tokens(self, ids: Tensor) -> Tensor:
        return self.text.embeddings.token_embedding(ids)

    def add_positions(self, embeddings: Tensor) -> Tensor:
        positions = self.text.embeddings.position_embedding.weight[: embeddings.shape[1]]
        return embeddings + positions.to(embeddings.dtype)

    @property
    def logit_scale(self) -> Tensor:
        return self.model.logit_scale.exp()


class HFClipAdapter(HFTowers):
    """Wraps a transformers CLIPModel without changing it."""

    def __init__(self, model: nn.Module, name: str = "hf", tokenizer: ClipTokenizer | None = None,
                 preprocess=None, directory: str | Path | None = None,
                 image_size: int | tuple[int, int] | None = None):
        self._read_towers(model, name, directory, image_size)
        config = model.config
        self.tokenizer = tokenizer or ClipTokenizer(context_length=config.text_config.max_position_embeddings)
        if config.text_config.vocab_size != self.tokenizer.vocab_size:
            raise NtlbError(
                f"the model's vocabulary has {config.text_config.vocab_size} tokens but CLIP's tokenizer has "
                f"{self.tokenizer.vocab_size}: ntlb needs CLIP's BPE vocabulary"
            )
        c = self.preprocess_config
        self.preprocess = preprocess or image_transform(c.size, is_train=False, mean=c.mean, std=c.std)

    def embed_image(self, pixels: Tensor) -> Tensor:
        x = self._patches(pixels)
        emb = self.vision.embeddings
        cls = emb.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        positions = interpolate_positions(emb.position_embedding.weight, self._trained_grid, self._grid,
                                          antialias=False)  # as transformers' interpolate_pos_encoding
        x = torch.cat([cls, x], dim=1) + positions.to(x.dtype)
        return self.vision.pre_layrnorm(x)

    def pool_image(self, tokens: Tensor) -> Tensor:
        return self.model.visual_projection(self.vision.post_layernorm(tokens[:, 0]))

    def project_image_tokens(self, tokens: Tensor) -> Tensor:
        return self.model.visual_projection(self.vision.post_layernorm(tokens))

    def image_head(self):
        return self.vision.post_layernorm, self.model.visual_projection

    def final_norm_and_projection(self, tower: str) -> tuple[nn.Module, Tensor] | None:
        if tower == "text":
            return self.text.final_layer_norm, self.model.text_projection.weight
        return self.vision.post_layernorm, self.model.visual_projection.weight

    def pool_text(self, tokens: Tensor, eot: Tensor) -> Tensor:
        tokens = self.text.final_layer_norm(tokens)
        pooled = tokens[torch.arange(tokens.shape[0], device=tokens.device), eot]
        return self.model.text_projection(pooled)
