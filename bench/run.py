"""Entry point of the benchmark: every server, every workload, every figure from one run.

Owns: the command line, the order of the run (rounds → servers → workloads, then hitcount's
accuracy check), progress lines, and the exit code (0 ran; 1 the harness or an installed server
broke; 2 usage; 4 with --require-exact when hitcount's total was off). Delegates measuring to
bench.workloads and output to bench.report. Run as `python bench/run.py [--quick|--smoke]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
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
    p.add_argument("--require-exact", action="store_true",
                   help="exit 4 when hitcount's emitted total differs from the acknowledged hits")
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
    return (f"  {name:<13}{wl:<10}{f['rps']:>11,.0f} req/s {f['cpu_us_per_req'] or 0:>7.2f} µs CPU/req"
            f"  srv {f['server_cpu_pct'] or 0:>3.0f}%  gen {f['client_cpu_pct'] or 0:>3.0f}%"
            f"  p99 {'-' if p99 is None else f'{p99:,.0f} µs'}"
            + (f"  errors {f['errors']}" if f["errors"] else ""))


def run(args: argparse.Namespace) -> int:
    prof, specs = choose(args)
    nofile = machine.raise_nofile()
    server_cpu, load_cpu, every_cpu = machine.cpu_plan()
    os.sched_setaffinity(0, {int(load_cpu)})  # keep the harness itself off the server's CPU
    out = args.out or RESULTS / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    env = machine.environment()
    say(f"bench: profile {prof.name}, {prof.repeat} round(s); server on CPU {server_cpu}, "
        f"load on CPU {load_cpu}; nofile {nofile}; results in {out}")
    if server_cpu == load_cpu:
        say("bench: one CPU only — server and load generator share it; figures are indicative")
    skipped: dict[str, str] = {}
    for spec in specs:
        hint = spec.missing()
        if hint:
            skipped[spec.name] = hint
            say(f"skip {spec.name}: {hint}")
    active = [s for s in specs if s.name not in skipped]
    rounds: dict[str, list[dict[str, Any]]] = {s.name: [] for s in active}
    rss: dict[str, int] = {}
    failures: list[str] = []
    started = time.monotonic()
    for rnd in range(1, prof.repeat + 1):
        for spec in active:
            figures: dict[str, Any] = {}
            cpus = every_cpu if spec.all_cpus else server_cpu
            try:
                with Running(spec, out / f"{spec.name}-r{rnd}", cpus) as srv:
                    say(f"[{rnd}/{prof.repeat}] {spec.name}: pid {srv.pid} on CPU {cpus}, "
                        f"port {srv.port}")
                    warm_up(srv, prof, load_cpu)
                    for wl in prof.workloads:
                        figures[wl.name] = measure(srv, wl, prof, load_cpu, out)
                        say(line(spec.name, wl.name, figures[wl.name]))
                    rss[spec.name] = max(rss.get(spec.name, 0), srv.peak_rss_kib())
            except (StartError, LoadError) as exc:
                failures.append(f"{spec.name}: {exc}")
                say(f"  FAILED {spec.name}: {exc}")
            rounds[spec.name].append(figures)
    accuracy = {}
    for spec in active:
        if spec.records:
            try:
                with Running(spec, out / f"{spec.name}-accuracy", server_cpu) as srv:
                    accuracy[spec.name] = acc = check_accuracy(srv, prof, load_cpu, out)
                a, t = acc["accuracy"], acc["attribution"]
                say(f"accuracy {spec.name}: emitted {a['emitted']:,} for {a['acked']:,} "
                    f"acknowledged hits ({'exact' if a['exact'] else 'NOT EXACT'}); attribution: "
                    f"{t['missing']:,} missing, {t['impossible']:,} impossible of "
                    f"{t['same_second_hits']:,} same-second hits ({t['fraction']:.4%}); "
                    f"early {t['early']:,}, late {t['late']:,}")
            except (StartError, LoadError) as exc:
                failures.append(f"{spec.name} accuracy: {exc}")
                say(f"  FAILED {spec.name} accuracy: {exc}")
    return finish(args, prof, env, out, active, skipped, rounds, rss, accuracy, failures, started)


def finish(args: argparse.Namespace, prof: Profile, env: dict[str, Any], out: Path,
           active: list[Spec], skipped: dict[str, str], rounds: dict[str, Any],
           rss: dict[str, int], accuracy: dict[str, Any], failures: list[str],
           started: float) -> int:
    summary = report.summarise(rounds)
    wls = [w.name for w in prof.workloads]
    rat = report.ratios(summary, wls)
    tgts = report.targets(rat, accuracy.get(report.HITCOUNT))
    names = [s.name for s in active]
    text = report.table(summary, [(w.name, f"{w.what} ({w.connections:,} connections)")
                                  for w in prof.workloads], names, rss, rat, tgts)
    env["load_average_after"] = machine.load_average()
    env["elapsed_s"] = round(time.monotonic() - started, 1)
    say(text)
    (out / "table.txt").write_text(text + "\n")
    results = {"environment": env, "profile": prof.name, "repeat": prof.repeat,
               "workloads": {w.name: w.__dict__ for w in prof.workloads},
               "servers": {s.name: s.what for s in active}, "skipped": skipped,
               "rounds": rounds, "summary": summary, "peak_rss_kib": rss, "ratios": rat,
               "targets": tgts, "accuracy": accuracy, "failures": failures}
    report.write_json(out / "results.json", results)
    why = report.write_chart(out / "chart.png", summary, wls, names, rss)
    say(f"\nwrote {out / 'results.json'}" + (f"; {why}" if why else f" and {out / 'chart.png'}"))
    say(f"elapsed {env['elapsed_s']} s; load average before {env['load_average_before']}, "
        f"after {env['load_average_after']}")
    if failures:
        say("FAILED: " + "; ".join(failures))
        return 1
    acc = accuracy.get(report.HITCOUNT)
    if args.require_exact and acc and not acc["accuracy"]["exact"]:
        return 4
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse(argv))


if __name__ == "__main__":
    sys.exit(main())
