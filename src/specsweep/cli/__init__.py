"""Command line: ``specsweep <command>``. Errors become one ``Error:`` line and an exit code here.

Each command is one handler registered with its parser (``set_defaults(handler=…)``) in the
module that holds it; ``main`` only parses, dispatches and turns errors into one line.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import SpecsweepError, UsageError
from . import ladder_cmds, setup_cmds, sweep_cmds


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other bad input
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="specsweep", description="Measure speculative-decoding acceptance and speed across "
                                                     "quants and draft depths on llama.cpp's llama-server.")
    parser.add_argument("--version", action="version", version=f"specsweep {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in (setup_cmds, sweep_cmds, ladder_cmds):
        module.register(sub, _Parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv  # for the resume hint of an interrupted run
        return args.handler(args)
    except SpecsweepError as exc:
        hint = f" (hint: {exc.hint})" if exc.hint else ""
        print(f"Error: {exc}{hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("Error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
