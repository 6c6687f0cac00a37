"""``absorb-portal snapshot``: placeholder until the readiness snapshot lands (issue 11)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("snapshot", help="read-only readiness snapshot of a portal (not built yet)")
    parser.set_defaults(func=_not_built)


def _not_built(args: argparse.Namespace) -> int:
    raise SystemExit("absorb-portal snapshot is not built yet")
