"""Image generators behind one small interface: `generator()` -> (1, 3, H, W) image in [0, 1], differentiable
in the generator's own parameters (its latent).

"pixels" is weights-free: a decorrelated Fourier parameterisation (colour-decorrelated spectrum scaled by
1/frequency), which CLIP guidance works well with because gradient steps move coarse structure first. A user's
own `nn.Module` generator plugs in with `ModuleGenerator(module, latent)`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..errors import NtlbError

# colour decorrelation (square root of the RGB covariance of natural images, as used for feature visualisation)
_COLOUR = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOUR = _COLOUR / _COLOUR.norm(dim=0).max()

_GENERATORS: dict[str, Callable[..., nn.Module]] = {}


def register_generator(name: str):
    """Make a generator factory `factory(size=(H, W), seed=0, **options)` available by name."""

    def add(factory):
        _GENERATORS[name] = factory
        return factory

    return add


def create_generator(name: str, size: tuple[int, int], seed: int = 0, **options) -> nn.Module:
    """A generator by name ("pixels", "vqgan" with config= and checkpoint=, or one registered by a user)."""
    if name not in _GENERATORS:
        raise NtlbError(f"unknown generator '{name}': choose one of {', '.join(sorted(_GENERATORS))}")
    return _GENERATORS[name](size=size, seed=seed, **options)


@register_generator("pixels")
class FourierImage(nn.Module):
    """An image parameterised by its colour-decorrelated Fourier spectrum, scaled by 1/frequency^decay."""

    def __init__(self, size: tuple[int, int], seed: int = 0, scale: float = 0.01, decay: float = 1.0):
        super().__init__()
        height, width = size
        self.size = (height, width)
        fy = torch.fft.fftfreq(height)[:, None]
        fx = torch.fft.rfftfreq(width)[None, :]
        frequency = (fx**2 + fy**2).sqrt().clamp_min(1.0 / max(height, width))
        self.register_buffer("spectrum_scale", frequency.pow(-decay) / max(height, width), persistent=False)
        generator = torch.Generator().manual_seed(seed)
        self.spectrum = nn.Parameter(torch.randn(3, height, width // 2 + 1, 2, generator=generator) * scale)

    def forward(self) -> Tensor:
        coefficients = torch.view_as_complex(self.spectrum) * self.spectrum_scale
        image = torch.fft.irfft2(coefficients, s=self.size, norm="ortho")  # (3, H, W), decorrelated colours
        image = torch.einsum("ij,jhw->ihw", _COLOUR.to(image), image * 4.0)
        return torch.sigmoid(image)[None]


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


from . import vqgan as _vqgan  # noqa: E402,F401  (registers "vqgan"; taming is imported only when one is built)
