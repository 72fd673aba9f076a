"""ntlb: CLIP explains its similarity scores (No Token Left Behind, ECCV 2022).

The public names are imported when first read (PEP 562), so importing `ntlb.cli` or `ntlb.errors` loads no torch
and `ntlb --help` stays quick.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from .errors import Interrupted, NtlbError

if TYPE_CHECKING:
    from . import explainers
    from .explain import Explanation, explain, top_k
    from .models import ImageFeatures, Prompts, TextFeatures, load_model, wrap

__version__ = "0.1.0"
_HOMES = {"explainers": None, "Explanation": "explain", "top_k": "explain", "ImageFeatures": "models",
          "Prompts": "models", "TextFeatures": "models", "load_model": "models", "wrap": "models"}
__all__ = [
    "Explanation", "ImageFeatures", "Interrupted", "NtlbError", "Prompts", "TextFeatures", "explain", "explainers",
    "load_model", "top_k", "wrap", "__version__",
]


def __getattr__(name: str) -> Any:
    """A public name, imported when first read."""
    if name not in _HOMES:
        raise AttributeError(f"module 'ntlb' has no attribute {name!r}")
    home = _HOMES[name]
    value = importlib.import_module(f".{home or name}", __name__)
    value = value if home is None else getattr(value, name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """`ntlb.explain` is the function, as it was when this module imported it eagerly: importing the subpackage
    ntlb.explain (which sets the attribute of that name) does not replace it."""

    @property
    def explain(self):
        from .explain import explain

        return explain

    @explain.setter
    def explain(self, value) -> None:
        pass  # the import system records the subpackage; it stays reachable in sys.modules["ntlb.explain"]


sys.modules[__name__].__class__ = _Package
