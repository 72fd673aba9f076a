"""The `ntlb` command: thin sub-commands over library functions (each module registers its own). Building the parser
imports neither torch nor open_clip (each command imports its library code when it runs), so `ntlb --help` is
quick; `tests/test_cli.py` checks it."""

from __future__ import annotations

import argparse
import sys

from ..errors import NtlbError
from . import app, benchmark, explain, guidance, layout, prompt, world
from .common import CommandParser, HelpFormatter


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="ntlb", description="CLIP explains its own similarity scores.",
                           formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for module in (explain, benchmark, prompt, layout, guidance, world, app):
        module.add_commands(commands)
    return parser


def check_outputs(args: argparse.Namespace) -> None:
    """Every command's --out checked before any work: a folder, or a file where the command sets out_kind."""
    if getattr(args, "out", None):
        from ..io import check_output

        check_output(args.out, getattr(args, "out_kind", "folder"))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_outputs(args)
        return args.run(args)
    except NtlbError as err:
        print(f"ntlb: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print(f"ntlb: {err or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
