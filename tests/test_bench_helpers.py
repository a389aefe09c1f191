"""Tests of the harness's pure helpers: /proc CPU accounting, percentiles, accuracy, attribution,
wrk's report, the summary over rounds — plus one exact-client run against an in-process server.

No timed assertions: nothing here depends on how fast the machine is.
Run with `python -m pytest bench/test_bench_helpers.py` from the repository root.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from bench import analysis, exact, loadgen, procstat, report

# A /proc/<pid>/stat line whose command name holds a space and a ')' (proc(5) allows both).
STAT = (
    "4242 (we ird) x) S 17 4242 4242 0 -1 4194560 500 0 0 0 "
    "120 30 7 3 20 0 1 0 1000 1000000 200 18446744073709551615"
)


def stat(pid: int, ppid: int, utime: int, stime: int = 0, cutime: int = 0) -> procstat.Stat:
    return procstat.Stat(pid, ppid, utime, stime, cutime, 0)


def test_parse_stat_splits_at_the_last_parenthesis() -> None:
    s = procstat.parse_stat(STAT)
    assert (s.pid, s.ppid, s.utime, s.stime, s.cutime, s.cstime) == (4242, 17, 120, 30, 7, 3)


def test_parse_hwm_reads_vmhwm_and_tolerates_kernel_threads() -> None:
    assert procstat.parse_hwm_kib("Name:\tx\nVmPeak:\t 900 kB\nVmHWM:\t  5120 kB\n") == 5120
    assert procstat.parse_hwm_kib("Name:\tkthreadd\n") == 0


def test_descendants_follow_the_whole_chain_and_nothing_else() -> None:
    parent_of = {10: 1, 11: 10, 12: 11, 13: 10, 20: 1, 21: 20}
    assert procstat.descendants(10, parent_of) == {10, 11, 12, 13}
    assert procstat.descendants(99, parent_of) == {99}


def test_tree_ticks_sum_own_and_reaped_children_time_of_the_tree_only() -> None:
    stats = [stat(10, 1, 100, 50, cutime=5), stat(11, 10, 30, 10), stat(20, 1, 999, 999)]
    assert procstat.tree_ticks(10, stats) == 100 + 50 + 5 + 30 + 10


def test_a_worker_that_exits_between_snapshots_is_neither_lost_nor_doubled() -> None:
    before = procstat.tree_ticks(10, [stat(10, 1, 100), stat(11, 10, 40)])
    after = procstat.tree_ticks(10, [stat(10, 1, 110, cutime=45)])  # worker 11 used 5 more, reaped
    assert after - before == 15


def test_machine_busy_excludes_idle_and_iowait_but_counts_steal() -> None:
    text = "cpu  100 1 50 9000 40 2 3 4 0 0\ncpu0 50 0 25 4500 20 1 1 2 0 0\n"
    assert procstat.parse_cpu_busy(text) == (100 + 1 + 50 + 2 + 3 + 4, 4)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert analysis.percentile(values, 50) == 50.0
    assert analysis.percentile(values, 99) == 99.0
    assert analysis.percentile(values, 99.9) == 100.0
    assert analysis.percentile(values, 0) == 1.0
    assert analysis.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        analysis.percentile([], 50)


def test_latency_summary_is_in_microseconds_and_sorts_its_input() -> None:
    summary = analysis.latency_summary([0.003, 0.001, 0.002])
    assert summary["p50"] == pytest.approx(2000.0)
    assert summary["max"] == pytest.approx(3000.0)
    assert analysis.latency_summary([]) == {}


def test_second_windows_bucket_same_second_and_straddling_hits() -> None:
    w = analysis.second_windows([10.2, 10.9, 11.5, 12.0], [10.3, 11.1, 11.6, 0.0])
    assert w.same == Counter({10: 1, 11: 1})
    assert w.possible == Counter({10: 2, 11: 2})
    assert w.sent == Counter({10: 2, 11: 1})  # the unanswered hit at 12.0 is left out
    assert w.answered == Counter({10: 1, 11: 2})


def windows(*hits: tuple[float, float]) -> analysis.Windows:
    return analysis.second_windows([s for s, _ in hits], [r for _, r in hits])


def test_attribution_of_a_perfect_server_is_clean() -> None:
    w = windows((10.1, 10.2), (10.5, 10.6), (10.99, 11.01), (11.3, 11.4))
    for emitted in ({10: 3, 11: 1}, {10: 2, 11: 2}):  # the straddler may go either way
        a = analysis.attribute(w, emitted)
        assert (a.missing, a.impossible, a.early, a.late, a.fraction) == (0, 0, 0, 0, 0.0)
        assert a.same_second_hits == 3


def test_a_hit_counted_a_second_late_is_missing_and_late() -> None:
    w = windows((10.1, 10.2), (10.5, 10.6), (11.3, 11.4))
    a = analysis.attribute(w, {10: 1, 11: 2})
    assert (a.missing, a.impossible, a.late, a.early) == (1, 1, 1, 0)
    assert a.fraction == pytest.approx(1 / 3)
    assert a.seconds == [(10, 2, 2, 1), (11, 1, 1, 2)]


def test_a_hit_counted_in_the_second_before_it_was_sent_is_early() -> None:
    w = windows((10.1, 10.2), (11.0001, 11.0002))  # the server switched seconds too late
    a = analysis.attribute(w, {10: 2, 11: 0})
    assert (a.missing, a.impossible, a.early, a.late) == (1, 1, 1, 0)


def test_counts_cannot_reveal_a_swap_that_a_correct_server_could_have_produced() -> None:
    # B (same-second in 11) went to 12 and straddler D went to 11; the counts {11: 2, 12: 2} are
    # also what a correct server gives (A, B in 11; C, D in 12), so every figure is a lower bound.
    w = windows((10.9, 11.1), (11.5, 11.6), (11.95, 12.05), (11.97, 12.02))
    a = analysis.attribute(w, {11: 2, 12: 2})
    assert (a.missing, a.impossible, a.early, a.late) == (0, 0, 0, 0)


def test_read_records_sums_servers_and_flags_bad_and_duplicate_lines() -> None:
    lines = [
        json.dumps({"ts": 10, "count": 3, "server": "a"}),
        json.dumps({"ts": 10, "count": 2, "server": "b"}),
        json.dumps({"ts": 11, "count": 1, "server": "a", "late": True}),
        json.dumps({"ts": 11, "count": 4, "server": "a"}),
        '{"ts": 12, "count": "5"}',
        '{"ts": 13, "cou',
        "",
    ]
    e = analysis.read_records(lines)
    assert e.by_second == {10: 5, 11: 5}
    assert (e.total, e.lines, e.bad_lines, e.duplicate_seconds) == (10, 6, 2, 1)


def test_accuracy_is_exact_only_when_equal() -> None:
    assert analysis.accuracy(1000, 1000)["exact"] is True
    off = analysis.accuracy(999, 1000)
    assert (off["exact"], off["difference"]) == (False, -1)


def test_median_and_ratio_skip_what_is_missing() -> None:
    assert analysis.median([3.0, 1.0, 2.0]) == 2.0
    assert analysis.median([4.0, 1.0]) == 2.5
    assert analysis.median([]) is None
    assert analysis.ratio(2.0, 4.0) == 0.5
    assert analysis.ratio(None, 4.0) is None and analysis.ratio(2.0, 0.0) is None


def test_parse_wrk_reads_the_json_line_and_drops_lost_percentiles() -> None:
    out = (
        "Running 1s test @ http://127.0.0.1:1/log\n"
        'WRKJSON {"requests": 10, "duration_us": 1000000, "bytes": 1, "errors": {"connect": 0, '
        '"read": 0, "write": 0, "status": 0, "timeout": 0}, "latency_us": {"p50": 12.0, '
        '"p90": 0.0, "p99": 0.0, "p99.9": 0.0, "max": 40.0}}\n'
    )
    data = loadgen.parse_wrk(out)
    assert data["requests"] == 10 and data["latency_us"] == {"p50": 12.0, "max": 40.0}
    with pytest.raises(loadgen.LoadError):
        loadgen.parse_wrk("wrk: connection refused\n")


def test_wrk_argv_pipelines_and_closes_on_request() -> None:
    argv = loadgen.wrk_argv("http://127.0.0.1:1/log", 5, 256, depth=16)
    assert argv[-2:] == ["--", "16"] and "-c256" in argv and any("pipeline.lua" in a for a in argv)
    assert "Connection: close" in loadgen.wrk_argv("http://127.0.0.1:1/log", 1, 50, close=True)


def run_figures(rps: float, cpu: float, p99: float) -> dict[str, object]:
    return {
        "rps": rps,
        "cpu_us_per_req": cpu,
        "server_cpu_pct": 99.0,
        "client_cpu_pct": 50.0,
        "latency_us": {"p50": p99 / 2, "p99": p99},
        "errors": {},
    }


def test_summary_takes_medians_and_targets_compare_hitcount_with_peers() -> None:
    rounds = {
        "hitcount": [
            {"keepalive": run_figures(100, 9.0, 50)},
            {"keepalive": run_figures(120, 8.0, 70)},
            {"keepalive": run_figures(110, 10.0, 60)},
        ],
        "nginx": [{"keepalive": run_figures(150, 8.0, 40)}],
    }
    summary = report.summarise(rounds)
    assert summary["hitcount"]["keepalive"]["rps"] == 110
    assert summary["hitcount"]["keepalive"]["p99"] == 60
    rat = report.ratios(summary, ["keepalive"])
    assert rat["keepalive"]["nginx"]["cpu"] == pytest.approx(9.0 / 8.0)
    assert rat["keepalive"]["uvicorn"] == {"rps": None, "cpu": None}
    tgts = {t["name"]: t for t in report.targets(rat, None)}
    assert tgts["cpu_vs_nginx"]["met"] is False  # 1.125 > 1.10
    assert tgts["pipelined_vs_null"]["met"] is None and tgts["accuracy"]["met"] is None


class _Answer(asyncio.Protocol):
    """A tiny counting server for the exact-client test: one 204 per request terminator."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        answer = b"HTTP/1.1 204 No Content\r\n\r\n" * data.count(b"\r\n\r\n")
        self.transport.write(answer)  # type: ignore[attr-defined]


@pytest.mark.parametrize("depth,rate", [(1, 0.0), (4, 0.0), (1, 2000.0)])
def test_exact_client_gets_an_answer_for_every_hit(depth: int, rate: float) -> None:
    async def go() -> dict[str, object]:
        server = await asyncio.get_running_loop().create_server(_Answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await exact.run(exact.Plan(port, 203, connections=5, depth=depth, rate=rate, timeout=30.0))

    result = asyncio.run(go())
    assert (result["acked"], result["unanswered"], result["errors"]) == (203, 0, [])
    windows = analysis.Windows.from_json(result["windows"])  # type: ignore[arg-type]
    assert sum(windows.sent.values()) == sum(windows.answered.values()) == 203


def test_exact_client_refuses_anything_but_loopback() -> None:
    with pytest.raises(ValueError):
        asyncio.run(exact.run(exact.Plan(80, 1, host="192.0.2.1")))
