"""Settings of `ntlb world render | export | train | train-generator` and `ntlb benchmark explainers`."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import NtlbError
from . import Resources, option

TASKS = ("colour-shape", "shape")
SPLITS = ("train", "test")
VARIANTS = ("base", "seed", "outline", "clutter", "palette", "cue", "cue-swapped")


@dataclass
class RenderConfig:
    """World scenes and a scenes.json with their truth."""

    seed: int = option(0, "first scene seed")
    count: int = option(12, "number of scenes")
    objects: int | None = option(None, "objects per scene", default_help="1 to 4 at random")
    size: int = option(128, "image side in pixels: 128 to look at; the world's models read 64, the size export, "
                            "layouts and generation use")
    out: str = option("out/world", "output folder")


@dataclass
class ExportConfig:
    """A world classification set as one folder per class."""

    task: str = option("colour-shape", "48 colour x shape classes, or the 6 shapes", choices=TASKS)
    split: str = option("test", "seed space of the scenes", choices=SPLITS)
    variant: str = option("base", "seed, outline, clutter, palette play ImageNet-V2, -Sketch, -A, -R; cue tints "
                                  "each background by its class (a spurious cue), cue-swapped by another class",
                          choices=VARIANTS)
    per_class: int = option(10, "images per class")
    size: int = option(64, "image side in pixels (64: the world's models' input size; render's 128 is for "
                           "looking)")
    out: str = option(None, "output folder", required=True)


@dataclass
class WorldTrainConfig:
    """The world CLIP's contrastive training on world captions (checkpoints and resumes from --out)."""

    steps: int = option(2000, "training steps")
    batch_size: int = option(128, "captioned scenes per step")
    lr: float = option(5e-4, "peak AdamW learning rate (warm-up, then cosine)")
    warmup: int = option(150, "learning-rate warm-up steps", cli=False)
    weight_decay: float = option(0.05, "AdamW weight decay of the matrices (not of embeddings, norms, biases)",
                                 cli=False)
    init: str | None = option(None, "weights to start from (.safetensors/.pt)",
                              default_help="random initialisation")


@dataclass
class WorldTrainInputs:
    """Where `ntlb world train` keeps its run."""

    out: str = option("runs/world", "run folder (checkpoint, loss curve, weights)")


@dataclass
class GeneratorTrainInputs:
    """Where `ntlb world train-generator` keeps its run."""

    out: str = option("runs/world-vqgan", "run folder (checkpoint, loss curve, weights)")


@dataclass
class LongRunResources(Resources):
    """A long training run's resources: where it runs, how often it checkpoints, when it stops (resumably)."""

    checkpoint_every: int = option(100, "steps between checkpoints")
    max_minutes: float | None = option(None, "stop (resumably) after this long", default_help="no limit")


@dataclass
class GeneratorTrainResources(LongRunResources):
    """The world VQGAN's training resources."""

    checkpoint_every: int = option(250, "steps between checkpoints")


@dataclass
class VQGANTrainConfig:
    """The world VQGAN's architecture and training settings (sized for 2 CPU cores)."""

    steps: int = option(12000, "training steps")
    batch_size: int = option(16, "scenes per step")
    lr: float = option(4e-4, "peak Adam learning rate (warm-up, then cosine)")
    warmup: int = option(200, "learning-rate warm-up steps")
    size: int = option(64, "image side", cli=False)
    ch: int = option(32, "base channels", cli=False)
    ch_mult: list[int] = option(help="channel multipliers", factory=lambda: [1, 2, 2], cli=False)
    num_res_blocks: int = option(1, "residual blocks per level", cli=False)
    z_channels: int = option(64, "latent channels", cli=False)
    embed_dim: int = option(32, "code dimension", cli=False)
    n_embed: int = option(512, "codebook size", flag="--codes")
    beta: float = option(0.25, "commitment weight", cli=False)
    object_weight: float = option(4.0, "extra weight of object pixels in the L1 loss")
    adversarial_weight: float = option(0.0, "weight of the PatchGAN generator loss (0: none)")
    adversarial_start: int = option(0, "step from which the PatchGAN trains")
    restart_every: int = option(200, "steps between restarts of unused codes", cli=False)
    init: str | None = option(None, "start from these weights (a run's checkpoint.pt or its .safetensors) on a "
                                    "fresh schedule", default_help="a random initialisation")

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "size", "ch", "n_embed", "restart_every"):
            if getattr(self, name) < 1:
                raise NtlbError(f"--{name.replace('_', '-')} {getattr(self, name)}: use at least 1")
        if self.lr <= 0 or self.object_weight < 0 or self.adversarial_weight < 0:
            raise NtlbError("learning rate must be positive and the loss weights non-negative")

    def params(self) -> dict:
        """The model.params of the taming config."""
        ddconfig = {"double_z": False, "z_channels": self.z_channels, "resolution": self.size, "in_channels": 3,
                    "out_ch": 3, "ch": self.ch, "ch_mult": list(self.ch_mult), "num_res_blocks": self.num_res_blocks,
                    "attn_resolutions": [], "dropout": 0.0}
        return {"embed_dim": self.embed_dim, "n_embed": self.n_embed, "ddconfig": ddconfig}


@dataclass
class BenchmarkConfig:
    """Every explainer measured on held-out world scenes."""

    count: int = option(100, "scenes per setting")
    explainers: str | None = option(None, "comma-separated explainers", old=("--methods",), default_help="all")
    out: str = option("out/benchmark", "output folder")
    grounding: int = option(0, "also the word-grounding test: pairs per kind of false word (colour, shape, missing "
                               "object, swapped colours) for every explainer x logit mode x normalisation x word "
                               "score; 0: off, 40: the results doc's run")


@dataclass
class AppConfig:
    """`ntlb app`: where the page is served."""

    host: str = option("127.0.0.1", "address to serve on (0.0.0.0 to reach it from elsewhere)")
    port: int = option(7860, "port to serve on")
    preload: bool = option(False, "open the page on the first example, explained")
