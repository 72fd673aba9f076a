"""Settings of the explanation runners: `ntlb explain`, `demo`, `compare`, `explain-pair`, `explain-dataset`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import LibraryText, Resources, option, same_as
from .explainer import ExplainerOptions, explainer_option

if TYPE_CHECKING:
    from ..explain.spec import ExplainerSpec

EXPLAIN_OFFERS = ("start_layer_image", "start_layer_text", "logit_mode", "empty_templates", "steps", "rule")
CLASSES_TOP_K = 5  # the best-scoring classes explained per image of a dataset (when they are classes)


@dataclass
class ExplainConfig:
    """Images x texts explained into a folder (overlays, explanations.json, report.html, grid.png); with a
    concepts file, each image's zero-shot class explained by its concepts."""

    images: list[str] = option(help="image files (PNG, JPEG, ...)", factory=list, positional=True, nargs="+")
    text: list[str] = option(help="a text to explain; repeat for more", factory=list, repeat=True)
    texts: str | None = option(None, "file of texts (or class names), one per line, added to the --text ones",
                               default_help="none")
    explainer: ExplainerSpec = explainer_option(offers=EXPLAIN_OFFERS, old=("--method",))
    concepts: str | None = option(None, "file of concepts, one per line (examples/world-concepts.txt for the "
                                        "world): explain each image's zero-shot class among the texts by at most "
                                        "--k concepts, each with its share of the score and its map (concepts.png, "
                                        "concepts.json)", default_help="none")
    k: int | None = option(None, "with --concepts: at most this many concepts",
                           default_help=LibraryText("explain.concepts", "CONCEPTS_K"))
    template: str | None = option(None, "with --concepts: prompt template of the classes and concepts",
                                  default_help=LibraryText("explain.concepts", "CLASS_TEMPLATE", "'{}'"))
    box: list[float] | None = option(None, "with --explainer interactions: print the words that the region x0 y0 "
                                           "x1 y1 (pixels of each image) matches", nargs=4,
                                     metavar=("X0", "Y0", "X1", "Y1"), default_help="no box")
    word_maps: bool = option(False, "also one overlay per semantic word of each text: the region the word matches, "
                                    "mapped by the explainer from what the word adds to the score (--explainer "
                                    "interactions always writes its own word maps)")
    shifts: int | None = option(None, "with --word-maps: shifts per side of a patch that the word maps are averaged "
                                      "over, evenly spread below one patch (1: none)",
                                default_help=LibraryText("explain.shifts", "SHIFTS"))
    out: str = option("out/explain", "output folder (files of an earlier run there are replaced)")
    quiet: bool = option(False, "do not print the highlighted words")


@dataclass
class DemoConfig:
    """A rendered world scene explained with its own captions and a wrong one."""

    seed: int = option(7, "scene seed")
    explainer: ExplainerSpec = explainer_option(offers=EXPLAIN_OFFERS, old=("--method",))
    out: str = option("out/demo", "output folder (files of an earlier run there are replaced)")
    quiet: bool = option(False, "do not print the highlighted words")


@dataclass
class ExplainResources(Resources):
    """An explanation's resources: images per forward pass and the memory budget."""

    batch_size: int | None = option(8, "images per forward pass")


@dataclass
class CompareConfig:
    """The same images and texts under several explainers, one figure."""

    images: list[str] = option(help="image files (PNG, JPEG, ...)", factory=list, positional=True, nargs="+")
    text: list[str] = option(help="a text to explain; repeat for more", factory=list, repeat=True)
    explainers: str | None = option(None, "comma-separated explainers", old=("--methods",),
                                    default_help="all registered ones")
    logit_mode: str | None = same_as(ExplainerOptions, "logit_mode", help="score explained")
    out: str = option("out/compare", "output folder")


@dataclass
class PairConfig:
    """The similarity of a query image with each of the others, a map on each image of each pair."""

    images: list[str] = option(help="the query image, then the images to compare it with", factory=list,
                               positional=True, nargs="+")
    explainer: ExplainerSpec = explainer_option(
        help="explainer: a gradient-attention method, or occlusion (model-agnostic baseline)",
        offers=("start_layer_image", "window"), old=("--method",))
    out: str = option("out/pairs", "output folder (files of an earlier run there are replaced)")


@dataclass
class DatasetSettings:
    """What defines a dataset explanation (a rerun with other settings into the same folder is refused)."""

    data: str = option(help="an image folder (class folders or images), a .txt file list, or WebDataset shards "
                            "(data-{000000..000009}.tar)", positional=True)
    texts: list[str] = option(help="the texts (class names with the template)", factory=list, cli=False)
    template: str = option("{}", "prompt template", cli=False)
    top_k: int | None = option(None, "explain each image's k best-scoring texts (None: every text)", cli=False)
    explainer: ExplainerSpec = explainer_option(offers=("start_layer_image", "start_layer_text", "logit_mode"),
                                                old=("--method",))
    shard_size: int = option(1024, "images per output shard (a .tar input: one shard per .tar)")
    model: str | None = option(None, cli=False)
    pretrained: str | None = option(None, cli=False)

    def __post_init__(self) -> None:
        from ..explain.spec import ExplainerSpec

        self.explainer = ExplainerSpec.of(self.explainer)


@dataclass
class DatasetInputs:
    """`ntlb explain-dataset`'s inputs beside its settings."""

    classes: str | None = option(None, "file of class names, one per line",
                                 default_help="the folder's classes, unless --text")
    text: list[str] = option(help="a text to explain; repeat for more", factory=list, repeat=True)
    template: str | None = option(None, "prompt template",
                                  default_help=LibraryText("explain.concepts", "CLASS_TEMPLATE",
                                                           "'{}' for classes, '{{}}' for texts"))
    top_k: int | None = option(None, "explain each image's k best-scoring texts",
                               default_help=f"{CLASSES_TOP_K} for classes, every --text")
    out: str = option(None, "output folder (shards/, index.json, settings.json)", required=True)


@dataclass
class DatasetResources(Resources):
    """A dataset explanation's resources."""

    batch_size: int | None = option(32, "images per forward pass")
    workers: int = option(2, "DataLoader worker processes per process")
    max_memory: str | None = option(None, "memory budget of one batch, e.g. 6GB",
                                    default_help="half the memory available")
