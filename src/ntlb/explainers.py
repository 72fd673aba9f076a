"""Registry of explainers by name: `ntlb.explainers.create("chefer2021")`."""

from .explain.registry import available, create, register
from .explain.spec import ExplainerSpec

__all__ = ["ExplainerSpec", "available", "create", "register"]
