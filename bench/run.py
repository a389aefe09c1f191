"""Entry point of the benchmark: every server, every workload, every figure from one run.

Owns: the command line, the order of the run (rounds → servers → workloads, then hitcount's
accuracy check), progress lines, and the exit code (0 ran; 1 the harness or an installed server
broke; 2 usage; 4 with --require-exact when hitcount's total was off). Delegates measuring to
bench.workloads and output to bench.report. Run as `python bench/run.py [--quick|--smoke]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`: make `bench` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import machine, report
from bench.loadgen import LoadError
from bench.servers import SPECS, Running, Spec, StartError
from bench.workloads import PROFILES, Profile, check_accuracy, measure, warm_up

RESULTS = Path(__file__).resolve().parent / "results"


def say(message: str) -> None:
    print(message, flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="hitcount against its peers, every figure from one run")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the headline workloads, under a minute")
    mode.add_argument("--smoke", action="store_true", help="seconds; checks the harness (CI)")
    p.add_argument("--servers", help="comma-separated subset of: " + ",".join(s.name for s in SPECS))
    p.add_argument("--workloads", help="comma-separated subset of the profile's workloads")
    p.add_argument("--repeat", type=int, help="rounds (default: the profile's)")
    p.add_argument("--out", type=Path, help="results directory (default bench/results/<time>)")
    p.add_argument("--report", type=Path, help="re-render table and chart from a results.json; no run")
    p.add_argument(
        "--require-exact",
        action="store_true",
        help="exit 4 when hitcount's emitted total differs from the acknowledged hits",
    )
    return p.parse_args(argv)


def choose(args: argparse.Namespace) -> tuple[Profile, list[Spec]]:
    prof = PROFILES["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.workloads:
        wanted = set(args.workloads.split(","))
        prof = replace(prof, workloads=tuple(w for w in prof.workloads if w.name in wanted))
    if args.repeat:
        prof = replace(prof, repeat=args.repeat)
    specs = list(SPECS)
    if args.servers:
        wanted = set(args.servers.split(","))
        unknown = wanted - {s.name for s in specs}
        if unknown:
            raise SystemExit(f"unknown server(s): {','.join(sorted(unknown))}")
        specs = [s for s in specs if s.name in wanted]
    return prof, specs


def line(name: str, wl: str, f: dict[str, Any]) -> str:
    p99 = f["latency_us"].get("p99")
    return (
        f"  {name:<13}{wl:<10}{f['rps']:>11,.0f} req/s {f['cpu_us_per_req'] or 0:>7.2f} µs CPU/req"
        f"  srv {f['server_cpu_pct'] or 0:>3.0f}%  gen {f['client_cpu_pct'] or 0:>3.0f}%"
        f"  p99 {'-' if p99 is None else f'{p99:,.0f} µs'}"
        + (f"  errors {f['errors']}" if f["errors"] else "")
    )


@dataclass
class Bench:
    """One run's plan and everything it has measured so far."""

    args: argparse.Namespace
    prof: Profile
    specs: list[Spec]
    out: Path
    server_cpu: str
    load_cpu: str
    every_cpu: str
    env: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    rounds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rss: dict[str, int] = field(default_factory=dict)
    accuracy: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def active(self) -> list[Spec]:
        return [s for s in self.specs if s.name not in self.skipped]

    def fail(self, what: str, exc: Exception) -> None:
        self.failures.append(f"{what}: {exc}")
        say(f"  FAILED {what}: {exc}")

    def one_round(self, rnd: int) -> None:
        """Every active server, fresh, through every workload of the profile."""
        for spec in self.active:
            figures: dict[str, Any] = {}
            cpus = self.every_cpu if spec.all_cpus else self.server_cpu
            try:
                with Running(spec, self.out / f"{spec.name}-r{rnd}", cpus) as srv:
                    say(
                        f"[{rnd}/{self.prof.repeat}] {spec.name}: pid {srv.pid} on CPU {cpus}, "
                        f"port {srv.port}"
                    )
                    warm_up(srv, self.prof, self.load_cpu)
                    for wl in self.prof.workloads:
                        figures[wl.name] = measure(srv, wl, self.prof, self.load_cpu, self.out)
                        say(line(spec.name, wl.name, figures[wl.name]))
                    self.rss[spec.name] = max(self.rss.get(spec.name, 0), srv.peak_rss_kib())
                if srv.died:
                    raise StartError(f"exited by itself during the run (status {srv.exit_code})")
            except (StartError, LoadError) as exc:
                self.fail(spec.name, exc)
            self.rounds.setdefault(spec.name, []).append(figures)

    def check_accuracy(self, spec: Spec) -> None:
        """hitcount's exactness and attribution, on a server of its own."""
        try:
            cpus = self.every_cpu if spec.all_cpus else self.server_cpu
            with Running(spec, self.out / f"{spec.name}-accuracy", cpus) as srv:
                acc = check_accuracy(srv, self.prof, self.load_cpu, self.out)
        except (StartError, LoadError) as exc:
            self.fail(f"{spec.name} accuracy", exc)
            return
        self.accuracy[spec.name] = acc
        a, t = acc["accuracy"], acc["attribution"]
        say(
            f"accuracy {spec.name}: emitted {a['emitted']:,} for {a['acked']:,} acknowledged "
            f"hits ({'exact' if a['exact'] else 'NOT EXACT'}); attribution: {t['missing']:,} "
            f"missing, {t['impossible']:,} impossible of {t['same_second_hits']:,} same-second "
            f"hits ({t['fraction']:.4%}); early {t['early']:,}, late {t['late']:,}"
        )

    def finish(self) -> int:
        """Table, results.json, chart.png, and the exit code."""
        env = self.env
        env["load_average_after"] = machine.load_average()
        env["elapsed_s"] = round(time.monotonic() - self.started, 1)
        results = {
            "environment": env,
            "profile": self.prof.name,
            "repeat": self.prof.repeat,
            "workloads": {w.name: asdict(w) for w in self.prof.workloads},
            "servers": {s.name: s.what for s in self.active},
            "skipped": self.skipped,
            "rounds": self.rounds,
            "peak_rss_kib": self.rss,
            "accuracy": self.accuracy,
            "failures": self.failures,
        }
        write_outputs(self.out, results)
        say(
            f"elapsed {env['elapsed_s']} s; load average before {env['load_average_before']}, "
            f"after {env['load_average_after']}"
        )
        if self.failures:
            say("FAILED: " + "; ".join(self.failures))
            return 1
        acc = self.accuracy.get(report.HITCOUNT)
        return 4 if self.args.require_exact and acc and not acc["accuracy"]["exact"] else 0


