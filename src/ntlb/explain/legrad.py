"""LeGrad (Bousselham et al., ICCV 2025): how sensitive each layer's own prediction is to that layer's attention.

For each layer l from the start layer on, the layer's output tokens are averaged, passed through the final norm
and projection, and scored against the text (cosine): s_l. The map is the sum over layers of
mean_heads mean_rows max(ds_l / dA_l, 0) over the patch columns, min-max scaled per pair (as the released code).
The released code starts two layers from the end (`start_layer_image=-2`); image maps only. For an image tower
pooled by attention (SigLIP, CoCa) each layer's tokens go through the pooling head (its final norm included; the
released code leaves that norm out) and the gradient is taken to the head's attention, as the released code does.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..errors import NtlbError
from ..models.adapter import ClipAdapter
from ..models.features import accumulation_dtype
from .base import Batch, Explainer
from .normalize import minmax
from .registry import register
from .relevance import attention_gradients
from .targets import image_targets


@register("legrad")
class LeGrad(Explainer):
    """Layer-wise gradients of each layer's own image-text score to its attention, summed over layers."""

    uses_gradients = True
    gives_text_relevance = False
    reads_attention_pooling = True

    def __init__(self, start_layer_image: int = -2, start_layer_text: int = 0, **options):
        super().__init__(start_layer_image, start_layer_text, **options)

    def check(self, adapter: ClipAdapter) -> None:
        if not adapter.has_patch_attention:
            raise NtlbError("legrad needs a ViT image tower: use method='gradcam' for convolutional towers")

    def keep_from(self, adapter: ClipAdapter, tower: str) -> int | None:
        return super().keep_from(adapter, tower) if tower == "image" else None

    def options(self) -> dict:
        return {"start_layer_image": self.start_layer_image, "create_graph": self.create_graph}

    def relevance(self, batch: Batch) -> tuple[Tensor | None, Tensor | None]:
        image = batch.image
        adapter = batch.adapter
        texts = F.normalize(batch.text.features, dim=-1)
        targets = None
        total = None
        outputs = [*image.layer_inputs[1:], image.tokens]  # the tokens each kept layer puts out
        for attention, tokens in zip(image.attentions, outputs):
            if adapter.pools_image_by_attention:  # the layer's tokens through the pooling head; its attention read
                pooled, attention = adapter.pool_image_attention(tokens, True)
            else:
                pooled = adapter.project_image_tokens(tokens.mean(dim=1, keepdim=True))[:, 0]
            scores = F.normalize(pooled, dim=-1) @ texts.T  # (B, T): this layer's own prediction
            targets = image_targets(batch.columns, scores) if targets is None else targets
            (gradient,) = attention_gradients(scores, [attention], targets, self.create_graph, True)
            dtype = accumulation_dtype(gradient.dtype)
            layer = gradient.to(dtype).clamp(min=0).mean(dim=(-3, -2))  # mean over heads and query rows
            total = layer if total is None else total + layer
        patches = batch.grid[0] * batch.grid[1]
        maps = total[..., -patches:].transpose(0, 1)  # (B, K, P)
        return minmax(maps, dims=(-1,)), None
