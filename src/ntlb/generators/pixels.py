"""The weights-free "pixels" generator: a decorrelated Fourier parameterisation (colour-decorrelated spectrum
scaled by 1/frequency), which CLIP guidance works well with because gradient steps move coarse structure first."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import GENERATORS

# colour decorrelation (square root of the RGB covariance of natural images, as used for feature visualisation)
_COLOUR = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOUR = _COLOUR / _COLOUR.norm(dim=0).max()


@GENERATORS.register("pixels")
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
