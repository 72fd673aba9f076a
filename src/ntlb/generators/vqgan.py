"""VQGAN generators: a taming-transformers VQGAN (its YAML config and checkpoint) decoding a learned latent, as in
the paper's layout experiments (VQGAN imagenet f16 16384 + CLIP), and the bundled "world-vqgan" trained on ntlb's
procedural world (`ntlb world train-generator`), loaded through the same code.

The model is built from taming's own modules (Encoder, Decoder, VectorQuantizer) under taming's key names, so a
VQModel checkpoint loads as it is and ntlb's checkpoints load into taming. The encoder is optional: without it the
generator starts from random codes; with it `encode(image)` gives the latent of a picture (`--init-image`, editing).
The latent is snapped to its nearest codebook entries with a straight-through gradient, as VQGAN-CLIP does.

Two things a latent-optimisation task reads from the generator: `l2_weight`, the weight of the editing loss's
||z - z0||^2 that suits this latent (StyleCLIP's 0.008 is set for StyleGAN's W+; on the world VQGAN's codebook
latent it makes every correct edit a worse optimum than no edit, so world-vqgan carries one derived from its own
latent, see `WORLD_VQGAN_L2`), and `sample_latent(seed)`, the start of generation: an entry of a bank of encoded
pictures where the generator has one (world-vqgan: encodings of rendered world scenes), else random codes.
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import NtlbError
from ..training import read_checkpoint
from . import GENERATORS, STYLECLIP_L2

DECODER_SIDE = ("decoder.", "post_quant_conv.", "quantize.embedding.weight")
ENCODER_SIDE = ("encoder.", "quant_conv.")
BUNDLED_DIR = Path(__file__).parent
BUNDLED = {"world-vqgan": (BUNDLED_DIR / "configs" / "world-vqgan.yaml",
                           BUNDLED_DIR / "weights" / "world-vqgan.safetensors")}
BUNDLED_BANK = {"world-vqgan": BUNDLED_DIR / "weights" / "world-vqgan-bank.safetensors"}
# The l2 weight of world-vqgan's latent (`ntlb_research.vqgan_training.calibrate_l2`, benchmarks/vqgan_l2.py): the mean
# CLIP gain (in 1 - cos) of a world scene's own caption over an unrelated scene's, 0.49, divided by the mean squared
# distance between the latents of two unrelated world scenes, 512 (128 scenes of the train seed space): moving to a
# matching scene costs, on average, what it gains, so an edit nearer than an unrelated scene is a better optimum.
WORLD_VQGAN_L2 = 9.6e-4


VQGAN_EXTRA = "VQGAN generators (world-vqgan, vqgan) need taming-transformers: pip install 'ntlb[vqgan]'"


def taming_modules() -> tuple[type, type, type]:
    """taming's (Encoder, Decoder, VectorQuantizer), imported when a VQGAN is built: taming (with the
    pytorch-lightning it declares) is the `vqgan` extra, not a core dependency."""
    try:
        from taming.modules.diffusionmodules.model import Decoder, Encoder
        from taming.modules.vqvae.quantize import VectorQuantizer
    except ImportError:
        raise NtlbError(VQGAN_EXTRA) from None
    return Encoder, Decoder, VectorQuantizer


def read_vqgan_config(path: str | Path) -> dict:
    """model.params of a taming VQGAN YAML (embed_dim, n_embed, ddconfig)."""
    path = Path(path)
    if not path.is_file():
        raise NtlbError(f"VQGAN config not found: {path}: give the YAML that came with the checkpoint")
    try:
        import yaml
    except ImportError:
        raise NtlbError(VQGAN_EXTRA) from None
    try:
        params = yaml.safe_load(path.read_text())["model"]["params"]
        return {"embed_dim": int(params["embed_dim"]), "n_embed": int(params["n_embed"]),
                "ddconfig": dict(params["ddconfig"])}
    except Exception as err:  # noqa: BLE001  (any malformed file gets the same one-line answer)
        raise NtlbError(f"{path} is not a taming VQGAN config (model.params with embed_dim, n_embed, ddconfig): "
                        f"{type(err).__name__}") from None


def vqgan_config_text(params: dict) -> str:
    """A taming VQGAN YAML for `params` (what `read_vqgan_config` reads and taming's VQModel takes)."""
    import yaml

    config = {"model": {"target": "taming.models.vqgan.VQModel",
                        "params": {"embed_dim": params["embed_dim"], "n_embed": params["n_embed"],
                                   "ddconfig": dict(params["ddconfig"]),
                                   "lossconfig": {"target": "torch.nn.Identity"}}}}
    return yaml.safe_dump(config, sort_keys=False)


def read_latent_bank(path: str | Path, codes: int) -> Tensor:
    """The code indices (N, H/f, W/f) of a latent bank file ("codes" in a .safetensors), checked against a codebook
    of `codes` entries."""
    state = read_checkpoint(path, what="latent bank",
                            fix="write one with ntlb_research.vqgan_training.export_latent_bank")
    bank = state.get("codes") if isinstance(state, dict) else None
    if bank is None or bank.ndim != 3 or bank.is_floating_point() or int(bank.min()) < 0 or int(bank.max()) >= codes:
        raise NtlbError(f"{path} holds no code indices (N, H, W) below {codes}: write it with export_latent_bank")
    return bank


def read_vqgan_weights(path: str | Path) -> dict[str, Tensor]:
    """The VQGAN tensors of a checkpoint (Lightning .ckpt with a state_dict, a plain state dict, or .safetensors):
    the decoder side (required) and the encoder side (where present)."""
    # Lightning checkpoints carry more than tensors (hyper-parameters, callbacks): read them whole
    state = read_checkpoint(path, what="VQGAN checkpoint", fix="give the .ckpt trained with this config",
                            trusted=Path(path).suffix != ".safetensors")
    state = state.get("state_dict", state) if isinstance(state, dict) else None
    if not isinstance(state, dict):
        raise NtlbError(f"{path} holds no state dict: give a taming VQGAN checkpoint")
    weights = {k: v for k, v in state.items() if k.startswith(DECODER_SIDE + ENCODER_SIDE)}
    missing = [prefix for prefix in DECODER_SIDE if not any(k.startswith(prefix) for k in weights)]
    if missing:
        raise NtlbError(f"{path} lacks {', '.join(missing)}: is it a taming VQGAN (VQModel) checkpoint?")
    return weights


class VQGAN(nn.Module):
    """Taming's VQModel without its training losses: encoder -> quant_conv -> codebook -> post_quant_conv ->
    decoder, under taming's key names. Images in [0, 1] at the interface (taming works in [-1, 1])."""

    def __init__(self, params: dict, with_encoder: bool = True, beta: float = 0.25):
        super().__init__()
        Encoder, Decoder, VectorQuantizer = taming_modules()
        ddconfig, embed_dim = params["ddconfig"], params["embed_dim"]
        self.params = params
        with contextlib.redirect_stdout(io.StringIO()):  # taming prints the latent shape
            self.decoder = Decoder(**ddconfig)
            self.encoder = Encoder(**ddconfig) if with_encoder else None
        self.quant_conv = nn.Conv2d(ddconfig["z_channels"], embed_dim, 1) if with_encoder else None
        self.quantize = VectorQuantizer(params["n_embed"], embed_dim, beta=beta)
        self.post_quant_conv = nn.Conv2d(embed_dim, ddconfig["z_channels"], 1)

    @property
    def factor(self) -> int:
        """How many pixels one latent cell covers along each side."""
        return 2 ** (len(self.params["ddconfig"]["ch_mult"]) - 1)

    @property
    def codebook(self) -> Tensor:
        return self.quantize.embedding.weight

    def encode(self, image: Tensor) -> Tensor:
        """The continuous latent (B, embed_dim, H/f, W/f) of images (B, 3, H, W) in [0, 1], before snapping."""
        if self.encoder is None:
            raise NtlbError("this VQGAN checkpoint has no encoder weights: start from a random latent")
        return self.quant_conv(self.encoder(image * 2 - 1))

    def snap(self, z: Tensor) -> Tensor:
        """Each latent vector replaced by its nearest codebook entry; gradients pass straight through to z."""
        snapped = self.codebook[self.nearest_codes(z)].permute(0, 3, 1, 2)
        return z + (snapped - z).detach()

    def nearest_codes(self, z: Tensor) -> Tensor:
        """The index (B, H/f, W/f) of each latent vector's nearest codebook entry."""
        flat = z.permute(0, 2, 3, 1)
        return torch.cdist(flat.reshape(-1, flat.shape[-1]), self.codebook).argmin(dim=-1).reshape(flat.shape[:-1])

    def decode(self, quantized: Tensor) -> Tensor:
        """Images in [0, 1] (unclamped) of quantized latents."""
        return (self.decoder(self.post_quant_conv(quantized)) + 1) / 2

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(reconstruction in [0, 1], codebook + commitment loss, code indices) of images in [0, 1] (training)."""
        quantized, loss, (_, _, codes) = self.quantize(self.encode(image))
        return self.decode(quantized), loss, codes.reshape(len(image), -1)


def load_vqgan(config: str | Path, checkpoint: str | Path) -> VQGAN:
    """A frozen VQGAN in eval mode from a taming config + checkpoint, with its encoder where the checkpoint has one."""
    params = read_vqgan_config(config)
    weights = read_vqgan_weights(checkpoint)
    has_encoder = "quant_conv.weight" in weights and any(k.startswith("encoder.") for k in weights)
    model = VQGAN(params, with_encoder=has_encoder)
    try:
        model.load_state_dict({k: v.float() for k, v in weights.items()
                               if model.encoder is not None or not k.startswith(ENCODER_SIDE)}, strict=True)
    except RuntimeError as err:
        raise NtlbError(f"{checkpoint} does not match {config}: {str(err).splitlines()[1].strip()}") from None
    return model.requires_grad_(False).eval()


@GENERATORS.register("vqgan")
class VQGANImage(nn.Module):
    """A frozen VQGAN decoder driven by a learned latent grid (embed_dim, H/f, W/f), f = 2^(levels - 1), that
    starts on random codebook entries (by seed); `encode(picture)` gives the latent of a picture where the
    checkpoint has an encoder."""

    def __init__(self, size: tuple[int, int], seed: int = 0, config: str | Path | None = None,
                 checkpoint: str | Path | None = None, l2_weight: float = STYLECLIP_L2, bank: str | Path | None = None):
        super().__init__()
        if config is None or checkpoint is None:
            raise NtlbError("the vqgan generator needs --vqgan-config YAML and --vqgan-checkpoint CKPT")
        self.vqgan = load_vqgan(config, checkpoint)
        self.size = tuple(size)
        self.l2_weight = float(l2_weight)
        self.bank = read_latent_bank(bank, len(self.vqgan.codebook)) if bank is not None else None
        self.latent = nn.Parameter(self.sample_latent(seed))

    @property
    def grid(self) -> tuple[int, int]:
        """The latent's (H/f, W/f)."""
        return math.ceil(self.size[0] / self.vqgan.factor), math.ceil(self.size[1] / self.vqgan.factor)

    def latent_of_codes(self, codes: Tensor) -> Tensor:
        """(N, embed_dim, H/f, W/f) latents of code indices (N, H/f, W/f)."""
        return self.vqgan.codebook[codes.long().to(self.vqgan.codebook.device)].permute(0, 3, 1, 2).clone()

    def sample_latent(self, seed: int) -> Tensor:
        """(1, embed_dim, H/f, W/f): a bank entry drawn by seed (an encoded picture: for world-vqgan a rendered
        world scene) where the bank's grid is this generator's, else `random_latent(seed)`."""
        if self.bank is None or tuple(self.bank.shape[1:]) != self.grid:
            return self.random_latent(seed)
        index = torch.randint(len(self.bank), (1,), generator=torch.Generator().manual_seed(seed))
        return self.latent_of_codes(self.bank[index])

    def random_latent(self, seed: int) -> Tensor:
        """(1, embed_dim, H/f, W/f): codebook entries drawn uniformly by seed."""
        codes = torch.randint(len(self.vqgan.codebook), self.grid, generator=torch.Generator().manual_seed(seed))
        return self.latent_of_codes(codes[None])

    @property
    def has_encoder(self) -> bool:
        return self.vqgan.encoder is not None

    def encode(self, image: Tensor) -> Tensor:
        """The latent (1, embed_dim, H/f, W/f) of an image (1, 3, H, W) in [0, 1] of this generator's size, snapped
        to the codebook."""
        if self.vqgan.encoder is None:
            raise NtlbError("this VQGAN checkpoint has no encoder weights: start from a random latent")
        with torch.no_grad():
            parameter = next(self.vqgan.parameters())
            return self.vqgan.snap(self.vqgan.encode(image.to(parameter)))

    def image_of(self, latent: Tensor) -> Tensor:
        """Images (N, 3, H, W) in [0, 1] of latents (N, embed_dim, H/f, W/f)."""
        image = self.vqgan.decode(self.vqgan.snap(latent))
        image = image + (image.clamp(0, 1) - image).detach()  # clamp the values, not the gradient
        return image[..., : self.size[0], : self.size[1]]

    def forward(self) -> Tensor:
        return self.image_of(self.latent)

    def train(self, mode: bool = True) -> VQGANImage:  # the decoder stays in eval mode (dropout off)
        super().train(False)
        return self


@GENERATORS.register("world-vqgan")
def world_vqgan(size: tuple[int, int], seed: int = 0) -> VQGANImage:
    """The VQGAN bundled with ntlb, trained on world scenes at 64 px (`ntlb world train-generator`), with its own
    l2 weight and its bank of encoded world scenes to start generation from."""
    config, weights = BUNDLED["world-vqgan"]
    if not weights.is_file():
        raise NtlbError(f"the bundled world-vqgan weights are missing ({weights}): reinstall ntlb, or train them with "
                        "'ntlb world train-generator'")
    bank = BUNDLED_BANK["world-vqgan"]
    return VQGANImage(size, seed, config=config, checkpoint=weights, l2_weight=WORLD_VQGAN_L2,
                      bank=bank if bank.is_file() else None)
