"""A shared "world" per test module: one seeded sandbox, output/state roots and the connection.

dag.test costs 10-20 s per run here, so the scenario tests of a module run against one sandbox
in order (each test states which earlier step it builds on) instead of a fresh one per test.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest


@dataclass
class World:
    server: object
    root: Path
    db_path: Path

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def state_root(self) -> Path:
        return self.root / "state"

    def feed(self, name: str, changes: int = 0, seed: int = 0) -> tuple[Path, dict]:
        """An HR feed exported from the sandbox's own people (``changes`` hires/movers/leavers)."""
        from absorb_sandbox.hr_feed import export_hr_feed

        out = self.root / "feeds" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        summary = export_hr_feed(self.db_path, out, changes=changes, seed=seed)
        return out, summary

    def writes(self) -> int:
        return self.server.stats()["write_calls"]

    def hook(self):
        from absorb_provider.hooks.absorb import AbsorbHook

        return AbsorbHook()

    def state(self):
        """The sync state of this world's portal (state is kept per portal)."""
        from absorb_sync.jobs.runtime import portal_state

        return portal_state(self.hook(), str(self.state_root))


def today() -> datetime:
    return datetime.now(UTC)


def read_rows(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def write_rows(path: Path, header: list[str], rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory, airflow_db) -> Iterator[World]:
    from absorb_sandbox.testing import SandboxServer

    root = tmp_path_factory.mktemp("world")
    db_path = root / "absorb.db"
    server = SandboxServer(db_path=db_path, seed="small").start()
    patch = pytest.MonkeyPatch()
    patch.setenv("AIRFLOW_CONN_ABSORB_DEFAULT", server.airflow_connection_json())
    patch.setenv("ABSORB_OUTPUT_ROOT", str(root / "output"))
    patch.setenv("ABSORB_STATE_ROOT", str(root / "state"))
    try:
        yield World(server=server, root=root, db_path=db_path)
    finally:
        patch.undo()
        server.stop()
