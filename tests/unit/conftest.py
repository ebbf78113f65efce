"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batchai.store.db import Database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A real SQLite database with the migrated schema."""
    database = Database(f"sqlite:///{tmp_path / 'batchai.db'}")
    database.upgrade()
    yield database
    database.dispose()
