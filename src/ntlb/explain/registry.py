"""Explainers by name, timm style: `create("chefer2021", **options)` or `create(ExplainerSpec(...))`; new methods
plug in with `@register`.

What an explainer can give is a property of its class (flags on `Explainer`), so runners ask the registry with
`require(name, capability, purpose)` and their error messages list the registered methods that can.
"""

from __future__ import annotations

from typing import Any

from ..errors import NtlbError
from ..registry import Registry
from .spec import ExplainerSpec

EXPLAINERS = Registry("explainer")
register = EXPLAINERS.register
available = EXPLAINERS.available

# capability -> the class flag that says an explainer has it
CAPABILITIES = {
    "text relevance": "gives_text_relevance",
    "image maps": "gives_image_maps",
    "token x patch interactions": "gives_interactions",
    "maps of attention-pooled image towers": "reads_attention_pooling",
    "gradients": "uses_gradients",
}


def create(spec: ExplainerSpec | str, **options: Any):
    """Build the explainer once (a name, or a spec whose None options are the method's defaults; `options` are
    passed as given, on top); call it on batches: `explainer(model, images, texts)`."""
    spec = ExplainerSpec.of(spec)
    return EXPLAINERS.create(spec.name, **{**spec.given(), **options})


def _flag(capability: str) -> str:
    if capability not in CAPABILITIES:
        raise NtlbError(f"unknown explainer capability '{capability}': use one of {', '.join(CAPABILITIES)}")
    return CAPABILITIES[capability]


def has(spec: ExplainerSpec | str, capability: str) -> bool:
    """Whether the registered explainer (a name or a spec) gives `capability` (a key of CAPABILITIES)."""
    return bool(getattr(EXPLAINERS.get(ExplainerSpec.of(spec).name), _flag(capability)))


def capable(capability: str) -> list[str]:
    """The registered explainers that give `capability`, sorted."""
    flag = _flag(capability)
    return [name for name in available() if getattr(EXPLAINERS.get(name), flag)]


def require(spec: ExplainerSpec | str, capability: str, purpose: str) -> None:
    """A one-line error when the explainer (a name or a spec) lacks `capability`, naming the registered ones that
    have it."""
    if not has(spec, capability):
        raise NtlbError(f"explainer '{ExplainerSpec.of(spec).name}' gives no {capability}: {purpose} needs one "
                        f"that does ({', '.join(capable(capability))})")
