"""Adapter for open_clip's CLIP and CustomTextCLIP (ViT or ResNet image tower, transformer text tower)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.transform import image_transform
from torch import Tensor, nn

from ..errors import NtlbError
from .adapter import ClipAdapter, PreprocessConfig, image_size_for, interpolate_positions
from .blocks import BlockView, BlockWeights
from .timm_towers import TimmTower, is_timm_transformer
from .tokenizer import ClipTokenizer


def _block_view(block: nn.Module) -> BlockView:
    attn = getattr(block, "attn", None)
    if not isinstance(attn, nn.MultiheadAttention) or hasattr(block, "ln_1_kv") or hasattr(block, "ln_attn"):
        raise NtlbError(
            f"unsupported open_clip block {type(block).__name__}: ntlb explains standard "
            "ResidualAttentionBlock towers (ViT-*, RN* text towers)"
        )

    def qkv(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)

    def weights() -> BlockWeights:
        mlp = block.mlp
        if not all(hasattr(mlp, name) for name in ("c_fc", "gelu", "c_proj")) or hasattr(mlp, "ln"):
            raise NtlbError(f"the MLP of {type(block).__name__} is not c_fc -> activation -> c_proj: LRP needs it")
        return BlockWeights(
            qkv=(attn.in_proj_weight, attn.in_proj_bias), out=(attn.out_proj.weight, attn.out_proj.bias),
            fc=(mlp.c_fc.weight, mlp.c_fc.bias), activation=mlp.gelu, fc_out=(mlp.c_proj.weight, mlp.c_proj.bias))

    return BlockView(
        ln_1=block.ln_1, qkv=qkv, out=attn.out_proj, ln_2=block.ln_2, mlp=block.mlp,
        heads=attn.num_heads, ls_1=block.ls_1, ls_2=block.ls_2, weights=weights,
        layer_scale=not isinstance(block.ls_1, nn.Identity) or not isinstance(block.ls_2, nn.Identity),
    )


def _projection_weight(projection: nn.Module | Tensor | None, width: int, like: Tensor) -> Tensor:
    """A projection as an (out, in) weight: x @ P for a parameter, the weight of a Linear, the identity for None."""
    if projection is None:
        return torch.eye(width, dtype=like.dtype, device=like.device)
    if isinstance(projection, nn.Linear) and projection.bias is None:
        return projection.weight
    if isinstance(projection, nn.Module):
        raise NtlbError(f"the projection {type(projection).__name__} is not a bias-free linear map: LRP needs one")
    return projection.T


def _project(x: Tensor, projection: nn.Module | Tensor | None) -> Tensor:
    if projection is None:
        return x
    if isinstance(projection, nn.Module):
        return projection(x)
    return x @ projection


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class OpenClipAdapter(ClipAdapter):
    """Wraps an open_clip model without changing it."""

    def __init__(self, model: nn.Module, name: str = "open_clip", tokenizer: ClipTokenizer | None = None,
                 preprocess=None, image_size: int | tuple[int, int] | None = None):
        self.model = model
        self.name = name
        self.visual = model.visual
        self.text = getattr(model, "text", model)  # CustomTextCLIP keeps its text tower in .text
        if not hasattr(self.text, "token_embedding"):
            raise NtlbError(
                f"{type(model).__name__} has a non-CLIP text tower (e.g. a Hugging Face text encoder): "
                "ntlb explains CLIP-style transformer text towers"
            )
        if getattr(self.text, "cls_emb", None) is not None:
            raise NtlbError("CoCa-style text towers (appended CLS token) are not supported: use a CLIP model")
        if getattr(self.text, "attn_mask", True) is None:
            raise NtlbError("text towers without a causal mask (e.g. MobileCLIP-S*) are not supported yet: use a "
                            "CLIP-style model (see `ntlb models`)")
        pool = getattr(self.text, "text_pool_type", getattr(self.text, "pool_type", "argmax"))
        if pool != "argmax":
            raise NtlbError(f"text towers pooled at '{pool}' (not at the end-of-text token) are not supported yet: "
                            "use a CLIP-style model (see `ntlb models`)")
        self._is_vit = hasattr(self.visual, "conv1") and hasattr(self.visual, "class_embedding")
        if self._is_vit and getattr(self.visual, "attn_pool", None) is not None:
            raise NtlbError("image towers with an attentional pooler (CoCa) are not supported: use a CLIP model")
        self._timm = TimmTower(self.visual) if is_timm_transformer(self.visual) else None
        if self._is_vit:
            self._image_blocks = [_block_view(b) for b in self.visual.transformer.resblocks]
        else:
            self._image_blocks = self._timm.blocks if self._timm is not None else []
        self._text_blocks = [_block_view(b) for b in self.text.transformer.resblocks]
        context = int(getattr(self.text, "context_length", 77))
        self.tokenizer = tokenizer or ClipTokenizer(context_length=context)
        vocab = self.text.token_embedding.num_embeddings
        if vocab != self.tokenizer.vocab_size:
            raise NtlbError(
                f"the model's vocabulary has {vocab} tokens but CLIP's tokenizer has "
                f"{self.tokenizer.vocab_size}: ntlb needs CLIP's BPE vocabulary"
            )
        cfg = dict(getattr(self.visual, "preprocess_cfg", {}) or {})
        size = self.visual.image_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        if image_size is not None:  # a ViT run at another resolution: position embeddings interpolated on the fly
            size = image_size_for(image_size, _pair(self.visual.conv1.kernel_size), self.image_tower)
        self.preprocess_config = PreprocessConfig(
            size=size,
            mean=tuple(cfg.get("mean", OPENAI_DATASET_MEAN)),
            std=tuple(cfg.get("std", OPENAI_DATASET_STD)),
            resize_mode=cfg.get("resize_mode", "shortest"),
            interpolation=cfg.get("interpolation", "bicubic"),
        )
        c = self.preprocess_config
        self.preprocess = preprocess or image_transform(
            c.size, is_train=False, mean=c.mean, std=c.std, resize_mode=c.resize_mode,
            interpolation=c.interpolation,
        )

    # image tower
    @property
    def has_patch_attention(self) -> bool:
        return self._is_vit or self._timm is not None

    @property
    def image_blocks(self) -> list[BlockView]:
        return self._image_blocks

    @property
    def grid_size(self) -> tuple[int, int]:
        h, w = self.preprocess_config.size
        if self._timm is not None:
            return self._timm.grid
        if self._is_vit:
            patch = _pair(self.visual.conv1.kernel_size)
            return (h // patch[0], w // patch[1])
        return (h // 32, w // 32)

    def embed_image(self, pixels: Tensor) -> Tensor:
        v = self.visual
        if tuple(pixels.shape[-2:]) != self.preprocess_config.size:
            raise NtlbError(
                f"images are {tuple(pixels.shape[-2:])} but the model takes {self.preprocess_config.size}: "
                "pass PIL images or paths and ntlb preprocesses them"
            )
        if self._timm is not None:
            return self._timm.embed(pixels)
        x = v.conv1(pixels).flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        positions = interpolate_positions(v.positional_embedding, _pair(v.grid_size), self.grid_size)
        x = torch.cat([cls, x], dim=1) + positions.to(x.dtype)
        return v.ln_pre(x)

    def pool_image(self, tokens: Tensor) -> Tensor:
        if self._timm is not None:
            return self._timm.pool(tokens)
        v = self.visual
        pool = (lambda t: t[:, 1:].mean(dim=1)) if v.pool_type == "avg" else (lambda t: t[:, 0])
        if getattr(v, "final_ln_after_pool", False):
            pooled = v.ln_post(pool(tokens))
        else:
            pooled = pool(v.ln_post(tokens))
        return _project(pooled, v.proj)

    def project_image_tokens(self, tokens: Tensor) -> Tensor:
        if self._timm is not None:
            return self._timm.project_tokens(tokens)
        return _project(self.visual.ln_post(tokens), self.visual.proj)

    def image_head(self):
        if self._timm is not None:
            return self._timm.head()
        v = self.visual
        if not self._is_vit or v.pool_type != "tok" or getattr(v, "final_ln_after_pool", False):
            return None
        return v.ln_post, (lambda x: _project(x, v.proj))

    def final_norm_and_projection(self, tower: str) -> tuple[nn.Module, Tensor] | None:
        if tower == "text":
            embedding = self.text.token_embedding.weight
            return self.text.ln_final, _projection_weight(self.text.text_projection, embedding.shape[-1], embedding)
        if self.image_head() is None or self._timm is not None:  # LRP's rules: open_clip's own ViT blocks only
            return None
        v = self.visual
        return v.ln_post, _projection_weight(v.proj, v.class_embedding.shape[-1], v.class_embedding)

    def encode_resnet_image(self, pixels: Tensor) -> Tensor:
        return self.visual(pixels)

    def last_conv_stage(self) -> nn.Module | None:
        if self._is_vit or self._timm is not None:
            return None
        if hasattr(self.visual, "layer4"):  # open_clip's ModifiedResNet
            return self.visual.layer4
        trunk = getattr(self.visual, "trunk", None)  # timm ConvNeXt: the last stage before pooling
        return trunk.stages[-1] if type(trunk).__name__ == "ConvNeXt" else None

    @property
    def image_tower(self) -> str:
        if self._is_vit:
            return "ViT"
        trunk = getattr(self.visual, "trunk", None)
        return "ResNet" if trunk is None else f"timm {type(trunk).__name__}"

    # text tower
    @property
    def text_blocks(self) -> list[BlockView]:
        return self._text_blocks

    def embed_tokens(self, ids: Tensor) -> Tensor:
        return self.text.token_embedding(ids)

    def add_positions(self, embeddings: Tensor) -> Tensor:
        return embeddings + self.text.positional_embedding[: embeddings.shape[1]].to(embeddings.dtype)

    def pool_text(self, tokens: Tensor, eot: Tensor) -> Tensor:
        tokens = self.text.ln_final(tokens)
        pooled = tokens[torch.arange(tokens.shape[0], device=tokens.device), eot]
        return _project(pooled, self.text.text_projection)

    @property
    def logit_scale(self) -> Tensor:
        return self.model.logit_scale.exp()
