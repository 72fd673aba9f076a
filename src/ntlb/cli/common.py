"""What every command shares: help that shows defaults, the model options and the one model loader, notes."""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..models.adapter import ClipAdapter


class Choices:
    """Choices read from the library when a command parses or shows its help, not when the parser is built: the
    names come from registries that import torch, which `ntlb --help` does not need."""

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


def _library_names(module: str, name: str) -> Choices:
    """Choices read from `ntlb.<module>.<name>` (a sequence of names, or a registry) when first needed."""

    def names() -> list[str]:
        from importlib import import_module

        value = getattr(import_module(f"ntlb.{module}"), name)
        return value.available() if hasattr(value, "available") else list(value)

    return Choices(names)


def explainer_names() -> Choices:
    """The registered explainers (`--explainer`)."""
    return _library_names("explain.registry", "EXPLAINERS")


def logit_modes() -> Choices:
    """The scores an explanation can explain (`--logit-mode`)."""
    return _library_names("explain.relevance", "LOGIT_MODES")


def word_scores() -> Choices:
    """The semantic-word scores (`--word-score`)."""
    return _library_names("losses.semantic_words", "WORD_SCORES")


def class_name_scores() -> Choices:
    """The class-name scores of prompt learning (`--score`)."""
    return _library_names("losses.class_name", "SCORES")


def interaction_rules() -> Choices:
    """The path-integral rules of the interactions explainer (`--rule`)."""
    return _library_names("explain.interactions", "RULES")


def generator_names() -> Choices:
    """The registered image generators (`--generator`)."""
    return _library_names("generators", "GENERATORS")


class CommandParser(argparse.ArgumentParser):
    """ntlb's parser (the sub-commands' too): an option with `Choices` keeps them unread while it is added
    (argparse formats an option's choices once to check its metavar), so only the chosen command reads them."""

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        if not isinstance(kwargs.get("choices"), Choices) or kwargs.get("metavar") is not None:
            return super().add_argument(*args, **kwargs)
        action = super().add_argument(*args, metavar="NAME", **kwargs)
        action.metavar = None  # help shows {a,b,...}, read from the library when the help is printed
        return action


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; every option's help ends with its default (when it has one)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.option_strings and "%(default)" not in text and action.default is not None
                and action.default is not False and action.default is not argparse.SUPPRESS
                and not isinstance(action, argparse._HelpAction)):
            text += " (default: %(default)s)"
        return text


def add_command(commands, name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
    """A sub-command with ntlb's help formatter."""
    return commands.add_parser(name, help=help, description=description or help, formatter_class=HelpFormatter)


class _OldName(argparse.Action):
    """An old spelling of an option: it still works, says its new name once on stderr, and is left out of help."""

    def __call__(self, parser, namespace, values, option_string=None):
        import sys

        print(f"note: {option_string} is now {self.metavar}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_old_name(parser: argparse.ArgumentParser, old: str, new: str, choices=None, type=None) -> None:
    """Keep `old` working as a hidden alias of the option `new` (one flag name per meaning, old command lines
    still run)."""
    dest = new.lstrip("-").replace("-", "_")
    parser.add_argument(old, dest=dest, action=_OldName, metavar=new, choices=choices, type=type,
                        default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_model_arguments(parser: argparse.ArgumentParser, device: bool = True) -> None:
    parser.add_argument("--model", default=None,
                        help="open_clip architecture (ViT-B-32), model-config .json, hf:<dir>, or a bundled name "
                             "(default: the bundled ntlb-world model)")
    parser.add_argument("--pretrained", default=None,
                        help="open_clip tag or checkpoint path (.pt/.safetensors) (default: the bundled model's own "
                             "weights; random weights for other architectures)")
    parser.add_argument("--tokenizer", default=None,
                        help="directory of the model's Hugging Face tokenizer (save_pretrained), for models whose "
                             "tokenizer is not CLIP's (SigLIP, SigLIP2) and is not in the local cache (default: "
                             "the model's own)")
    if device:
        add_device_argument(parser)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N or mps")


def load_adapter(model: str | None, pretrained: str | None, device: str, image_size: int | None = None,
                 tokenizer: str | None = None) -> ClipAdapter:
    """The one model loader of every command (random weights are said in each command's notes)."""
    from ..models import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(model, pretrained, device=device, image_size=image_size, tokenizer=tokenizer)


def add_image_size_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image-size", type=int, default=None,
                        help="run a ViT at this input size, its position embeddings interpolated (e.g. 336 for a "
                             "224-pixel ViT-L/14) (default: the size it was trained at)")


def print_notes(notes: list[str]) -> None:
    for note in notes:
        print(f"note: {note}")


def read_lines(path: str, what: str) -> list[str]:
    """The non-empty lines of a list file (classes, concepts, templates), or a one-line error naming the fix."""
    from pathlib import Path

    from ..errors import NtlbError

    file = Path(path)
    if not file.is_file():
        raise NtlbError(f"{what} file not found: {file}: give one {what} per line")
    lines = [line.strip() for line in file.read_text().splitlines() if line.strip()]
    if not lines:
        raise NtlbError(f"{what} file {file} is empty: give one {what} per line")
    return lines


def add_generator_arguments(parser: argparse.ArgumentParser, default_help: str) -> None:
    """The options that choose an image generator (shared by layout generation, editing, generation, blending)."""
    parser.add_argument("--generator", default=None, choices=generator_names(),
                        help="world-render (the world's renderer), world-vqgan (bundled, trained on the world), "
                             "vqgan (your taming VQGAN), module (your "
                             f"TorchScript generator), pixels (weights-free) ({default_help})")
    parser.add_argument("--vqgan-config", default=None, help="taming VQGAN YAML (needed with --generator vqgan)")
    parser.add_argument("--vqgan-checkpoint", default=None,
                        help="taming VQGAN .ckpt or .safetensors (needed with --generator vqgan)")
    parser.add_argument("--module", default=None,
                        help="a torch.jit.save'd generator: forward(latent) -> images, optional encode(image) "
                             "(needed with --generator module)")
    parser.add_argument("--latent-shape", default=None,
                        help="latent shape C,H,W of --module (default: the module's latent_shape attribute)")
    parser.add_argument("--signed", action="store_true", help="--module's images are in [-1, 1], not [0, 1]")


def generator_options(args: argparse.Namespace, generator: str) -> dict:
    """The factory options of the chosen generator from the command's arguments."""
    if generator == "vqgan":
        return {"config": args.vqgan_config, "checkpoint": args.vqgan_checkpoint}
    if generator == "pixels":
        return {"decay": getattr(args, "decay", 1.0)}
    if generator == "module":
        shape = tuple(int(v) for v in args.latent_shape.split(",")) if args.latent_shape else None
        return {"path": args.module, "latent_shape": shape, "signed": args.signed}
    return {}
