"""A user's own generator network driven by a learned latent, in Python (`ModuleGenerator`) or from a TorchScript
file by name ("module": `--generator module --module FILE.pt`)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from . import GENERATORS


class ModuleGenerator(nn.Module):
    """A user's generator network (frozen) driven by a learned latent: `module(latent)` must give images in
    [0, 1] or [-1, 1] (set `signed=True`). With `encoder` (images in the same range -> latents) it has `encode`."""

    def __init__(self, module: nn.Module, latent: Tensor, signed: bool = False, encoder: nn.Module | None = None):
        super().__init__()
        for parameter in [*module.parameters(), *(encoder.parameters() if encoder is not None else [])]:
            parameter.requires_grad_(False)  # parameter by parameter: TorchScript modules have no requires_grad_
        self.module = module.eval()
        self.encoder = None if encoder is None else encoder.eval()
        self.latent = nn.Parameter(latent.clone())
        self.signed = signed
        with torch.no_grad():
            self.size = tuple(self.image_of(self.latent).shape[-2:])  # (H, W) of its images

    def image_of(self, latent: Tensor) -> Tensor:
        """Images (N, 3, H, W) in [0, 1] of latents (N, ...)."""
        image = self.module(latent)
        return (image + 1) / 2 if self.signed else image

    def forward(self) -> Tensor:
        return self.image_of(self.latent)

    def random_latent(self, seed: int) -> Tensor:
        """A standard normal latent of this generator's latent shape, by seed."""
        return torch.randn(self.latent.shape, generator=torch.Generator().manual_seed(seed)).to(self.latent)

    def encode(self, image: Tensor) -> Tensor:
        """The latent of an image (1, 3, H, W) in [0, 1] through the user's encoder."""
        if self.encoder is None:
            from ..errors import NtlbError

            raise NtlbError("this generator module came without an encoder: pass encoder= to ModuleGenerator")
        with torch.no_grad():
            return self.encoder(image * 2 - 1 if self.signed else image)


@GENERATORS.register("module")
def scripted_generator(size: tuple[int, int], seed: int = 0, path: str | Path | None = None,
                       latent_shape: tuple[int, ...] | None = None, signed: bool = False) -> ModuleGenerator:
    """A user's generator saved with `torch.jit.save`: `forward(latent)` gives images; an `encode(image)` method,
    where the module has one, is its encoder; `latent_shape` (C, ...) is read from the module's `latent_shape`
    attribute when not given."""
    from ..errors import NtlbError

    if path is None:
        raise NtlbError("the module generator needs --module FILE.pt (a torch.jit.save'd generator)")
    path = Path(path)
    if not path.is_file():
        raise NtlbError(f"generator module not found: {path}: save yours with torch.jit.save(torch.jit.script(m))")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:  # noqa: BLE001  (any unreadable file: one line)
        raise NtlbError(f"cannot read generator module {path}: {type(err).__name__}: save it with torch.jit.save") \
            from None
    shape = tuple(latent_shape or getattr(module, "latent_shape", ()) or ())
    if not shape:
        raise NtlbError(f"{path} has no latent_shape attribute: give --latent-shape C,H,W")
    latent = torch.randn((1, *shape), generator=torch.Generator().manual_seed(seed))
    encoder = _ScriptedEncoder(module) if hasattr(module, "encode") else None
    return ModuleGenerator(module, latent, signed=signed, encoder=encoder)


class _ScriptedEncoder(nn.Module):
    """The `encode` method of a scripted generator, as a module."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, image: Tensor) -> Tensor:
        return self.module.encode(image)
