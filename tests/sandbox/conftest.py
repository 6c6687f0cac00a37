"""Fixtures for the sandbox tests: authenticated httpx clients against live sandbox servers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sandbox_helpers import make_client


@pytest.fixture(scope="session")
def api(sandbox) -> Iterator[httpx.Client]:
    """An authenticated client on the shared (read-mostly) small sandbox."""
    with make_client(sandbox) as client:
        yield client


@pytest.fixture
def fresh_api(fresh_sandbox) -> Iterator[httpx.Client]:
    """An authenticated client on a sandbox of the test's own (for writes)."""
    with make_client(fresh_sandbox) as client:
        yield client


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    """A small sandbox of this test module's own (write tests that do not disturb each other)."""
    from absorb_sandbox.testing import SandboxServer

    server = SandboxServer(db_path=tmp_path_factory.mktemp("module") / "absorb.db", seed="small").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def module_api(module_server) -> Iterator[httpx.Client]:
    with make_client(module_server) as client:
        yield client
