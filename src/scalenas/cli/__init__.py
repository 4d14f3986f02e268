"""``scalenas`` command line. Each subcommand lives in ``scalenas/cli/<name>.py`` and defines
``add_parser(subparsers)`` (returning its parser) and ``run(args) -> int``. ``run`` imports the library
code it calls (training, search, deploy, the demo): the parser is built from every command module, and
loading all layers up front made ``scalenas --help`` 2.3 s slower (measured on a loaded 2-core machine).

User errors (:class:`ScaleNASError`) print their message, not a traceback, and exit with code 2.
Usage errors print the subcommand's own usage and one error line (exit 2).
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import sys

from scalenas.errors import ScaleNASError, user_message
from scalenas.utils.runtime import setup_process

COMMANDS = ["info", "draw", "archs", "data", "train_supernet", "shrink", "search", "extract", "export", "eval",
            "predict", "demo", "study"]


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose positionals (``KEY=VALUE`` overrides among them) may come anywhere on the
    line, which reports its own unrecognised arguments (so the error shows this subcommand's usage, not
    the top-level one), and which suggests the closest choice for a mistyped one.

    Plain argparse fills a ``nargs="*"`` positional at its first chance, so ``search CKPT -o RUN k=v``
    left ``k=v`` unrecognised; :meth:`parse_known_intermixed_args` reads the options first and the
    positionals from what remains. Parsers with subcommands (the top level, ``data``) or a REMAINDER
    positional parse as usual: intermixing cannot hand the rest of the line to another parser.
    """

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if any(a.nargs in (argparse.PARSER, argparse.REMAINDER) for a in self._get_positional_actions()):
            return super().parse_known_args(args, namespace)
        if self._intermixing:  # one of the two passes of parse_known_intermixed_args
            namespace, extras = super().parse_known_args(args, namespace)
            # Name a mistyped option before the positionals pass complains about something else.
            flags = [a for a in extras if a.startswith("-") and a not in ("-", "--")
                     and not self._negative_number_matcher.match(a)]
            if flags:
                self.error(f"unrecognized arguments: {' '.join(flags)}")
            return namespace, extras
        self._intermixing = True
        try:
            namespace, extras = self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, []

    def _check_value(self, action, value):
        if action.choices is not None and value not in action.choices:
            names = [str(c) for c in action.choices]
            close = difflib.get_close_matches(str(value), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise argparse.ArgumentError(
                action, f"invalid choice: {value!r} (choose from {', '.join(map(repr, names))}){hint}")


def split_config_and_overrides(command: str, rest: list[str]) -> tuple[str | None, list[str]]:
    """``(CONFIG.yaml or None, [KEY=VALUE, ...])`` from a command's free arguments: at most one config,
    before or after the overrides (which may come anywhere on the line)."""
    config, overrides = None, []
    for item in rest:
        if "=" in item:
            overrides.append(item)
        elif config is None:
            config = item
        else:
            raise ScaleNASError(f"{command}: unexpected argument {item!r} (one CONFIG.yaml was given already: "
                                f"{config}; other arguments are KEY=VALUE)")
    return config, overrides


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="scalenas",
        description="ScaleNAS: multi-path one-shot NAS for scale-aware high-resolution networks "
                    "(segmentation and bottom-up pose). Run 'scalenas COMMAND --help' for each command.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"scalenas.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"scalenas.cli.{name}":
                raise
            continue
        sp = mod.add_parser(sub)
        sp.set_defaults(_run=mod.run)
    return p


def main(argv: list[str] | None = None) -> int:
    setup_process()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except ScaleNASError as e:
        print(f"scalenas {args.command}: error: {user_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"scalenas {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
