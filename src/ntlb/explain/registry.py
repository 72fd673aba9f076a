"""Explainers by name, timm style: `create("chefer2021", **options)` or `create(ExplainerSpec(...))`; new methods
plug in with `@register`."""

from __future__ import annotations

from typing import Any

from ..registry import Registry
from .spec import ExplainerSpec

EXPLAINERS = Registry("explainer")
register = EXPLAINERS.register
available = EXPLAINERS.available


def create(spec: ExplainerSpec | str, **options: Any):
    """Build the explainer once (a name, or a spec whose None options are the method's defaults; `options` are
    passed as given, on top); call it on batches: `explainer(model, images, texts)`."""
    spec = ExplainerSpec.of(spec)
    return EXPLAINERS.create(spec.name, **{**spec.given(), **options})
