"""Things made by name (explainers, generators, detectors), timm style: `REGISTRY.create("name", **options)`.

New entries plug in with `@REGISTRY.register("name")` without editing ntlb.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import NtlbError


class Registry:
    """Factories of one kind by name; `create` gives a one-line error that lists the known names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator that makes a class or factory function available under `name` (a class gets `.name`)."""

        def add(factory: Callable[..., Any]) -> Callable[..., Any]:
            self._factories[name] = factory
            if isinstance(factory, type):
                factory.name = name
            return factory

        return add

    def available(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._factories)

    def get(self, name: str) -> Callable[..., Any]:
        """The factory registered as `name`."""
        if name not in self._factories:
            raise NtlbError(f"unknown {self.kind} '{name}': choose one of {', '.join(self.available())}")
        return self._factories[name]

    def create(self, name: str, **options: Any) -> Any:
        """Build the entry `name` with `options`."""
        return self.get(name)(**options)

    def __contains__(self, name: str) -> bool:
        return name in self._factories
