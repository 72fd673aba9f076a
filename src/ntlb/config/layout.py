"""Settings of `ntlb layout generate` (paper Algorithm 1) and `layout evaluate`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import NtlbError
from . import check_choices, library_names, option
from .explainer import explainer_option

if TYPE_CHECKING:
    from ..explain.spec import ExplainerSpec

METHODS = ("ntlb", "masked", "masked+full")
DETECTORS = ("world", "torchvision", "none")


@dataclass
class LayoutConfig:
    """Algorithm 1's settings (paper defaults for the loss; steps and views sized for a CPU)."""

    method: str = option("ntlb", "ntlb's Dice loss, or baseline (a) masked or (b) masked + full similarity",
                         choices=METHODS, flag="--loss", old=("--method",), app={"label": "loss"})
    steps: int = option(300, "optimisation steps", app={"widget": "slider", "minimum": 2, "maximum": 400,
                                                        "value": 100, "why": "a page answers in about a minute on "
                                                                            "a CPU"})
    lr: float = option(0.1, "Adam learning rate (paper: 0.1)")
    views: int = option(4, "augmented views per step", app={"widget": "slider", "minimum": 1, "maximum": 8,
                                                            "step": 1})
    seed: int = option(0, "generator initialisation and augmentations")
    dice: str = option("paper", "Dice of the paper, or the released code's (no false-negative term)",
                       choices=library_names("losses.layout", "DICE_VARIANTS"))
    threshold: float = option(0.1, "Dice threshold", cli=False)
    temperature: float = option(20.0, "Dice temperature", cli=False)
    weight_scale: float = option(0.15, "box weight scale", cli=False)
    create_graph: bool = option(True, "differentiate through the explainer's gradients", cli=False)
    snapshot_every: int = option(50, "steps between snapshots and checkpoints")
    explainer: ExplainerSpec = explainer_option(help="explainer whose image maps the Dice loss reads (last layer, "
                                                     "cosine score)")

    def __post_init__(self) -> None:
        from ..explain.spec import ExplainerSpec

        self.explainer = ExplainerSpec.of(self.explainer)
        for name in ("steps", "views", "snapshot_every"):
            if getattr(self, name) < 1:
                raise NtlbError(f"{name.replace('_', '-')} = {getattr(self, name)}: use at least 1")
        if self.lr <= 0:
            raise NtlbError(f"lr = {self.lr}: use a positive learning rate")
        check_choices(self)


@dataclass
class LayoutInputs:
    """`ntlb layout generate`'s layout source, detector and output beside its config."""

    layout: str | None = option(None, "layout JSON (width, height, objects: box + text); see examples/layout.json "
                                      "(give exactly one layout source)")
    coco: str | None = option(None, "COCO instances JSON, with --image-id (give exactly one layout source)")
    image_id: int | None = option(None, "COCO image id (needed with --coco)")
    world_seed: int | None = option(None, "a random world layout by seed (give exactly one layout source)",
                                    app={"value": 3, "label": "world layout seed (or upload a layout JSON)",
                                         "why": "the page opens on a layout to run"})
    init_image: str | None = option(None, "start from this picture's encoding (generators with an encoder: "
                                          "world-render, world-vqgan, vqgan)", default_help="a random latent")
    detector: str | None = option(None, "detector for AP/AR", choices=DETECTORS,
                                  default_help="world for --world-seed layouts, else none")
    detector_model: str = option("fasterrcnn_resnet50_fpn", "torchvision detection model")
    detector_weights: str | None = option(None, "state dict file of the torchvision detector (needed with "
                                                "--detector torchvision)")
    out: str = option("out/layout", "output folder (checkpoint, snapshots, image)")


@dataclass
class EvaluateInputs:
    """`ntlb layout evaluate`: the runs of a Table 3."""

    runs: list[str] = option(help="output folders of 'ntlb layout generate'", factory=list, positional=True,
                             nargs="+")
