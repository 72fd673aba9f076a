"""Grad-CAM: attention Grad-CAM of the last layer for transformer towers, classic Grad-CAM for convolutional towers.

For ViT image towers and every text tower the map is row CLS/EOT of mean_heads max(dy/dA * A, 0) of the last
layer (Chefer et al.'s attention Grad-CAM baseline). For a convolutional image tower (ResNet, ConvNeXt)
it is Grad-CAM on the last convolutional stage before pooling: relu(sum_c mean_hw(dy/dF_c) * F_c).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor, nn

from ..models.adapter import ClipAdapter, Encoded
from ..models.features import accumulation_dtype
from .base import Batch
from .gradient import GradientExplainer
from .registry import register
from .relevance import gradient_weighted, select_row


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
class GradCam(GradientExplainer):
    """Grad-CAM maps for every pair, batched like chefer2021 (one gradient call per tower and chunk).

    The layer is fixed to the last one (that is the method): start layers are ignored and not recorded.
    """

    def __init__(self, start_layer_image: int = -1, start_layer_text: int = -1, **options):
        super().__init__(-1, -1, **options)

    def options(self) -> dict:
        return {"layer": "last", "logit_mode": self.logit_mode, "create_graph": self.create_graph}

    def encode_images(self, adapter: ClipAdapter, pixels: Tensor) -> Encoded:
        stage = adapter.last_conv_stage()
        if stage is None:
            return super().encode_images(adapter, pixels)
        with captured_output(stage) as captured:
            encoded = adapter.encode_image(pixels)
        encoded.activation = captured["output"]  # (B, C, h, w): what convolutional Grad-CAM reads
        return encoded

    def gradient_inputs(self, batch: Batch, tower: str) -> list[Tensor]:
        if tower == "image" and batch.image.activation is not None:
            return [batch.image.activation]
        return super().gradient_inputs(batch, tower)

    def combine(self, batch: Batch, tower: str, tensors: list[Tensor], gradients: list[Tensor],
                targets: Tensor) -> Tensor:
        if tower == "image" and batch.image.activation is not None:
            return grad_cam(tensors[0].unsqueeze(0), gradients[0])
        return select_row(gradient_weighted(tensors[-1].unsqueeze(0), gradients[-1]), batch.position(tower))
