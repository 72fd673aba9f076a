"""Explainers by name, timm style: `create("chefer2021", **options)`; new methods plug in with `@register`.

What an explainer can give is a property of its class (flags on `Explainer`), so runners ask the registry with
`require(name, capability, purpose)` and their error messages list the registered methods that can.
"""

from __future__ import annotations

from typing import Any

from ..errors import NtlbError
from ..registry import Registry

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


def create(name: str, **options: Any):
    """Build the explainer `name` once; call it on batches: `explainer(model, images, texts)`."""
    return EXPLAINERS.create(name, **options)


def _flag(capability: str) -> str:
    if capability not in CAPABILITIES:
        raise NtlbError(f"unknown explainer capability '{capability}': use one of {', '.join(CAPABILITIES)}")
    return CAPABILITIES[capability]


def has(name: str, capability: str) -> bool:
    """Whether the registered explainer `name` gives `capability` (a key of CAPABILITIES)."""
    return bool(getattr(EXPLAINERS.get(name), _flag(capability)))


def capable(capability: str) -> list[str]:
    """The registered explainers that give `capability`, sorted."""
    flag = _flag(capability)
    return [name for name in available() if getattr(EXPLAINERS.get(name), flag)]


def require(name: str, capability: str, purpose: str) -> None:
    """A one-line error when explainer `name` lacks `capability`, naming the registered ones that have it."""
    if not has(name, capability):
        raise NtlbError(f"explainer '{name}' gives no {capability}: {purpose} needs one that does "
                        f"({', '.join(capable(capability))})")
