"""The export's extract job against a sandbox: a write that fails part-way leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The extract in a process whose files may not grow past LIMIT bytes (a full disk or quota): the
# CSV and Parquet writes run in the write-behind thread, so the failure starts there, batches
# after the first have been written.
CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys
    from datetime import UTC, datetime

    folder, output_root, state_root, limit = sys.argv[1:5]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))

    import absorb_sync.export
    from absorb_sync.jobs import export
    from absorb_sync.jobs.runtime import make_hook, portal_state, storage_path

    absorb_sync.export.BATCH_ROWS = 100  # many batches even at the small seed
    hook = make_hook(None)
    try:
        export.extract_enrollments(
            folder=storage_path(folder),
            hook=hook,
            course_ids=None,
            window={"full": True, "since": None, "until": None},
            state=portal_state(hook, state_root),
            output_root=storage_path(output_root),
            now=datetime.now(UTC),
        )
    except OSError as error:
        print(json.dumps({"error": str(error)}))
        sys.exit(3)
    print(json.dumps({"error": None}))
    """
)


def run_extract(sandbox, tmp_path: Path, limit: int) -> subprocess.CompletedProcess:
    folder = tmp_path / "run"
    folder.mkdir(parents=True)
    env = dict(
        os.environ,
        AIRFLOW_CONN_ABSORB_DEFAULT=sandbox.airflow_connection_json(),
        ABSORB_PROVIDER_STATE_DIR=str(tmp_path / "provider-state"),
        PYTHONPATH=os.pathsep.join([str(ROOT / "plugins"), str(ROOT / "include")]),
    )
    arguments = [str(folder), str(tmp_path / "out"), str(tmp_path / "state"), str(limit)]
    return subprocess.run(
        [sys.executable, "-c", CHILD, *arguments], env=env, capture_output=True, text=True, timeout=300
    )


def test_a_write_failing_part_way_through_the_extract_fails_it_and_leaves_no_files(sandbox, tmp_path):
    complete = run_extract(sandbox, tmp_path / "complete", limit=1 << 30)
    assert complete.returncode == 0, complete.stderr[-2000:]
    csv_size = (tmp_path / "complete" / "run" / "_staging" / "completions.csv").stat().st_size
    assert (tmp_path / "complete" / "run" / "export.parquet").exists()

    limit = csv_size // 3  # the CSV outgrows it a few batches in
    failed = run_extract(sandbox, tmp_path / "full-disk", limit=limit)
    assert failed.returncode == 3, failed.stdout + failed.stderr[-2000:]
    assert "too large" in failed.stdout.lower()
    run = tmp_path / "full-disk" / "run"
    assert not (run / "export.parquet").exists()  # no half export that looks complete
    assert not (run / "_staging").exists()  # nothing staged for write_outputs to publish
    assert not (run / "export_checks.json").exists()
