"""The explainer setting of every runner: one `ExplainerSpec` field, and the options a command or tab may offer
beside its name (None = the method's own default)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import Choices, library_names, option

if TYPE_CHECKING:
    from ..explain.spec import ExplainerSpec


def explainer_names() -> Choices:
    """The registered explainers."""
    return library_names("explain.registry", "EXPLAINERS")


def logit_modes() -> Choices:
    """The scores an explanation can explain."""
    return library_names("explain.relevance", "LOGIT_MODES")


def interaction_rules() -> Choices:
    """The path-integral rules of the interactions explainer."""
    return library_names("explain.interactions", "RULES")


@dataclass
class ExplainerOptions:
    """An explainer's options that a command or tab may offer (`only`: the method that has it)."""

    start_layer_image: int | None = option(
        None, "first image layer used: 0 = all layers, negative counts from the end, -1 = the last layer only, as "
              "the authors' later notebook", default_help="the method's own: 0 for chefer2021 and rollout, -2 for "
                                                          "legrad", app={"label": "start layer, image (empty: the "
                                                                                  "method's own; -1: last only)"})
    start_layer_text: int | None = option(None, "first text layer used", default_help="the method's own, 0 = all "
                                                                                      "layers",
                                          app={"label": "start layer, text (empty: the method's own)"})
    logit_mode: str | None = option(None, "score explained: logit_scale x cosine (+ SigLIP's bias), the cosine, or "
                                          "SigLIP's match probability sigmoid(s x cosine + b)",
                                    choices=logit_modes(), default_help="the method's own: scaled",
                                    app={"label": "score explained"})
    empty_templates: list[str] | None = option(
        None, "file of prompt templates (one per line, {} for the class) whose empty-prompt embedding is "
              "subtracted", flag="--surgery-templates", lines="template", only="clip_surgery",
        default_help="open_clip's 80; the reference code uses 85")
    steps: int | None = option(None, "points on the path from the reference", only="interactions",
                               default_help="10, as the released code", app={"label": "points on the path",
                                                                             "widget": "slider", "minimum": 1,
                                                                             "maximum": 20, "step": 1})
    rule: str | None = option(None, "the path integral's rule; riemann = the released code's, gauss = "
                                    "Gauss-Legendre, complete to round-off", choices=interaction_rules(),
                              only="interactions", default_help="riemann")
    window: int | None = option(None, "window side in cells", only="occlusion", default_help="1")


def _spec(name: str):
    def make() -> ExplainerSpec:
        from ..explain.spec import ExplainerSpec

        return ExplainerSpec(name)

    return make


def explainer_option(name: str = "chefer2021", help: str = "explainer", offers: tuple[str, ...] = (),
                     **meta) -> ExplainerSpec:
    """An `ExplainerSpec` field whose method defaults to `name`; the command line and the app offer the
    `ExplainerOptions` named in `offers` beside it."""
    return field(default_factory=_spec(name), metadata={"help": help, "explainer": name, "offers": offers,
                                                        "choices": explainer_names(), **meta})
