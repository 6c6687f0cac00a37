"""Runs every ``bench/bench_*.py`` module in its own process and reports which met their targets.

Each benchmark prints its own figures and exits non-zero when a target is missed. ``BENCH_ARGS``
gives a benchmark its command-line arguments here (``bench_scale`` runs at the ``large`` seed, where
its targets apply, after the same at ``medium`` for the growth between the two; run ``python -m bench.bench_scale medium`` for a quick look).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH_ARGS: dict[str, list[str]] = {"bench_scale": ["large", "--growth-from", "medium"]}


def main(argv: list[str]) -> int:
    selected = set(argv)
    modules = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    failed = []
    for module in modules:
        if selected and module not in selected:
            continue
        print(f"\n=== {module} ===", flush=True)
        if (
            subprocess.run([sys.executable, "-m", f"bench.{module}", *BENCH_ARGS.get(module, [])]).returncode
            != 0
        ):
            failed.append(module)
    print(f"\nbenchmarks missing a target: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
