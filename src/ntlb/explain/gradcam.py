"""Grad-CAM: attention Grad-CAM of the last layer for transformer towers, classic Grad-CAM for ResNet towers.

For ViT image towers and every text tower the map is row CLS/EOT of mean_heads max(dy/dA * A, 0) of the last
layer (Chefer et al.'s attention Grad-CAM baseline). For a ResNet image tower it is Grad-CAM on the last
convolutional stage before the attention pool: relu(sum_c mean_hw(dy/dF_c) * F_c), so RN50 CLIP gets maps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.loading import wrap
from .chefer import Chefer2021
from .explanation import Explanation
from .registry import register
from .relevance import accumulation_dtype, attention_gradients, one_hot_targets


@contextmanager
def captured_output(module: nn.Module) -> Iterator[dict]:
    """Keep a module's forward output as a graph tensor that can be differentiated against, even in a frozen
    model (the output is made a leaf that requires grad when nothing upstream does)."""
    store: dict = {}

    def hook(_module, _inputs, output):
        if not output.requires_grad:
            output = output.detach().requires_grad_(True)
        store["output"] = output
        return output

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def grad_cam(activation: Tensor, gradient: Tensor) -> Tensor:
    """relu(sum_c mean_hw(G_c) * F_c) for activations (..., C, h, w), flattened to (..., h*w), in float32+."""
    dtype = accumulation_dtype(activation.dtype)
    weights = gradient.to(dtype).mean(dim=(-1, -2), keepdim=True)
    return (weights * activation.to(dtype)).sum(dim=-3).clamp(min=0).flatten(-2)


@register("gradcam")
class GradCam(Chefer2021):
    """Grad-CAM maps for every pair, batched like chefer2021 (one gradient call per tower and chunk).

    The start layers are fixed to the last layer: that is the method.
    """

    def __init__(self, start_layer_image: int = -1, start_layer_text: int = -1, logit_mode: str = "scaled",
                 create_graph: bool = False, chunk_size: int | None = None):
        super().__init__(-1, -1, logit_mode, create_graph, chunk_size)

    def options(self) -> dict:
        return {"layer": -1, "create_graph": self.create_graph}

    def __call__(self, model, images, texts, pairs: str = "all") -> Explanation:
        grad_requested = torch.is_grad_enabled()
        with torch.enable_grad():
            adapter = wrap(model)
            stage = adapter.last_conv_stage()
            keep_image = adapter.resolve_layer(-1, "image") if adapter.has_patch_attention else None
            keep_text = adapter.resolve_layer(-1, "text")
            with captured_output(stage) if stage is not None else nullcontext({}) as captured:
                batch = self.encode(adapter, images, texts, pairs, keep_image, keep_text, grad_requested)
            conv_maps = None
            if "output" in captured:
                conv_maps = self._conv_maps(batch.logits, captured["output"], pairs)
            if pairs == "diagonal":
                image_rel, text_rel = self._diagonal(batch)
            else:
                image_rel, text_rel = self._all_pairs(batch)
        eot = batch.tokens.eot.to(text_rel.device)
        text_rel = text_rel - F.one_hot(eot, text_rel.shape[-1]).to(text_rel.dtype)  # the row of Abar, not I+Abar
        return self.explanation(batch, image_rel if conv_maps is None else conv_maps, text_rel, pairs)

    def _conv_maps(self, logits: Tensor, activation: Tensor, pairs: str) -> Tensor:
        """(B, T, h*w) or (B, h*w) Grad-CAM maps of every pair from one batched gradient call."""
        if pairs == "diagonal":
            grad = attention_gradients(logits.diagonal(), [activation], None, self.create_graph, True)[0]
            return grad_cam(activation, grad)
        t = logits.shape[1]
        targets = one_hot_targets(t, tuple(logits.shape), 1, logits.device, logits.dtype)
        grads = attention_gradients(logits, [activation], targets, self.create_graph, True)[0]  # (T, B, C, h, w)
        return grad_cam(activation.unsqueeze(0), grads).transpose(0, 1)
