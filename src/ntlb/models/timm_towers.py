"""timm transformer image towers inside open_clip (EVA / EVA02, ViT from timm, MobileCLIP-B), seen through timm's
own blocks: each block becomes a `BlockView` whose q, k, v are computed as timm's attention computes them (fused
or separate projections, q/k bias, q/k norm, rotary position embeddings), so `run_blocks` can keep the attention
probabilities without editing timm. Pooled at the class token, as CLIP's ViTs are."""

from __future__ import annotations

from torch import Tensor, nn

from ..errors import NtlbError
from .blocks import BlockView, pooling_attention


def is_timm_transformer(visual: nn.Module) -> bool:
    """An open_clip TimmModel whose trunk is a timm ViT or EVA pooled at its class token or by a MAP head with one
    latent query (SigLIP), with blocks ntlb reads (other timm towers still give text relevance)."""
    trunk = getattr(visual, "trunk", None)
    if type(trunk).__name__ not in ("VisionTransformer", "Eva") or not hasattr(trunk, "blocks"):
        return False
    pool = getattr(trunk, "attn_pool", None)
    by_token = getattr(trunk, "cls_token", None) is not None and getattr(trunk, "global_pool", "token") == "token"
    by_attention = (type(pool).__name__ == "AttentionPoolLatent" and getattr(pool, "pos_embed", None) is None
                    and (pool.latent_len == 1 or pool.pool == "token"))
    return ((by_token and pool is None or by_attention) and not getattr(trunk, "rope_mixed", False)
            and all(type(b).__name__ in ("Block", "EvaBlock") and getattr(b.attn, "gate", None) is None
                    for b in trunk.blocks))


class TimmTower:
    """How ntlb reads a timm ViT / EVA trunk with open_clip's projection head on top."""

    def __init__(self, visual: nn.Module):
        if not is_timm_transformer(visual):
            raise NtlbError("ntlb reads timm ViT / EVA towers pooled at their class token or by a one-query MAP "
                            "head, with timm's Block or EvaBlock (no gated attention): see `ntlb models`")
        self.visual, self.trunk = visual, visual.trunk
        self.rope: Tensor | None = None  # the rotary embedding of the images being encoded (EVA)
        self.blocks = [self._block_view(block) for block in self.trunk.blocks]

    @property
    def patch(self) -> tuple[int, int]:
        return tuple(self.trunk.patch_embed.patch_size)

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.trunk.patch_embed.grid_size)

    def embed(self, pixels: Tensor) -> Tensor:
        """Tokens entering the first block (class token first, then registers, then patches)."""
        trunk = self.trunk
        x = trunk.patch_embed(pixels)
        embedded = trunk._pos_embed(x)
        x, self.rope = embedded if isinstance(embedded, tuple) else (embedded, None)
        if getattr(trunk, "patch_drop", None) is not None:
            x = trunk.patch_drop(x)
        return trunk.norm_pre(x)

    def _project(self, x: Tensor) -> Tensor:
        return self.visual.head(self.trunk.head(self.trunk.fc_norm(x)))

    @property
    def attention_pooled(self) -> bool:
        """Pooled by a MAP head (SigLIP) rather than at the class token."""
        return getattr(self.trunk, "attn_pool", None) is not None

    def pool_with_attention(self, tokens: Tensor, keep: bool) -> tuple[Tensor, Tensor | None]:
        """The image feature and, for a MAP head with `keep`, its latent query's probabilities (B, heads, 1, N),
        computed as timm's AttentionPoolLatent computes them (first latent only: the one the feature reads)."""
        x = self.trunk.norm(tokens)
        if not self.attention_pooled:
            return self._project(x[:, 0]), None
        pool = self.trunk.attn_pool
        b, n, c = x.shape
        q = pool.q(pool.latent[:, :1].expand(b, -1, -1)).reshape(b, 1, pool.num_heads, -1).transpose(1, 2)
        k, v = pool.kv(x).reshape(b, n, 2, pool.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = pool.q_norm(q), pool.k_norm(k)
        out, probs = pooling_attention(q, k, v, keep)
        out = pool.proj_drop(pool.proj(out.transpose(1, 2).reshape(b, 1, -1)))
        if pool.mlp is not None:
            out = out + pool.mlp(pool.norm(out))
        return self._project(out[:, 0]), probs

    def project_tokens(self, tokens: Tensor) -> Tensor:
        """Every token through the same head (for explainers that read patch features)."""
        return self._project(self.trunk.norm(tokens))

    def head(self):
        """(final norm, projection) when the projection is linear per token (fc_norm is the identity)."""
        if not isinstance(self.trunk.fc_norm, nn.Identity) or self.attention_pooled:
            return None
        return self.trunk.norm, self._project

    def _block_view(self, block: nn.Module) -> BlockView:
        attn = block.attn
        kind = type(block).__name__
        heads = attn.num_heads

        def qkv(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            import torch
            import torch.nn.functional as F

            b, n, _ = x.shape
            if getattr(attn, "qkv", None) is not None:
                bias = getattr(attn, "q_bias", None)
                if bias is None:
                    packed = attn.qkv(x)
                elif getattr(attn, "qkv_bias_separate", False):
                    packed = attn.qkv(x) + torch.cat((attn.q_bias, attn.k_bias, attn.v_bias))
                else:
                    packed = F.linear(x, attn.qkv.weight, torch.cat((attn.q_bias, attn.k_bias, attn.v_bias)))
                q, k, v = packed.reshape(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
            else:
                q, k, v = (proj(x).reshape(b, n, heads, -1).transpose(1, 2)
                           for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
            q, k = attn.q_norm(q), attn.k_norm(k)
            if self.rope is not None:
                from timm.layers import apply_rot_embed_cat

                start, half = attn.num_prefix_tokens, getattr(attn, "rotate_half", False)
                q = torch.cat([q[:, :, :start], apply_rot_embed_cat(q[:, :, start:], self.rope, half=half)], dim=2)
                k = torch.cat([k[:, :, :start], apply_rot_embed_cat(k[:, :, start:], self.rope, half=half)], dim=2)
            return tuple(t.transpose(1, 2).reshape(b, n, -1) for t in (q.type_as(v), k.type_as(v), v))

        def out(x: Tensor) -> Tensor:
            return attn.proj(attn.norm(x))

        if isinstance(getattr(attn, "norm", None), nn.Identity):
            out = attn.proj  # a plain linear map (explainers that read its weight can)

        if kind == "EvaBlock":
            scale_1 = (lambda x: x) if block.gamma_1 is None else (lambda x: block.gamma_1 * x)
            scale_2 = (lambda x: x) if block.gamma_2 is None else (lambda x: block.gamma_2 * x)
            layer_scale = block.gamma_1 is not None
        else:
            scale_1, scale_2 = block.ls1, block.ls2
            layer_scale = not isinstance(block.ls1, nn.Identity)
        return BlockView(ln_1=block.norm1, qkv=qkv, out=out, ln_2=block.norm2, mlp=block.mlp, heads=heads,
                         ls_1=scale_1, ls_2=scale_2, layer_scale=layer_scale)