def write_outputs(out: Path, results: dict[str, Any]) -> None:
    """Summarise `results` (adding summary, ratios and targets), print the table, and write
    table.txt, results.json and chart.png into `out`."""
    text = report.render(results)
    say(text)
    (out / "table.txt").write_text(text + "\n")
    report.write_json(out / "results.json", results)
    why = report.write_chart(out / "chart.png", results)
    say(f"\nwrote {out / 'results.json'}" + (f"; {why}" if why else f" and {out / 'chart.png'}"))


def run(args: argparse.Namespace) -> int:
    prof, specs = choose(args)
    nofile = machine.raise_nofile()
    plan = server_cpu, load_cpu, every_cpu = machine.cpu_plan()
    env = machine.environment(plan)
    os.sched_setaffinity(0, {int(load_cpu)})  # keep the harness itself off the server's CPU
    out = args.out or RESULTS / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, prof, specs, out, server_cpu, load_cpu, every_cpu, env)
    say(
        f"bench: profile {prof.name}, {prof.repeat} round(s); server on CPU {server_cpu}, "
        f"load on CPU {load_cpu}; nofile {nofile}; results in {out}"
    )
    if server_cpu == load_cpu:
        say("bench: one CPU only — server and load generator share it; figures are indicative")
    missing = [tool for tool in ("wrk", "taskset") if not shutil.which(tool)]
    if missing:
        say(
            f"bench: cannot run without {' and '.join(missing)}: apt-get install "
            + " ".join({"wrk": "wrk", "taskset": "util-linux"}[t] for t in missing)
        )
        return 1
    for spec in specs:
        hint = spec.missing()
        if hint:
            bench.skipped[spec.name] = hint
            say(f"skip {spec.name}: {hint}")
    for rnd in range(1, prof.repeat + 1):
        bench.one_round(rnd)
    for spec in bench.active:
        if spec.records:
            bench.check_accuracy(spec)
    return bench.finish()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.report:
        write_outputs(args.report.parent, json.loads(args.report.read_text()))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
