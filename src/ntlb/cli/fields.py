"""Command-line options generated from a config dataclass's fields (ntlb.config): field name -> flag, type ->
parser, default -> default, metadata -> help, choices, old spellings. Nothing is restated here, so a flag's
default is its field's default."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ..config import LibraryText, default_of
from ..config.explainer import ExplainerOptions
from ..errors import NtlbError
from .common import add_old_name

_TYPES = {"int": int, "float": float, "str": str}


def flag_of(item: dataclasses.Field) -> str:
    """The option's name: metadata `flag`, else --field-name (--no-field-name for a setting on by default)."""
    if item.metadata.get("flag"):
        return item.metadata["flag"]
    name = item.name.replace("_", "-")
    return f"--no-{name}" if _base(item) == "bool" and default_of(item) is True else f"--{name}"


def dest_of(item: dataclasses.Field) -> str:
    """The parsed options' attribute of a field: its flag's name when it has its own (--ctx: ctx), else its name."""
    flag = item.metadata.get("flag")
    return flag.lstrip("-").replace("-", "_") if flag else item.name


def _base(item: dataclasses.Field) -> str:
    """The field's type without `| None`: int, float, str, bool, list[str], ..."""
    text = item.type if isinstance(item.type, str) else getattr(item.type, "__name__", str(item.type))
    return text.replace(" | None", "").replace("None | ", "").strip()


def _help(item: dataclasses.Field) -> str:
    text = item.metadata.get("help", "")
    if item.metadata.get("only"):
        text = f"{item.metadata['only']}: {text}"
    if isinstance(item.metadata.get("default_help"), LibraryText):
        text += " (default: %(default_help)s)"  # the action's default_help, read from the library when shown
    elif item.metadata.get("default_help"):
        text += f" (default: {item.metadata['default_help']})"
    return text


def _kwargs(item: dataclasses.Field) -> dict[str, Any]:
    """argparse keyword arguments of one field."""
    meta, base, default = item.metadata, _base(item), default_of(item)
    if base == "bool":
        return {"action": "store_false" if default is True else "store_true", "help": _help(item)}
    kwargs: dict[str, Any] = {"help": _help(item), "default": default}
    element = base.removeprefix("list[").removesuffix("]") if base.startswith("list[") else base
    if meta.get("parse"):
        kwargs["type"] = meta["parse"]
    elif element in _TYPES and element != "str" and not meta.get("lines"):
        kwargs["type"] = _TYPES[element]
    if meta.get("lines"):
        kwargs["metavar"] = "FILE"
    for key in ("choices", "metavar", "nargs", "required"):
        if meta.get(key) is not None:
            kwargs[key] = meta[key]
    if meta.get("repeat"):
        kwargs["action"] = "append"
    if meta.get("required"):
        kwargs.pop("default")
    return kwargs


def _add(parser: argparse.ArgumentParser, item: dataclasses.Field, config: type) -> None:
    parser.config_fields = [*getattr(parser, "config_fields", []), (config, item)]  # read by tests/test_configs.py
    kwargs = _kwargs(item)
    if item.metadata.get("positional"):
        kwargs.pop("default", None)
        parser.add_argument(item.name, **kwargs).default_help = None
        return
    action = parser.add_argument(flag_of(item), dest=dest_of(item), **kwargs)
    action.default_help = item.metadata.get("default_help")
    for old in item.metadata.get("old", ()):
        add_old_name(parser, old, flag_of(item), choices=kwargs.get("choices"), type=kwargs.get("type"),
                     dest=dest_of(item))


def explainer_options() -> dict[str, dataclasses.Field]:
    """The options an explainer spec field may offer, by name."""
    return {item.name: item for item in dataclasses.fields(ExplainerOptions)}


def add_config(parser: argparse.ArgumentParser, config: type, skip: tuple[str, ...] = ()) -> None:
    """One option per field of `config` (a spec field: --explainer and the options it offers)."""
    for item in dataclasses.fields(config):
        if item.name in skip or item.metadata.get("cli", True) is False:
            continue
        if "explainer" in item.metadata:
            meta = item.metadata
            parser.config_fields = [*getattr(parser, "config_fields", []), (config, item)]
            parser.add_argument(meta.get("flag", "--explainer"), dest=dest_of(item), default=meta["explainer"],
                                choices=meta["choices"], help=meta["help"])
            for old in meta.get("old", ()):
                add_old_name(parser, old, meta.get("flag", "--explainer"), choices=meta["choices"],
                             dest=dest_of(item))
            for name in meta["offers"]:
                _add(parser, explainer_options()[name], ExplainerOptions)
            continue
        _add(parser, item, config)


def _value(item: dataclasses.Field, args: argparse.Namespace) -> Any:
    value = getattr(args, dest_of(item))
    if item.metadata.get("lines") and value is not None:
        from .common import read_lines

        value = read_lines(value, item.metadata["lines"])
    return value


def read_spec(item: dataclasses.Field, args: argparse.Namespace):
    """The `ExplainerSpec` of a spec field from --explainer and the options offered beside it (those given)."""
    from ..explain.spec import ExplainerSpec

    name, options = getattr(args, dest_of(item)), {}
    for key in item.metadata["offers"]:
        option = explainer_options()[key]
        value = _value(option, args)
        if value is None:
            continue
        only = option.metadata.get("only")
        if only and name != only:
            raise NtlbError(f"{flag_of(option)} is an option of --explainer {only}")
        options[key] = value
    return ExplainerSpec(name, options)


def read_config(config: type, args: argparse.Namespace, **given: Any) -> Any:
    """The config from the parsed options (fields without a flag keep their defaults; `given` sets fields the
    command computes)."""
    values = dict(given)
    for item in dataclasses.fields(config):
        if item.name in values or item.metadata.get("cli", True) is False or not hasattr(args, dest_of(item)):
            continue
        values[item.name] = read_spec(item, args) if "explainer" in item.metadata else _value(item, args)
    return config(**values)
