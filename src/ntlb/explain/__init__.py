"""Explainers of CLIP scores; `explain(model, images, texts)` is the one-line entry point."""

from __future__ import annotations

from . import attention as _attention  # noqa: F401  (registers "attention", "rollout")
from . import chefer as _chefer  # noqa: F401  (registers "chefer2021")
from . import gradcam as _gradcam  # noqa: F401  (registers "gradcam")
from . import surgery as _surgery  # noqa: F401  (registers "clip_surgery")
from .base import Explainer
from .explanation import Explanation
from .inputs import ImageInput, TextInput
from .normalize import minmax, normalize_text, upsample, word_relevance
from .registry import available, create, register


def explain(
    model,
    images: ImageInput,
    texts: TextInput,
    *,
    method: str = "chefer2021",
    pairs: str = "all",
    start_layer_image: int = 0,
    start_layer_text: int = 0,
    logit_mode: str = "scaled",
    create_graph: bool = False,
    **options,
) -> Explanation:
    """Relevance of every patch and token for the CLIP scores of images x texts (or image i with text i).

    model: an adapter from `load_model`, or an open_clip / transformers CLIP you hold. images: (B, 3, H, W)
    preprocessed tensors, PIL images or paths. texts: strings or token ids. Negative start layers count from
    the end (-1 = last layer only). Differentiable when gradients are enabled and the inputs or the model
    require grad.
    """
    explainer = create(method, start_layer_image=start_layer_image, start_layer_text=start_layer_text,
                       logit_mode=logit_mode, create_graph=create_graph, **options)
    return explainer(model, images, texts, pairs=pairs)


__all__ = [
    "Explainer", "Explanation", "available", "create", "explain", "minmax", "normalize_text", "register",
    "upsample", "word_relevance",
]
