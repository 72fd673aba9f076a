"""Image generators behind one small interface: `generator()` -> (1, 3, H, W) image in [0, 1], differentiable
in the generator's own parameters (its `latent`); a generator with an encoder also has `encode(image) -> latent`.
By name: `create_generator("world-vqgan", size=(64, 64), seed=0, init_image=None)`.

"pixels" is weights-free (a decorrelated Fourier image); "vqgan" decodes a learned latent with a user's taming
VQGAN; "world-vqgan" is the VQGAN bundled with ntlb, trained on its world; a user's own `nn.Module` plugs in
with `ModuleGenerator(module, latent, encoder=None)`, or by name through `GENERATORS.register("name")`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import NtlbError
from ..registry import Registry

GENERATORS = Registry("generator")
STYLECLIP_L2 = 0.008  # StyleCLIP's weight of ||z - z0||^2, set for StyleGAN's W+: for generators without their own


def l2_weight(generator: nn.Module) -> float:
    """The weight of the editing loss's ||z - z0||^2 that suits this generator's latent: its `l2_weight` (the
    bundled world-vqgan's is derived from its latent's scale), else StyleCLIP's."""
    return float(getattr(generator, "l2_weight", STYLECLIP_L2))


def picture_tensor(picture, size: tuple[int, int]) -> Tensor:
    """A PIL picture (or a (1, 3, H, W) tensor in [0, 1]) as a (1, 3, H, W) tensor in [0, 1] of `size`."""
    if not isinstance(picture, Tensor):
        import numpy as np

        array = np.asarray(picture.convert("RGB").resize(size[::-1]), dtype=np.float32) / 255
        picture = torch.from_numpy(array).permute(2, 0, 1)[None]
    if tuple(picture.shape[-2:]) != tuple(size):
        picture = nn.functional.interpolate(picture, size=size, mode="bilinear", antialias=True, align_corners=False)
    return picture


def create_generator(name: str, size: tuple[int, int], seed: int = 0, init_image=None, **options) -> nn.Module:
    """A generator by name ("pixels", "vqgan" with config= and checkpoint=, "world-vqgan", or one registered by a
    user); with `init_image` (PIL or tensor) its latent starts from the picture's encoding."""
    generator = GENERATORS.create(name, size=size, seed=seed, **options)
    if init_image is not None:
        if not callable(getattr(generator, "encode", None)):
            raise NtlbError(f"generator '{name}' has no encoder, so it cannot start from an image: use world-vqgan "
                            "or a vqgan checkpoint with encoder weights")
        with torch.no_grad():
            generator.latent.copy_(generator.encode(picture_tensor(init_image, tuple(size))))
    return generator


from .module import ModuleGenerator  # noqa: E402
from .pixels import FourierImage  # noqa: E402  (registers "pixels")
from .vqgan import VQGANImage  # noqa: E402  (registers "vqgan", "world-vqgan"; taming is imported when built)

__all__ = ["GENERATORS", "STYLECLIP_L2", "FourierImage", "ModuleGenerator", "VQGANImage", "create_generator",
           "l2_weight", "picture_tensor"]
