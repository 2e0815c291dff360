"""Shared test helpers: the one place that finds ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def shared_data(name: str) -> Path:
    """Path of ``../shared/data/<name>``; skip the test when it is absent."""
    path = SHARED / "data" / name
    if not path.exists():
        pytest.skip(f"shared data {name!r} is absent (looked in {path})")
    return path


@pytest.fixture(scope="session")
def shared():
    """The :func:`shared_data` helper as a fixture."""
    return shared_data
