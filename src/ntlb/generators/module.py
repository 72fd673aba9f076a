"""A user's own generator network driven by a learned latent."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ModuleGenerator(nn.Module):
    """A user's generator network (frozen) driven by a learned latent: `module(latent)` must give images in
    [0, 1] or [-1, 1] (set `signed=True`). With `encoder` (images in the same range -> latents) it has `encode`."""

    def __init__(self, module: nn.Module, latent: Tensor, signed: bool = False, encoder: nn.Module | None = None):
        super().__init__()
        self.module = module.requires_grad_(False).eval()
        self.encoder = None if encoder is None else encoder.requires_grad_(False).eval()
        self.latent = nn.Parameter(latent.clone())
        self.signed = signed

    def forward(self) -> Tensor:
        image = self.module(self.latent)
        return (image + 1) / 2 if self.signed else image

    def encode(self, image: Tensor) -> Tensor:
        """The latent of an image (1, 3, H, W) in [0, 1] through the user's encoder."""
        if self.encoder is None:
            from ..errors import NtlbError

            raise NtlbError("this generator module came without an encoder: pass encoder= to ModuleGenerator")
        with torch.no_grad():
            return self.encoder(image * 2 - 1 if self.signed else image)
