"""``scalenas`` command line. Each subcommand lives in ``scalenas/cli/<name>.py`` and defines
``add_parser(subparsers)`` (returning its parser) and ``run(args) -> int``.

User errors (:class:`ScaleNASError`) print their message, not a traceback, and exit with code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from scalenas.errors import ScaleNASError

COMMANDS = ["info", "draw", "archs", "data", "train_supernet", "search", "extract", "export", "eval", "predict", "demo"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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
    from scalenas.utils.runtime import setup_process

    setup_process()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except ScaleNASError as e:
        print(f"scalenas {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"scalenas {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
