"""Exactness end to end: the sum of emitted counts equals the hits acknowledged, every second once."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import uvloop

from .load import load
from .support import Proc, check_series, records


def test_100k_hits_many_connections_then_sigterm(tmp_path: Path) -> None:
    proc = Proc(tmp_path).start()
    try:
        plan = [(20, 1000, 1), (20, 3000, 16), (4, 5000, 100)]  # 20k one at a time, 60k + 20k piped
        acked = uvloop.run(load(proc.port, plan))
        assert acked == 100_000
    finally:
        assert proc.stop(signal.SIGTERM) == 0
    recs = records(proc.log)
    check_series(recs)
    assert sum(r["count"] for r in recs) == acked
    assert recs[-1]["partial"] is True


def test_sigterm_in_the_middle_of_load_loses_nothing(tmp_path: Path) -> None:
    proc = Proc(tmp_path).start()
    result: list[int] = []
    plan = [(10, 10**9, 1), (10, 10**9, 16), (2, 10**9, 64)]  # would run for ever
    client = threading.Thread(target=lambda: result.append(uvloop.run(load(proc.port, plan, 30.0))))
    client.start()
    time.sleep(2.5)
    assert proc.stop(signal.SIGTERM) == 0
    client.join(60)
    assert not client.is_alive()
    recs = records(proc.log)
    check_series(recs)
    assert result[0] > 1000
    assert sum(r["count"] for r in recs) == result[0]
