"""Every runner's settings, declared once: a typed dataclass per runner whose fields carry their default, type,
choices and help. The command line (`ntlb.cli.fields`) and the app (`ntlb.app.widgets`) are generated from these
fields, so a default lives in one place.

What defines a result (the runner's config: texts, steps, lr, lambda, explainer spec, seed) is kept apart from
what runs it (`Resources`: device, workers, memory budget, progress): a run's identity (its resume check, its
record) is the result config alone, so a run resumes on another device or under another budget.

These modules import no torch (choices are read from the library's registries when first needed), so building
the command line stays quick.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import MISSING, dataclass, field
from functools import cached_property
from typing import Any


class Choices:
    """Choices read from the library when first needed (a command parses, its help is shown, a widget is built),
    not when declared: the names come from registries that import torch, which `ntlb --help` does not need."""

    def __init__(self, names: Callable[[], Iterable[str]]):
        self._names = names

    @cached_property
    def names(self) -> list[str]:
        return list(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __contains__(self, value: object) -> bool:
        return value in self.names

    def __len__(self) -> int:
        return len(self.names)


class LibraryText:
    """A help's text naming a constant of the library (`ntlb.<module>.<name>`, written into `text`), read when the
    help is shown rather than when declared: a help refers to the library's default instead of restating it, and
    `ntlb --help` still imports no torch."""

    def __init__(self, module: str, name: str, text: str = "{}"):
        self.module, self.name, self.text = module, name, text

    def __str__(self) -> str:
        from importlib import import_module

        return self.text.format(getattr(import_module(f"ntlb.{self.module}"), self.name))


def library_names(module: str, name: str) -> Choices:
    """Choices read from `ntlb.<module>.<name>` (a sequence of names, or a registry) when first needed."""

    def names() -> list[str]:
        from importlib import import_module

        value = getattr(import_module(f"ntlb.{module}"), name)
        return value.available() if hasattr(value, "available") else list(value)

    return Choices(names)


def option(default: Any = MISSING, help: str = "", *, factory: Callable[[], Any] | None = None, **meta: Any) -> Any:
    """A setting: its default (or `factory`), its help, and how the command line and the app show it.

    meta (all optional): choices (a list or `Choices`), flag (the option's name when not the field's, e.g.
    "--ctx"), old (hidden old spellings that still work), positional, nargs, repeat (--text A --text B), metavar,
    required, parse (a function str -> value for argparse), default_help (what the help says the default is when
    it is None; a `LibraryText` when that is a library constant), cli=False (a library-only setting: no flag), app
    (the widget's overrides: widget, label, minimum, maximum, step, value - a value other than the default says why
    in `app_reason`).
    """
    metadata = {"help": help, **meta}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def same_as(config: type, name: str, **meta: Any) -> Any:
    """The setting `name` of another config, declared there once (its default, help and choices), with `meta`
    changed (e.g. another help)."""
    item = next(f for f in dataclasses.fields(config) if f.name == name)
    metadata = {**item.metadata, **meta}
    if item.default_factory is not MISSING:
        return field(default_factory=item.default_factory, metadata=metadata)
    return field(default=item.default, metadata=metadata)


def default_of(item: dataclasses.Field) -> Any:
    """A field's default value (its factory called), or MISSING."""
    if item.default_factory is not MISSING:
        return item.default_factory()
    return item.default


def check_choices(config: Any) -> None:
    """Refuse, in one line naming them, a value outside its field's declared choices (the same choices the command
    line and the app offer), so a config made in code is checked as a parsed one is."""
    from ..errors import NtlbError

    for item in dataclasses.fields(config):
        choices, value = item.metadata.get("choices"), getattr(config, item.name)
        if choices is None or "explainer" in item.metadata or value is None or value in choices:
            continue
        name = item.metadata.get("flag", item.name).lstrip("-").replace("-", " ").replace("_", " ")
        raise NtlbError(f"unknown {name} '{value}': use one of {', '.join(choices)}")


def settings(config: Any) -> dict:
    """A result config as plain JSON values: the identity a checkpoint's resume check and a record compare. An
    explainer spec is its name when no option is set (as records were before specs), else {"name", "options"}
    with the options set."""
    values = dataclasses.asdict(config)
    for item in dataclasses.fields(config):
        if "explainer" in item.metadata:
            spec = getattr(config, item.name)
            given = spec.given() if hasattr(spec, "given") else {}
            values[item.name] = {"name": spec.name, "options": given} if given else getattr(spec, "name", spec)
    return values


@dataclass
class Resources:
    """What runs a result, not what it is: changing these never changes the numbers (up to round-off of the
    device) and never refuses a resume."""

    device: str = option("cpu", "torch device: cpu, cuda, cuda:N or mps")
    max_memory: str | None = option(None, "memory budget, e.g. 2GB: gradients go in chunks and pairs in tiles to "
                                          "fit it", default_help="half the memory available")
    workers: int = option(0, "DataLoader worker processes")
    batch_size: int | None = option(None, "images per forward pass", cli=False)
    progress: bool = option(True, "show a progress bar", cli=False)


@dataclass
class ModelChoice:
    """Which CLIP explains: an open_clip architecture, a config file, a Hugging Face folder or a bundled name."""

    model: str | None = option(None, "open_clip architecture (ViT-B-32), model-config .json, hf:<dir>, or a "
                                     "bundled name", default_help="the bundled ntlb-world model")
    pretrained: str | None = option(None, "open_clip tag or checkpoint path (.pt/.safetensors)",
                                    default_help="the bundled model's own weights; random weights for other "
                                                 "architectures")
    tokenizer: str | None = option(None, "directory of the model's Hugging Face tokenizer (save_pretrained), for "
                                         "models whose tokenizer is not CLIP's (SigLIP, SigLIP2) and is not in the "
                                         "local cache", default_help="the model's own")
    image_size: int | None = option(None, "run a ViT at this input size, its position embeddings interpolated "
                                          "(e.g. 336 for a 224-pixel ViT-L/14)", default_help="the size it was "
                                                                                                "trained at")


__all__ = ["Choices", "LibraryText", "ModelChoice", "Resources", "check_choices", "default_of", "library_names",
           "option", "same_as", "settings"]
