"""What every command shares: help that shows defaults, the model options and the one model loader, notes. The
choices of the options are read from the library when first needed (`ntlb.config.Choices`)."""

from __future__ import annotations

import argparse
import warnings
from typing import TYPE_CHECKING

from ..config import Choices

if TYPE_CHECKING:
    from ..models.adapter import ClipAdapter


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


def add_old_name(parser: argparse.ArgumentParser, old: str, new: str, choices=None, type=None,
                 dest: str | None = None, nargs: int | str | None = None) -> None:
    """Keep `old` working as a hidden alias of the option `new` (one flag name per meaning, old command lines
    still run)."""
    dest = dest or new.lstrip("-").replace("-", "_")
    parser.add_argument(old, dest=dest, action=_OldName, metavar=new, choices=choices, type=type, nargs=nargs,
                        default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_model_arguments(parser: argparse.ArgumentParser, device: bool = True, image_size: bool = False) -> None:
    """--model, --pretrained, --tokenizer (and --image-size, --device) from `ModelChoice` and `Resources`."""
    from ..config import ModelChoice
    from .fields import add_config

    add_config(parser, ModelChoice, skip=() if image_size else ("image_size",))
    if device:
        add_device_argument(parser)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """--device, from `Resources`."""
    from ..config import Resources
    from .fields import add_config

    add_config(parser, Resources, skip=("max_memory", "workers"))


def load_adapter(model: str | None, pretrained: str | None, device: str, image_size: int | None = None,
                 tokenizer: str | None = None) -> ClipAdapter:
    """The one model loader of every command (random weights are said in each command's notes)."""
    from ..models import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(model, pretrained, device=device, image_size=image_size, tokenizer=tokenizer)


def model_adapter(args: argparse.Namespace, device: str | None = None) -> ClipAdapter:
    """The model a command's options choose (`ModelChoice`; a command without them loads the bundled model), on
    `device` (default: the command's --device, else `Resources`' default)."""
    from ..config import ModelChoice, Resources
    from .fields import read_config

    model = read_config(ModelChoice, args)
    return load_adapter(model.model, model.pretrained, device or read_config(Resources, args).device,
                        model.image_size, tokenizer=model.tokenizer)


def print_notes(notes: list[str]) -> None:
    for note in notes:
        print(f"note: {note}")


def name_list(names: str | None) -> list[str] | None:
    """A comma-separated list of names (`--explainers a,b`) as a list; None when not given."""
    return [name.strip() for name in names.split(",") if name.strip()] if names else None


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
