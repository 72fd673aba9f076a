"""The image embedding decomposed into the direct effects of every layer, head and patch, read against the text
(Gandelsman, Efros & Steinhardt, ICLR 2024, "TextSpan").

CLIP's image feature is f = P(LN(z)) with z the CLS token after the last block: the embedding of the CLS token
plus, for every layer, its attention output and its MLP output at CLS. The attention output at CLS is
sum_h sum_j A[h, CLS, j] * W_O,h v_h(j) (+ a bias). The final LayerNorm is linear once its scale sigma(z) is fixed
to its actual value: LN(z) = sum_terms gamma * (c - mean(c)) / sigma + beta. So each (layer, head, token) term
adds exactly A[h, CLS, j] * v_h(j) . q_h(t) / sigma to f . t, with q_h(t) = W_O,h^T ls(gamma * P^T t centred). The
map of a text is the sum over layers and heads of the patch terms, as a share of the cosine score (scaled with
logit_mode="scaled"); `head_contributions` gives the per-head sums. Gradient-free, differentiable, image maps only.

How the final norm's centring and the biases are shared among the terms is a choice; both choices are exact (all
terms, with the CLS embedding and the MLP outputs, sum to the cosine):
- split="ntlb" (default): each term is centred on its own mean, (c - mean(c)), and the biases (the attention
  out-projection's, the norm's beta) are terms of their own, outside the patch maps. A patch's term then depends
  on that patch's value vector alone, not on the whole residual stream's mean nor on how many terms there are.
- split="textspan": the authors' released code. Each of the K = 2 * layers + 1 residual pieces (the CLS embedding,
  every attention and MLP output) takes an equal share of the stream's mean, mean(z) / K, and of beta, beta / K;
  within a layer's attention output every (head, token) term takes 1 / (N * H) of the layer's share and of the
  out-projection bias. The maps differ from the default by a per-(layer, head) constant spread over the tokens:
  little on the bundled world model (at most 0.0034 after min-max on examples/scene.png), up to 0.10 (correlation
  0.9945) in the design review's measurement (issue 28).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import NtlbError
from ..models.adapter import ClipAdapter, Encoded
from ..models.blocks import split_heads
from ..models.features import accumulation_dtype
from .base import Batch, Explainer
from .registry import register

NEEDS = "decomposition needs a ViT image tower whose feature is proj(norm(CLS token)): use method='chefer2021'"
SPLITS = ("ntlb", "textspan")


def direct_effects(adapter: ClipAdapter, image: Encoded, texts: Tensor, split: str = "ntlb") -> Tensor:
    """(B, L, H, N, T): the term of every kept layer, head and token in the cosine of each image with each text
    (texts: features (T, D)), the norm's centring and the biases shared as `split` says (module docstring).
    `image` must keep its attention and layer inputs (encode with keep_from)."""
    if split not in SPLITS:
        raise NtlbError(f"unknown split '{split}': use 'ntlb' (each term centred on its own mean) or 'textspan' "
                        "(the released code's shares)")
    head = adapter.image_head()
    if head is None or not image.attentions:
        raise NtlbError(NEEDS)
    norm, project = head
    dtype = accumulation_dtype(image.tokens.dtype)
    cls = image.tokens[:, 0].to(dtype)  # the token the final norm sees
    sigma = (cls.var(dim=-1, unbiased=False) + norm.eps).sqrt()  # (B,)
    width = cls.shape[-1]
    columns = project(torch.eye(width, device=cls.device, dtype=norm.weight.dtype)).to(dtype)  # P applied: (W, D)
    feature_norm = image.features.to(dtype).norm(dim=-1)  # (B,)
    texts = F.normalize(texts.to(dtype), dim=-1)
    raw = (columns @ texts.T) * norm.weight.to(dtype)[:, None]  # (W, T): gamma * P^T t
    # ntlb: the norm's centring moved onto the readout (each term centred on its own mean); textspan: shares below
    readout = raw - raw.mean(dim=0, keepdim=True) if split == "ntlb" else raw
    blocks = adapter.image_blocks[len(adapter.image_blocks) - len(image.attentions):]
    pieces = 2 * len(adapter.image_blocks) + 1  # K: the CLS embedding, every attention and MLP output
    layers = []
    for block, attention, tokens in zip(blocks, image.attentions, image.layer_inputs):
        values = split_heads(block.qkv(block.ln_1(tokens))[2], block.heads).to(dtype)  # (B, H, N, dh)
        scaled = block.ls_1(readout.T.to(tokens.dtype)).to(dtype).T  # ls(q): (W, T)
        out = block.out.weight.to(dtype)  # (W, H * dh)
        per_head = (out.T @ scaled).reshape(block.heads, -1, scaled.shape[-1])  # (H, dh, T)
        terms = attention[:, :, 0, :].to(dtype)[..., None] * torch.einsum("bhnd,hdt->bhnt", values, per_head)
        if split == "textspan":  # each (head, token) term's share of the bias, the stream's mean and beta
            share = attention.shape[1] * attention.shape[-1]  # H * N
            bias = block.out.bias.to(dtype) @ scaled / share if block.out.bias is not None else 0  # (T,)
            mean = cls.mean(dim=-1)[:, None] * raw.sum(dim=0) / (pieces * share)  # (B, T)
            beta = sigma[:, None] * (norm.bias.to(dtype) @ columns @ texts.T) / (pieces * share)  # (B, T)
            terms = terms + (bias - mean + beta)[:, None, None, :]
        layers.append(terms)
    return torch.stack(layers, dim=1) / (sigma * feature_norm)[:, None, None, None, None]


@register("decomposition")
class Decomposition(Explainer):
    """Per-patch direct effects of the attention heads on the image embedding, read against each text."""

    gives_text_relevance = False

    def __init__(self, split: str = "ntlb", **options):
        super().__init__(**options)
        if split not in SPLITS:
            raise NtlbError(f"unknown split '{split}': use 'ntlb' (each term centred on its own mean) or 'textspan' "
                            "(the released code's shares)")
        self.split = split

    def check(self, adapter: ClipAdapter) -> None:
        if not adapter.has_patch_attention or adapter.image_head() is None or \
                not all(hasattr(block.out, "weight") for block in adapter.image_blocks):
            raise NtlbError(NEEDS)

    def keep_from(self, adapter: ClipAdapter, tower: str) -> int | None:
        return super().keep_from(adapter, tower) if tower == "image" else None

    def options(self) -> dict:
        return {"start_layer_image": self.start_layer_image, "logit_mode": self.logit_mode, "split": self.split}

    def relevance(self, batch: Batch) -> tuple[Tensor | None, Tensor | None]:
        effects = direct_effects(batch.adapter, batch.image, batch.text.features, self.split)  # (B, L, H, N, T)
        if self.logit_mode == "scaled":
            effects = effects * batch.adapter.logit_scale.to(effects.dtype)
        maps = effects.sum(dim=(1, 2))[:, 1:].transpose(1, 2)  # (B, T, P): patches only
        return batch.explained(maps), None


def head_contributions(adapter: ClipAdapter, images, texts, start_layer_image: int = 0, split: str = "ntlb") -> Tensor:
    """(B, T, L, H): each kept layer's heads' direct effect (all tokens) on the cosine of image b with text t."""
    from ..models.features import text_features
    from ..models.inputs import prepare_images

    pixels, _ = prepare_images(adapter, images)
    image = adapter.encode_image(pixels, keep_from=adapter.resolve_layer(start_layer_image, "image"))
    features = text_features(adapter, list(texts)) if not isinstance(texts, Tensor) else texts
    return direct_effects(adapter, image, features, split).sum(dim=3).permute(0, 3, 1, 2)
