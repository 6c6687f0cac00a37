"""``absorb-portal check``: placeholder until the readiness check lands (issue 11)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check", help="read-only readiness check of a portal (not built yet)")
    parser.set_defaults(func=_not_built)


def _not_built(args: argparse.Namespace) -> int:
    raise SystemExit("absorb-portal check is not built yet")
