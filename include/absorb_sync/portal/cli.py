"""``absorb-portal``: read-only commands to run against a real portal before the first sync.

Each subcommand lives in its own module (``check``, ``snapshot``) and registers itself through
``add_parser(subparsers)``; its parser sets ``func`` to the callable that runs it and returns the
exit code. Modules are imported lazily so ``absorb-portal --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMAND_MODULES = ("check", "snapshot")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="absorb-portal",
        description="Read-only checks and snapshots of an Absorb portal (no call that changes it).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMAND_MODULES:
        module = importlib.import_module(f"absorb_sync.portal.{name}")
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
