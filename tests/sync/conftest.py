"""Fixtures for the absorb_sync tests: feeds written to tmp_path and a ten-person staff list."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import person


@pytest.fixture
def write_feed(tmp_path):
    """write_feed(text_or_bytes, name="feed.csv") -> Path"""

    def write(content: str | bytes, name: str = "feed.csv") -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return write


@pytest.fixture
def staff() -> list[dict]:
    """Ten active people: a manager (E000001) and nine reports."""
    return [person(f"E{n:06d}") for n in range(1, 11)]
