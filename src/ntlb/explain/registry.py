"""Explainers by name, timm style: `create("chefer2021", **options)`; new methods plug in with `@register`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import NtlbError

_REGISTRY: dict[str, type] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator that makes an explainer available under `name`."""

    def add(cls: type) -> type:
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return add


def available() -> list[str]:
    """Names of the registered explainers."""
    return sorted(_REGISTRY)


def create(name: str, **options: Any):
    """Build the explainer `name` once; call it on batches: `explainer(model, images, texts)`."""
    if name not in _REGISTRY:
        raise NtlbError(f"unknown explainer '{name}': choose one of {', '.join(available())}")
    return _REGISTRY[name](**options)
