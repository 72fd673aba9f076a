"""The "vqgan" generator: a user's taming-transformers VQGAN (its YAML config and checkpoint) decoding a learned
latent, as in the paper's layout experiments (VQGAN imagenet f16 16384 + CLIP).

Only the decoder side is built (decoder, post-quantisation conv, codebook), from taming's own modules; the
latent is snapped to its nearest codebook entries with a straight-through gradient, as VQGAN-CLIP does.
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import NtlbError
from . import GENERATORS

NEEDED = ("decoder.", "post_quant_conv.", "quantize.embedding.weight")


def read_vqgan_config(path: str | Path) -> dict:
    """model.params of a taming VQGAN YAML (embed_dim, n_embed, ddconfig)."""
    path = Path(path)
    if not path.is_file():
        raise NtlbError(f"VQGAN config not found: {path}: give the YAML that came with the checkpoint")
    try:
        import yaml
    except ImportError:
        raise NtlbError("the vqgan generator needs taming-transformers and pyyaml: pip install 'ntlb[vqgan]'") from None
    try:
        params = yaml.safe_load(path.read_text())["model"]["params"]
        return {"embed_dim": int(params["embed_dim"]), "n_embed": int(params["n_embed"]),
                "ddconfig": dict(params["ddconfig"])}
    except Exception as err:  # noqa: BLE001  (any malformed file gets the same one-line answer)
        raise NtlbError(f"{path} is not a taming VQGAN config (model.params with embed_dim, n_embed, ddconfig): "
                        f"{type(err).__name__}") from None


def read_vqgan_weights(path: str | Path) -> dict[str, Tensor]:
    """The decoder-side tensors of a VQGAN checkpoint (Lightning .ckpt with a state_dict, or a plain state dict)."""
    path = Path(path)
    if not path.is_file():
        raise NtlbError(f"VQGAN checkpoint not found: {path}: give the .ckpt trained with this config")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001
        raise NtlbError(f"cannot read VQGAN checkpoint {path}: {type(err).__name__}: is it a torch file?") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else None
    if not isinstance(state, dict):
        raise NtlbError(f"{path} holds no state dict: give a taming VQGAN checkpoint")
    weights = {k: v for k, v in state.items() if k.startswith(NEEDED)}
    missing = [prefix for prefix in NEEDED if not any(k.startswith(prefix) for k in weights)]
    if missing:
        raise NtlbError(f"{path} lacks {', '.join(missing)}: is it a taming VQGAN (VQModel) checkpoint?")
    bad = [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise NtlbError(f"{path} has NaN or infinite values in {bad[0]}: the checkpoint is corrupt; use another")
    return weights


@GENERATORS.register("vqgan")
class VQGANImage(nn.Module):
    """A frozen VQGAN decoder driven by a learned latent grid (embed_dim, H/f, W/f), f = 2^(levels - 1)."""

    def __init__(self, size: tuple[int, int], seed: int = 0, config: str | Path | None = None,
                 checkpoint: str | Path | None = None):
        super().__init__()
        if config is None or checkpoint is None:
            raise NtlbError("the vqgan generator needs --vqgan-config YAML and --vqgan-checkpoint CKPT")
        try:
            from taming.modules.diffusionmodules.model import Decoder
        except ImportError:
            raise NtlbError("the vqgan generator needs taming-transformers: pip install 'ntlb[vqgan]'") from None
        params = read_vqgan_config(config)
        weights = read_vqgan_weights(checkpoint)
        ddconfig = params["ddconfig"]
        with contextlib.redirect_stdout(io.StringIO()):  # taming prints the latent shape
            self.decoder = Decoder(**ddconfig)
        self.post_quant_conv = nn.Conv2d(params["embed_dim"], ddconfig["z_channels"], 1)
        self.codebook = nn.Embedding(params["n_embed"], params["embed_dim"])
        state = {k.replace("quantize.embedding.", "codebook."): v for k, v in weights.items()}
        try:
            self.load_state_dict(state, strict=False)
        except RuntimeError as err:
            raise NtlbError(f"{checkpoint} does not match {config}: {str(err).splitlines()[1].strip()}") from None
        self.requires_grad_(False)
        self.eval()  # a config's dropout must not be live while the latent is optimised
        self.size = tuple(size)
        factor = 2 ** (len(ddconfig["ch_mult"]) - 1)
        grid = (math.ceil(size[0] / factor), math.ceil(size[1] / factor))
        generator = torch.Generator().manual_seed(seed)
        codes = torch.randint(params["n_embed"], grid, generator=generator)
        self.latent = nn.Parameter(self.codebook.weight[codes].permute(2, 0, 1)[None].clone())

    def quantized(self) -> Tensor:
        """The latent snapped to its nearest codebook vectors; gradients pass straight through to the latent."""
        z = self.latent.permute(0, 2, 3, 1)
        codes = torch.cdist(z.reshape(-1, z.shape[-1]), self.codebook.weight).argmin(dim=-1)
        snapped = self.codebook.weight[codes].reshape(z.shape)
        return (z + (snapped - z).detach()).permute(0, 3, 1, 2)

    def forward(self) -> Tensor:
        image = (self.decoder(self.post_quant_conv(self.quantized())) + 1) / 2
        image = image + (image.clamp(0, 1) - image).detach()  # clamp the values, not the gradient
        return image[..., : self.size[0], : self.size[1]]

    def train(self, mode: bool = True) -> VQGANImage:  # the decoder stays in eval mode (dropout off)
        super().train(False)
        return self
