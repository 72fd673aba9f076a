"""A user's own generator network driven by a learned latent."""

from __future__ import annotations

from torch import Tensor, nn


class ModuleGenerator(nn.Module):
    """A user's generator network (frozen) driven by a learned latent: `module(latent)` must give images in
    [0, 1] or [-1, 1] (set `signed=True`)."""

    def __init__(self, module: nn.Module, latent: Tensor, signed: bool = False):
        super().__init__()
        self.module = module.requires_grad_(False)
        self.latent = nn.Parameter(latent.clone())
        self.signed = signed

    def forward(self) -> Tensor:
        image = self.module(self.latent)
        return (image + 1) / 2 if self.signed else image
