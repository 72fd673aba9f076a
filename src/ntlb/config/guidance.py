"""Settings of the generator-driven runners: `ntlb edit`, `generate`, `blend` (and the generator choice that
layout generation shares)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import NtlbError
from . import Choices, LibraryText, check_choices, library_names, option
from .explainer import explainer_option

if TYPE_CHECKING:
    from ..explain.spec import ExplainerSpec

LAMBDAS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5)  # the paper's sweep
GUIDANCE = ("ntlb", "clip")


def word_scores() -> Choices:
    """The semantic-word scores."""
    return library_names("losses.semantic_words", "WORD_SCORES")


def generator_names() -> Choices:
    """The registered image generators."""
    return library_names("generators", "GENERATORS")


def parse_expl_weight(value: str) -> float | None:
    """'auto' (None: the paper's sweep) or a number."""
    if value == "auto":
        return None
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--expl-weight {value!r}: use 'auto' or a number >= 0") from None


def snapshots_within(config, every: int | None = None):
    """`config` (of edit, generate, blend or layout generation) with snapshots and checkpoints every `every` steps
    (None: its own `snapshot_every`), but no rarer than its steps: a run shorter than the cadence still snapshots at
    its end (the app passes its steps: one snapshot, at the end)."""
    config.snapshot_every = max(1, min(config.snapshot_every if every is None else every, config.steps))
    return config


def _check_common(steps: int, lr: float, snapshot_every: int) -> None:
    if steps < 1 or snapshot_every < 1:
        raise NtlbError(f"--steps {steps}, --snapshot-every {snapshot_every}: use at least 1")
    if lr <= 0:
        raise NtlbError(f"--lr {lr}: use a positive learning rate")


def _spec(value):
    from ..explain.spec import ExplainerSpec

    return ExplainerSpec.of(value)


STEPS = "optimisation steps"
ADAM = "Adam learning rate"
SEED = "random latents and augmentations"
SNAPSHOTS = "steps between snapshots and checkpoints"
WORD_SCORE = ("deletion: soft minimum over the words of what each adds to the score (the score minus the score "
              "of the text without it); it sees a missing word: the matching scene ranks first in 98 percent of "
              "one-word-wrong pairs (docs/results-explainers.md). paper: the paper's mean of the words' relevance "
              "shares, blind to a missing word (31 percent: shares sum to about 1 whatever the picture); released: "
              "the released code's weighted token sum; mass: interaction mass; softmin: soft minimum over the "
              "words' shares; contrast: each word's share against its share on fixed reference world scenes")
WORD_SCORE_DEFAULT = "deletion"  # the word score that wins the word-grounding test
WORD_EXPLAINER = "explainer of the word term's relevance (needs text relevance)"


@dataclass
class EditConfig:
    """StyleCLIP's latent-optimisation defaults plus the explainability term (None: the automatic lambda). `l2`
    None is the generator's own weight (`ntlb.generators.l2_weight`)."""

    steps: int = option(300, STEPS, app={"widget": "slider", "minimum": 2, "maximum": 300, "value": 60,
                                         "why": "a page answers in about a minute on a CPU"})
    lr: float = option(0.1, ADAM)
    l2: float | None = option(None, "weight of ||z - z0||^2",
                              default_help=LibraryText("generators", "STYLECLIP_L2",
                                                       "the generator's own: world-vqgan's is derived from its latent, "
                                                       "other generators use StyleCLIP's {}"))
    identity_weight: float = option(0.0, "weight of 1 - CLIP image-image cosine to the input (0: off, as "
                                         "StyleCLIP's default)")
    expl_weight: float | None = option(None, "lambda of the word term: 'auto' (the paper's sweep) or a number",
                                       parse=parse_expl_weight, default_help="auto",
                                       app={"widget": "text", "label": "lambda of the word term (empty or "
                                                                       "'auto': the paper's sweep)"})
    word_score: str = option(WORD_SCORE_DEFAULT, WORD_SCORE, choices=word_scores())
    explainer: ExplainerSpec = explainer_option(help=WORD_EXPLAINER)
    seed: int = option(0, SEED)
    snapshot_every: int = option(50, SNAPSHOTS)
    invert_steps: int = option(300, "steps of the inversion of a picture (generators without an encoder)",
                               cli=False)

    def __post_init__(self) -> None:
        self.explainer = _spec(self.explainer)
        _check_common(self.steps, self.lr, self.snapshot_every)
        check_choices(self)
        if self.expl_weight is not None and self.expl_weight < 0:
            raise NtlbError(f"--expl-weight {self.expl_weight}: use 'auto' or a weight >= 0")
        if (self.l2 is not None and self.l2 < 0) or self.identity_weight < 0:
            raise NtlbError("--l2 and --identity-weight must be >= 0")

    def expl_weights(self) -> tuple[float, ...]:
        """The explainability weights run side by side: the sweep, or lambda = 0 beside the one given."""
        if self.expl_weight is None:
            return LAMBDAS
        return (0.0,) if self.expl_weight == 0 else (0.0, float(self.expl_weight))


@dataclass
class GenerateConfig:
    """Multi-word guidance from a random latent: CLIP alone ("clip") or with the word term ("ntlb")."""

    method: str = option("ntlb", "ntlb: CLIP + the word term; clip: the CLIP-only baseline", choices=GUIDANCE,
                         flag="--guidance", old=("--method",))
    steps: int = option(300, STEPS, app={"widget": "slider", "minimum": 2, "maximum": 300, "value": 60,
                                         "why": "a page answers in about a minute on a CPU"})
    lr: float = option(0.1, ADAM)
    views: int = option(4, "augmented views per step")
    expl_weight: float = option(1.0, "lambda of the word term")
    candidates: int = option(16, "start latents ranked for the start (world-vqgan: encoded world scenes; else random)")
    word_score: str = option(WORD_SCORE_DEFAULT, WORD_SCORE, choices=word_scores())
    explainer: ExplainerSpec = explainer_option(help=WORD_EXPLAINER)
    seed: int = option(0, SEED)
    snapshot_every: int = option(50, SNAPSHOTS)

    def __post_init__(self) -> None:
        self.explainer = _spec(self.explainer)
        _check_common(self.steps, self.lr, self.snapshot_every)
        check_choices(self)
        if self.views < 1 or self.candidates < 1:
            raise NtlbError("--views and --candidates must be at least 1")
        if self.expl_weight < 0:
            raise NtlbError(f"--expl-weight {self.expl_weight}: use a weight >= 0")


@dataclass
class BlendConfig:
    """Essence-transfer settings (sized for the world's 64-pixel generator)."""

    steps: int = option(200, STEPS)
    lr: float = option(0.05, ADAM)
    consistency: float = option(0.5, "weight of the same CLIP shift for every source")
    identity: float = option(0.5, "weight of closeness to each source")
    l2: float = option(0.001, "weight of ||b||^2", cli=False)
    seed: int = option(0, SEED)
    snapshot_every: int = option(50, SNAPSHOTS)
    invert_steps: int = option(300, "steps of the inversion of each source (generators without an encoder)",
                               cli=False)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.snapshot_every < 1:
            raise NtlbError(f"--steps {self.steps}, --snapshot-every {self.snapshot_every}: use at least 1")
        if self.lr <= 0 or min(self.consistency, self.identity, self.l2) < 0:
            raise NtlbError("the learning rate must be positive and the loss weights >= 0")


@dataclass
class GeneratorChoice:
    """Which image generator a run optimises, and its factory options."""

    generator: str | None = option(None, "world-render (the world's renderer), world-vqgan (bundled, trained on the "
                                         "world), vqgan (your taming VQGAN), module (your TorchScript generator), "
                                         "pixels (weights-free)",
                                   choices=generator_names(), default_help="world-render with the bundled world "
                                                                           "model, else pixels")
    size: int | None = option(None, "generated image side in pixels",
                              default_help="64 with the bundled model, else the model's input size")
    vqgan_config: str | None = option(None, "taming VQGAN YAML (needed with --generator vqgan)")
    vqgan_checkpoint: str | None = option(None, "taming VQGAN .ckpt or .safetensors (needed with --generator vqgan)")
    module: str | None = option(None, "a torch.jit.save'd generator: forward(latent) -> images, optional "
                                      "encode(image) (needed with --generator module)")
    latent_shape: str | None = option(None, "latent shape C,H,W of --module",
                                      default_help="the module's latent_shape attribute")
    signed: bool = option(False, "--module's images are in [-1, 1], not [0, 1]")
    decay: float = option(1.0, "spectrum decay of the pixels generator: higher gives smoother, flatter colours "
                               "(1.5 suits the world's 64-pixel scenes)")
    refine: int | None = option(None, "passes of world-render's discrete refinement after the optimisation: a "
                                      "coordinate search over each object's colour, shape and presence on the "
                                      "run's own loss (0: off)", default_help="world-render's own")

    def options(self, name: str) -> dict:
        """The factory options of the generator `name`."""
        if name == "vqgan":
            return {"config": self.vqgan_config, "checkpoint": self.vqgan_checkpoint}
        if name == "pixels":
            return {"decay": self.decay}
        if name == "world-render" and self.refine is not None:
            return {"refine": self.refine}
        if name == "module":
            shape = tuple(int(v) for v in self.latent_shape.split(",")) if self.latent_shape else None
            return {"path": self.module, "latent_shape": shape, "signed": self.signed}
        return {}


@dataclass
class EditInputs:
    """`ntlb edit`'s inputs beside its config."""

    image: str = option(help="the picture to edit", positional=True)
    text: str = option(None, "what the edited picture should show", required=True)
    words: list[str] | None = option(None, "the semantic words to keep relevant", nargs="+",
                                     default_help="the text's content words, stop words removed")
    neglected_only: bool = option(False, "keep only the semantic words CLIP neglects on the input (relevance below "
                                         "0.7 of the top word)")
    out: str = option("out/edit", "output folder (edited.png, compare.png, metrics.json)")


@dataclass
class GenerateInputs:
    """`ntlb generate`'s inputs beside its config."""

    text: str = option(None, "the text to generate", required=True,
                       app={"value": "a green circle and a blue square", "why": "a text to start from"})
    words: list[str] | None = option(None, "the semantic words to keep relevant", nargs="+",
                                     default_help="the text's content words, stop words removed")
    out: str = option("out/generate", "output folder (image.png, metrics.json)")


@dataclass
class BlendInputs:
    """`ntlb blend`'s inputs beside its config."""

    sources: list[str] = option(help="source pictures", factory=list, positional=True, nargs="+")
    target: str = option(None, "the picture whose essence to transfer", required=True)
    out: str = option("out/blend", "output folder (blend.png, direction.pt, metrics.json)")
