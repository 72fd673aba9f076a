"""What every command shares: help that shows defaults, the model options and the one model loader, notes."""

from __future__ import annotations

import argparse
import warnings

from ..models.adapter import ClipAdapter


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


def add_model_arguments(parser: argparse.ArgumentParser, device: bool = True) -> None:
    parser.add_argument("--model", default=None,
                        help="open_clip architecture (ViT-B-32), model-config .json, hf:<dir>, or a bundled name "
                             "(default: the bundled ntlb-world model)")
    parser.add_argument("--pretrained", default=None,
                        help="open_clip tag or checkpoint path (.pt/.safetensors) (default: the bundled model's own "
                             "weights; random weights for other architectures)")
    if device:
        add_device_argument(parser)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N or mps")


def load_adapter(model: str | None, pretrained: str | None, device: str) -> ClipAdapter:
    """The one model loader of every command (random weights are said in each command's notes)."""
    from ..models import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(model, pretrained, device=device)


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
