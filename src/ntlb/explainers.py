"""Registry of explainers by name: `ntlb.explainers.create("chefer2021")`."""

from .explain.registry import available, create, register

__all__ = ["available", "create", "register"]
