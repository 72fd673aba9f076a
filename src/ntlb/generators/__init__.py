"""Image generators behind one small interface: `generator()` -> (1, 3, H, W) image in [0, 1], differentiable
in the generator's own parameters (its latent). By name: `create_generator("pixels", size=(64, 64), seed=0)`.

"pixels" is weights-free (a decorrelated Fourier image); "vqgan" decodes a learned latent with a user's taming
VQGAN; a user's own `nn.Module` plugs in with `ModuleGenerator(module, latent)`, or by name through
`GENERATORS.register("name")`.
"""

from __future__ import annotations

from torch import nn

from ..registry import Registry

GENERATORS = Registry("generator")


def create_generator(name: str, size: tuple[int, int], seed: int = 0, **options) -> nn.Module:
    """A generator by name ("pixels", "vqgan" with config= and checkpoint=, or one registered by a user)."""
    return GENERATORS.create(name, size=size, seed=seed, **options)


from .module import ModuleGenerator  # noqa: E402
from .pixels import FourierImage  # noqa: E402  (registers "pixels")
from .vqgan import VQGANImage  # noqa: E402  (registers "vqgan"; taming is imported only when one is built)

__all__ = ["GENERATORS", "FourierImage", "ModuleGenerator", "VQGANImage", "create_generator"]
