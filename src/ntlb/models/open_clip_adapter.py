"""Adapter for open_clip's CLIP and CustomTextCLIP (ViT or ResNet image tower, transformer text tower)."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.transform import image_transform
from torch import Tensor, nn

from ..errors import NtlbError
from .adapter import ClipAdapter, PreprocessConfig, image_size_for, interpolate_positions
from .blocks import BlockView, BlockWeights, multihead_pool
from .piece_tokenizer import IdsOnlyTokenizer, PieceTokenizer, piece_tokenizer_of
from .timm_towers import TimmTower, is_timm_transformer
from .tokenizer import CLIP_VOCABULARY, ClipTokenizer


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

    def __init__(self, model: nn.Module, name: str = "open_clip",
                 tokenizer: ClipTokenizer | PieceTokenizer | None = None, preprocess=None,
                 image_size: int | tuple[int, int] | None = None):
        self.model = model
        self.name = name
        self.visual = model.visual
        self.text = getattr(model, "text", model)  # CustomTextCLIP keeps its text tower in .text
        if not hasattr(self.text, "token_embedding"):
            raise NtlbError(
                f"{type(model).__name__} has a non-CLIP text tower (e.g. a Hugging Face text encoder): "
                "ntlb explains CLIP-style transformer text towers"
            )
        self._cls_text = getattr(self.text, "cls_emb", None) is not None  # CoCa: a class token appended, read last
        self._causal = getattr(self.text, "attn_mask", None) is not None
        self._pad_mask = bool(getattr(self.text, "use_pad_mask", False))
        pool = getattr(self.text, "text_pool_type", getattr(self.text, "pool_type", "argmax"))
        if pool not in ("argmax", "last", "eos") and not self._cls_text:
            raise NtlbError(f"text towers pooled at '{pool}' are not supported yet: ntlb reads the end-of-text token "
                            "('argmax', 'eos') or the last position ('last'): see `ntlb models`")
        self._text_pool = "last" if self._cls_text else pool
        self._is_vit = hasattr(self.visual, "conv1") and hasattr(self.visual, "class_embedding")
        self._attn_pool = getattr(self.visual, "attn_pool", None) if self._is_vit else None
        if self._attn_pool is not None and getattr(self.visual, "attn_pool_contrastive", None) is not None:
            raise NtlbError("image towers with two attentional poolers ('parallel' / 'cascade' CoCa) are not "
                            "supported yet: ntlb reads open_clip's original CoCa pooler")
        self._timm = TimmTower(self.visual) if is_timm_transformer(self.visual) else None
        if self._is_vit:
            self._image_blocks = [_block_view(b) for b in self.visual.transformer.resblocks]
        else:
            self._image_blocks = self._timm.blocks if self._timm is not None else []
        self._text_blocks = [_block_view(b) for b in self.text.transformer.resblocks]
        context = int(getattr(self.text, "context_length", 77))
        self.tokenizer = self._tokenizer(tokenizer, context)
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

    @property
    def _truncatable(self) -> bool:
        """Texts may be cut after their last EOT: causal mask, no padding mask, read at the EOT."""
        return self._causal and not self._pad_mask and not self._cls_text and self._text_pool == "argmax"

    def _tokenizer(self, tokenizer, context: int):
        vocab = self.text.token_embedding.num_embeddings
        if tokenizer is None:
            if vocab != CLIP_VOCABULARY:  # texts as token ids only (strings refused in one line), words named by ids
                warnings.warn(f"this model's text tower has a {vocab}-token vocabulary, not CLIP's BPE, and no "
                              "tokenizer was given: texts must be token ids, and words are shown as ids (#17); pass "
                              "its tokenizer (load_model(..., tokenizer=DIR), or wrap(model, "
                              "tokenizer=open_clip.get_tokenizer(name))) for strings and words", stacklevel=3)
                return IdsOnlyTokenizer(context, vocab, self._text_pool)
            tokenizer = ClipTokenizer(context_length=context)
        if isinstance(tokenizer, ClipTokenizer):
            if tokenizer.vocab_size != vocab:
                raise NtlbError(f"the model's vocabulary has {vocab} tokens but CLIP's tokenizer has "
                                f"{tokenizer.vocab_size}: pass the model's own tokenizer")
            if not self._truncatable and not tokenizer.fixed_length:
                tokenizer = ClipTokenizer(tokenizer.context_length, bpe=tokenizer.bpe, fixed_length=True)
            return tokenizer
        if not isinstance(tokenizer, PieceTokenizer):
            tokenizer = piece_tokenizer_of(tokenizer, context, self._text_pool)
        if tokenizer.vocab_size > vocab:
            raise NtlbError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocabulary {vocab}: "
                            "pass the model's own tokenizer")
        return tokenizer

    # image tower
    @property
    def pools_image_by_attention(self) -> bool:
        return self._attn_pool is not None or (self._timm is not None and self._timm.attention_pooled)

    def pool_image_attention(self, tokens: Tensor, keep: bool) -> tuple[Tensor, Tensor | None]:
        if self._timm is not None:
            return self._timm.pool_with_attention(tokens, keep)
        if self._attn_pool is None:
            return self.pool_image(tokens), None
        v = self.visual  # open_clip's CoCa: the pooler's first query, ln_post, proj (the other queries feed captions)
        pooled, probs = multihead_pool(self._attn_pool.attn, self._attn_pool.ln_q(self._attn_pool.query[:1]),
                                       self._attn_pool.ln_k(tokens), keep)
        return _project(v.ln_post(pooled[:, 0]), v.proj), probs

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
        if self._timm is not None or self._attn_pool is not None:
            return self.pool_image_attention(tokens, False)[0]
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
        if (not self._is_vit or self._attn_pool is not None or v.pool_type != "tok"
                or getattr(v, "final_ln_after_pool", False)):
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
        trunk = getattr(self.visual, "trunk", None)
        kind = type(trunk).__name__
        if kind == "ConvNeXt":  # timm ConvNeXt: the last stage before pooling
            return trunk.stages[-1]
        if kind == "FastVit":  # timm FastViT (MobileCLIP-S): its last convolution, after the last stage, before pooling
            return trunk.final_conv
        return None

    @property
    def image_tower(self) -> str:
        if self._is_vit:
            return "ViT with attentional pooler (CoCa)" if self._attn_pool is not None else "ViT"
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

    def text_inputs(self, ids: Tensor, embeddings: Tensor) -> tuple[Tensor, Tensor | None]:
        """As open_clip's TextTransformer builds them: CoCa's class token appended, the causal mask if the tower
        has one, the padding / class-token mask if it uses one (per text, (T, heads, N, N))."""
        text = self.text
        x = embeddings
        if self._cls_text:
            x = torch.cat([x, text.cls_emb.to(x.dtype).expand(x.shape[0], 1, -1)], dim=1)
        length = x.shape[1]
        mask = text.attn_mask[:length, :length].to(x.dtype) if self._causal else None
        if self._pad_mask or self._cls_text:
            padding = text._build_additive_mask(ids, length, x.dtype)  # open_clip's own (B * heads, N, N) mask
            padding = padding.view(x.shape[0], -1, length, length)
            mask = padding if mask is None else mask + padding
        return x + text.positional_embedding[:length].to(x.dtype), mask

    def text_pool_positions(self, eot: Tensor, length: int) -> Tensor:
        return torch.full_like(eot, length) if self._cls_text else eot

    def pool_text(self, tokens: Tensor, eot: Tensor) -> Tensor:
        if self._cls_text:  # CoCa: the appended class token, normed after pooling
            pooled = self.text.ln_final(tokens[:, -1])
        else:
            tokens = self.text.ln_final(tokens)
            pooled = tokens[torch.arange(tokens.shape[0], device=tokens.device), eot]
        return _project(pooled, self.text.text_projection)

    @property
    def logit_scale(self) -> Tensor:
        return self.model.logit_scale.exp()

    @property
    def logit_bias(self) -> Tensor | None:
        return getattr(self.model, "logit_bias", None)
