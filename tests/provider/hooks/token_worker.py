"""One simulated task process: builds a hook, waits for the start signal, makes a few calls.

Run as ``python token_worker.py GO_FILE``; prints a JSON line ``{"ok": n, "errors": [...]}``.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absorb_provider.hooks.absorb import AbsorbHook


def main(go_file: str) -> None:
    hook = AbsorbHook("absorb_default")
    _ = hook.client  # resolve the connection before the race starts
    print("ready", flush=True)
    while not os.path.exists(go_file):
        time.sleep(0.005)
    ok, errors = 0, []
    for call in (
        lambda: hook.client.get("courses", {"_limit": 5, "_offset": 0}),
        lambda: list(hook.list_departments()),
        lambda: hook.client.get("users", {"_limit": 5, "_offset": 1}),
    ):
        try:
            call()
            ok += 1
        except Exception as exc:  # report, the parent asserts
            errors.append(f"{type(exc).__name__}: {exc}")
    print(json.dumps({"ok": ok, "errors": errors, "logins": hook.client.tokens.login_count}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
