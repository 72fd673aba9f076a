"""Explainers of CLIP scores; `explain(model, images, texts)` is the one-line entry point."""

from __future__ import annotations

from ..models.inputs import ImageFeatures, ImageInput, Prompts, TextFeatures, TextInput
from . import attention as _attention  # noqa: F401  (registers "attention", "rollout")
from . import chefer as _chefer  # noqa: F401  (registers "chefer2021")
from . import decomposition as _decomposition  # noqa: F401  (registers "decomposition")
from . import gem as _gem  # noqa: F401  (registers "gem")
from . import gradcam as _gradcam  # noqa: F401  (registers "gradcam")
from . import interactions as _interactions  # noqa: F401  (registers "interactions")
from . import legrad as _legrad  # noqa: F401  (registers "legrad")
from . import lrp as _lrp  # noqa: F401  (registers "lrp")
from . import occlusion as _occlusion  # noqa: F401  (registers "occlusion")
from . import surgery as _surgery  # noqa: F401  (registers "clip_surgery")
from .base import Explainer
from .explanation import Explanation
from .gradient import GradientExplainer
from .normalize import minmax, normalize_text, upsample, word_relevance
from .registry import available, create, register
from .shifts import shift_averaged
from .spec import ExplainerSpec
from .targets import AllPairs, ByScores, Columns, Diagonal, Pairs, Targets, TopK, top_k
from .word_contributions import word_contribution_maps, word_score_drops


def explain(
    model,
    images: ImageInput,
    texts: TextInput,
    *,
    method: str = "chefer2021",
    pairs: Pairs = "all",
    start_layer_image: int | None = None,
    start_layer_text: int | None = None,
    logit_mode: str = "scaled",
    create_graph: bool = False,
    **options,
) -> Explanation:
    """Relevance of every patch and token for the CLIP scores of images x texts (or chosen pairs).

    model: an adapter from `load_model`, or an open_clip / transformers CLIP you hold. images: (B, 3, H, W)
    preprocessed tensors, PIL images, paths or `ImageFeatures`. texts: strings, token ids, `Prompts` or
    `TextFeatures`. pairs: a `Targets` value (`AllPairs()`, `Diagonal()`, `Columns(indices)`, `TopK(k)`) or "all",
    "diagonal", a (B, K) tensor of text indices or `top_k(k)`; the maps are (B, K, ...) whatever they are (K = 1 for
    Diagonal). Negative start
    layers count from the end (-1 = last layer only); None keeps the method's own default (0, all layers, for
    chefer2021 and rollout). Differentiable when gradients are enabled and the inputs or the model require grad.
    """
    spec = ExplainerSpec(method, {"start_layer_image": start_layer_image, "start_layer_text": start_layer_text})
    explainer = create(spec, logit_mode=logit_mode, create_graph=create_graph, **options)
    return explainer(model, images, texts, pairs=pairs)


__all__ = [
    "AllPairs", "ByScores", "Columns", "Diagonal", "Explainer", "ExplainerSpec", "Explanation", "GradientExplainer",
    "ImageFeatures", "Pairs", "Prompts", "Targets", "TextFeatures", "TopK", "available", "create", "explain",
    "minmax", "normalize_text", "register", "shift_averaged", "top_k", "upsample", "word_contribution_maps",
    "word_relevance", "word_score_drops",
]
