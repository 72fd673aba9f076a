"""An explainer as one value: `ExplainerSpec(name, options)`, where an option of None means the method's own
default. It travels unchanged from the command line or the app through a runner to `create(spec)`, and it is
what a run's settings record (plain JSON: name and the options given)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import NtlbError


@dataclass(frozen=True)
class ExplainerSpec:
    """A registered explainer's name and its options; None values are left to the method."""

    name: str = "chefer2021"
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, value: ExplainerSpec | str | Mapping[str, Any]) -> ExplainerSpec:
        """A spec from a spec, a name, or its settings dict ({"name": ..., "options": {...}})."""
        if isinstance(value, ExplainerSpec):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping) and "name" in value:
            return cls(value["name"], dict(value.get("options") or {}))
        raise NtlbError(f"explainer {value!r}: give a registered name such as 'chefer2021' or an ExplainerSpec")

    def given(self) -> dict[str, Any]:
        """The options set (not None): what `create` passes to the method."""
        return {key: value for key, value in self.options.items() if value is not None}

    def with_options(self, **options: Any) -> ExplainerSpec:
        """The same method with these options set on top (a runner's fixed ones, e.g. the layout's last layer)."""
        return ExplainerSpec(self.name, {**self.options, **options})

    def __str__(self) -> str:
        given = self.given()
        return self.name + (f"({', '.join(f'{k}={v!r}' for k, v in given.items())})" if given else "")
