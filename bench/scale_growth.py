"""How the scale scenarios grow from a smaller seed to a larger one, against the pages they read.

Issue 10's rule: requests and memory grow no faster than the pages read, wall time no faster than
pages / concurrency (the same concurrency at both seeds, so: no faster than the pages). Fixed costs
(start-up, imports, a 300 MB interpreter with pandas and pyarrow) make the real growth much smaller.
"""

from __future__ import annotations

REQUEST_SLACK = 1.02  # a login or a short last page more is not growth


def print_growth(small_seed: str, small: dict, large_seed: str, large: dict) -> bool:
    """One line per scenario measured at both seeds, PASS/FAIL per rule; True when all passed."""
    ok = True
    print(f"\n[growth] '{small_seed}' -> '{large_seed}' (x = large / small):")
    for name, big in large.items():
        little = small.get(name)
        if not little or not all(
            little.get(k) and big.get(k) for k in ("pages", "requests", "wall_s", "peak_rss_mb")
        ):
            print(f"[growth] {name}: not measured at both seeds")
            continue
        pages = big["pages"] / little["pages"]
        growth = {key: big[key] / little[key] for key in ("requests", "peak_rss_mb", "wall_s")}
        checks = {
            "requests": growth["requests"] <= pages * REQUEST_SLACK,
            "peak RSS": growth["peak_rss_mb"] <= pages,
            "wall": growth["wall_s"] <= pages,
        }
        ok &= all(checks.values())
        print(
            f"[growth] {name}: pages x{pages:.1f} ({little['pages']} -> {big['pages']}); requests "
            f"x{growth['requests']:.2f}; peak RSS x{growth['peak_rss_mb']:.2f} ({little['peak_rss_mb']:.0f} -> "
            f"{big['peak_rss_mb']:.0f} MB); wall x{growth['wall_s']:.2f} ({little['wall_s']:.1f} -> "
            f"{big['wall_s']:.1f} s)"
        )
        for rule, passed in checks.items():
            print(f"[growth] goal {name} {rule} grows no faster than pages: {'PASS' if passed else 'FAIL'}")
    return ok
