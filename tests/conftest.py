"""Every test module stops what it started: a child process left running by a failing test (or a
fixture) is killed, by pid, when its module ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .support import kill_leftovers


@pytest.fixture(autouse=True, scope="module")
def _no_leftover_processes() -> Iterator[None]:
    yield
    kill_leftovers()
