"""Explainers by name, timm style: `create("chefer2021", **options)`; new methods plug in with `@register`."""

from __future__ import annotations

from typing import Any

from ..registry import Registry

EXPLAINERS = Registry("explainer")
register = EXPLAINERS.register
available = EXPLAINERS.available


def create(name: str, **options: Any):
    """Build the explainer `name` once; call it on batches: `explainer(model, images, texts)`."""
    return EXPLAINERS.create(name, **options)
