"""Settings of `ntlb prompt train | eval | explain` (few-shot prompt learning with the explainability loss)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import NtlbError
from . import Resources, check_choices, library_names, option
from .explainer import explainer_option

if TYPE_CHECKING:
    from ..explain.spec import ExplainerSpec

POSITIONS = ("end", "middle", "front")
RESOURCE_KEYS = ("max_memory",)  # settings that older prompts files kept among their result settings


@dataclass
class PromptConfig:
    """Everything that defines a prompt-learning run (paper defaults: SGD 0.002, cosine, 50 epochs, batch 32)."""

    n_ctx: int = option(16, "number M of context vectors", flag="--ctx")
    position: str = option("middle", "where the class name goes", choices=POSITIONS)
    csc: bool = option(False, "class-specific context vectors")
    init: str | None = option(None, "initialise from words, e.g. 'a photo of a' (sets M)",
                              default_help="random vectors")
    expl_weight: float = option(0.1, "lambda of the explainability loss; 0 is CoOp (0.1: within 1 point of CoOp on "
                                     "the world's shifted sets, where 1 costs up to 2.8; paper: 1 ViT-B/16, 3 "
                                     "others)")
    explainer: ExplainerSpec = explainer_option(help="explainer whose text relevance the loss reads")
    score: str = option("coop", "S(c): the released code's share of the relevance on the class name, or the "
                                "paper's Eq. 2 ratio (unbounded: with --reduction paper and lambda 3 it collapses "
                                "accuracy, docs/results-prompt-learning.md)",
                        choices=library_names("losses.class_name", "SCORES"))
    reduction: str = option("released", "the term on the other classes: the released code's mean over B x C, the "
                                        "paper's sum over the other classes (Eq. 3), or its mean (bounded)",
                            choices=library_names("losses.class_name", "REDUCTIONS"))
    also_minimize: bool = option(True, "drop the term on the wrong classes")
    start_layer_text: int = option(0, "first text layer of the loss's relevance", cli=False)
    shots: int = option(1, "images per class")
    seed: int = option(0, "shots, initialisation and shuffling")
    epochs: int = option(50, "passes over the shots")
    batch_size: int = option(32, "images per step")
    lr: float = option(0.002, "SGD learning rate (1 warm-up epoch, then cosine)")
    momentum: float = option(0.9, "SGD momentum", cli=False)
    weight_decay: float = option(5e-4, "SGD weight decay", cli=False)
    warmup_epochs: int = option(1, "warm-up epochs", cli=False)
    warmup_lr: float = option(1e-5, "warm-up learning rate", cli=False)
    augment: bool = option(True, "no random resized crop and flip")
    model: str | None = option(None, "the model's name (set from --model)", cli=False)
    pretrained: str | None = option(None, "the model's weights (set from --pretrained)", cli=False)
    classnames: list[str] = option(help="the class names (set from the data)", factory=list, cli=False)

    def __post_init__(self) -> None:
        from ..explain.spec import ExplainerSpec

        self.explainer = ExplainerSpec.of(self.explainer)
        for name, flag in (("n_ctx", "--ctx"), ("shots", "--shots"), ("epochs", "--epochs"),
                           ("batch_size", "--batch-size")):
            if getattr(self, name) < 1:
                raise NtlbError(f"{flag} {getattr(self, name)}: use at least 1")
        if self.lr <= 0:
            raise NtlbError(f"--lr {self.lr}: use a learning rate above 0")
        if self.expl_weight < 0:
            raise NtlbError(f"--expl-weight {self.expl_weight}: use a weight of 0 or more")
        check_choices(self)

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> PromptConfig:
        """The config a prompts file or checkpoint recorded (older files also kept their memory budget there)."""
        return cls(**{key: value for key, value in settings.items() if key not in RESOURCE_KEYS})


@dataclass
class TrainInputs:
    """`ntlb prompt train`'s data and output beside its config."""

    data: str = option(None, "image folder: one sub-folder per class (classnames.txt optional; ImageNet synset "
                             "folders named automatically)", required=True)
    classnames: str | None = option(None, "class names file ('<folder> <name>' per line)",
                                    default_help="classnames.txt in --data, else the folder names")
    out: str = option(None, "prompts file to write when training ends (until then the checkpoint is "
                            "<out>.partial, which a rerun resumes from)", required=True)


@dataclass
class TrainResources(Resources):
    """A prompt-learning run's resources: another budget or device resumes the same run."""

    max_memory: str | None = option(None, "memory budget of one step, e.g. 8GB: classes go through the text "
                                          "encoder in chunks to fit it", default_help="half the memory available")


@dataclass
class EvalInputs:
    """`ntlb prompt eval`: learned prompts on image-folder datasets."""

    prompts: str = option(None, "prompts file from 'ntlb prompt train'", required=True)
    data: list[str] = option(help="image folders to evaluate on", factory=list, nargs="+", required=True)
    out: str | None = option(None, "folder for one <dataset>.json per dataset",
                             default_help="the prompts file's name + .eval/")


@dataclass
class PromptExplainInputs:
    """`ntlb prompt explain`: the learned prompt's words and patches."""

    images: list[str] = option(help="image files", factory=list, positional=True, nargs="+")
    prompts: str = option(None, "prompts file from 'ntlb prompt train'", required=True,
                          app={"label": "prompts file (ntlb prompt train --out)", "widget": "file"})
    label: str | None = option(None, "the true class name, explained beside the prediction",
                               default_help="the prediction only", app={"label": "true class (optional)"})
    out: str = option("out/prompt-explain", "output folder")
