"""From raw per-round figures to what a reader sees: medians, the ratios and targets the issue asks
for, the terminal table, results.json and chart.png.

Owns: the summary arithmetic over rounds (via bench.analysis), the targets (each named once with
its threshold) and every output format. Pure except `write_json` and `write_chart`, which write
into the run's results directory; matplotlib is imported only there (it is in the `bench` extra).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.analysis import median, ratio

HITCOUNT = "hitcount"
FIGURES = ("rps", "cpu_us_per_req", "server_cpu_pct", "client_cpu_pct", "other_cpu_pct")
# Median CPU used by neither the server nor the generator above which the run says it was noisy.
NOISY_OTHER_PCT = 10.0
# A fixed-rate client whose sends were this late (p99) was itself the bottleneck: flag the row.
LAGGING_CLIENT_US = 1000.0
# (name, what, measured as, comparison, threshold) — the issue's targets for a 2-core machine.
TARGETS = (
    ("cpu_vs_nginx", "keep-alive CPU/request ÷ nginx's", ("keepalive", "cpu", "nginx"), "<=", 1.10),
    ("pipelined_vs_null", "pipelined req/s ÷ null ceiling", ("pipelined", "rps", "null"), ">=", 0.8),
    ("pipelined_vs_uvicorn", "pipelined req/s ÷ uvicorn", ("pipelined", "rps", "uvicorn"), ">=", 3.0),
)
MISATTRIBUTION_TARGET = 0.001  # at most 0.1 % of same-second hits counted in another second


def summarise(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """server -> workload -> the median of each figure (p50 and p99 included) over the quiet
    rounds — those where other processes used at most NOISY_OTHER_PCT of a CPU — or over every
    round when none was quiet. `rounds` and `quiet_rounds` say which."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for server, per_round in rounds.items():
        for wl in {w for r in per_round for w in r}:
            runs = [r[wl] for r in per_round if wl in r]
            # Rounds that other processes disturbed are set aside when any quiet round exists.
            quiet = [r for r in runs if (r.get("other_cpu_pct") or 0.0) <= NOISY_OTHER_PCT]
            every, runs = runs, quiet or runs
            fig: dict[str, Any] = {f: median([r[f] for r in runs if r.get(f) is not None]) for f in FIGURES}
            for q in ("p50", "p99"):
                fig[q] = median([r["latency_us"][q] for r in runs if q in r["latency_us"]])
            lags = [r["send_lag_us"]["p99"] for r in runs if r.get("send_lag_us")]
            fig["send_lag_p99"] = median(lags)
            fig["rounds"] = len(every)
            fig["quiet_rounds"] = len(quiet)
            fig["errors"] = [r["errors"] for r in every if r["errors"]]
            out.setdefault(server, {})[wl] = fig
    return out


def _get(summary: dict[str, Any], server: str, wl: str, figure: str) -> float | None:
    value = summary.get(server, {}).get(wl, {}).get(figure)
    return float(value) if value is not None else None


def ratios(summary: dict[str, Any], workloads: list[str]) -> dict[str, dict[str, Any]]:
    """Per workload and peer: hitcount's req/s ÷ the peer's, and hitcount's CPU/request ÷ the
    peer's (the fairer one when the one-core load generator, not the server, is saturated)."""
    out: dict[str, dict[str, Any]] = {}
    for wl in workloads:
        for peer in ("nginx", "null", "uvicorn", "node", "aiohttp"):
            out.setdefault(wl, {})[peer] = {
                "rps": ratio(_get(summary, HITCOUNT, wl, "rps"), _get(summary, peer, wl, "rps")),
                "cpu": ratio(
                    _get(summary, HITCOUNT, wl, "cpu_us_per_req"), _get(summary, peer, wl, "cpu_us_per_req")
                ),
            }
    return out


def targets(rat: dict[str, Any], accuracy: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each target with the measured value and whether it was met (None: not measured)."""
    out = []
    for name, what, (wl, figure, peer), op, limit in TARGETS:
        value = rat.get(wl, {}).get(peer, {}).get(figure)
        met = None if value is None else (value <= limit if op == "<=" else value >= limit)
        out.append({"name": name, "what": what, "value": value, "target": f"{op} {limit:g}", "met": met})
    acc = accuracy["accuracy"] if accuracy else None
    out.append(
        {
            "name": "accuracy",
            "what": "emitted total = acknowledged hits",
            "value": acc["ratio"] if acc else None,
            "target": "== 1 exactly",
            "met": acc["exact"] if acc else None,
        }
    )
    att = accuracy["attribution"] if accuracy else None
    out.append(
        {
            "name": "misattribution",
            "what": "same-second hits counted in another second",
            "value": att["fraction"] if att else None,
            "target": f"<= {MISATTRIBUTION_TARGET:.1%}",
            "met": att["fraction"] <= MISATTRIBUTION_TARGET if att else None,
        }
    )
    return out


def _n(value: float | None, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def table(
    summary: dict[str, Any],
    workloads: list[tuple[str, str]],
    servers: list[str],
    rss: dict[str, int],
    rat: dict[str, Any],
    tgts: list[dict[str, Any]],
) -> str:
    """The terminal table: one block per workload, then ratios, memory and targets. `other%` is
    CPU that neither the server nor the generator used during the measurement (other tenants,
    steal), in % of one CPU: where it is high, that row's figures are disturbed."""
    lines = []
    head = (
        f"{'server':<14}{'req/s':>11}{'CPU µs/req':>12}{'srv CPU%':>10}{'gen CPU%':>10}"
        f"{'other%':>8}{'p50 µs':>10}{'p99 µs':>11}  notes"
    )
    for wl, what in workloads:
        lines += ["", f"{wl}: {what}", head]
        for s in servers:
            f = summary.get(s, {}).get(wl)
            if not f:
                continue
            notes = f"{f['quiet_rounds']}/{f['rounds']} quiet" + (", errors" if f["errors"] else "")
            lag = f.get("send_lag_p99")
            if lag is not None and lag > LAGGING_CLIENT_US:
                notes += f", client lagged (send p99 +{lag / 1000:,.1f} ms)"
            lines.append(
                f"{s:<14}{_n(f['rps']):>11}{_n(f['cpu_us_per_req'], '.2f'):>12}"
                f"{_n(f['server_cpu_pct']):>10}{_n(f['client_cpu_pct']):>10}"
                f"{_n(f['other_cpu_pct']):>8}{_n(f['p50']):>10}{_n(f['p99']):>11}  {notes}"
            )
    lines += ["", "hitcount ÷ peer, req/s (CPU µs/request) — medians of this run"]
    peers = ("nginx", "null", "uvicorn", "node", "aiohttp")
    lines.append(f"{'workload':<12}" + "".join(f"{p:>16}" for p in peers))
    for wl, _ in workloads:
        cells = [f"{_n(rat[wl][p]['rps'], '.2f')} ({_n(rat[wl][p]['cpu'], '.2f')})" for p in peers]
        lines.append(f"{wl:<12}" + "".join(f"{c:>16}" for c in cells))
    lines += [
        "",
        "peak RSS (MiB, sum over the server's processes): "
        + ", ".join(f"{s} {rss[s] / 1024:.1f}" for s in servers if s in rss),
    ]
    lines += ["", "targets"]
    for t in tgts:
        mark = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        value = _n(t["value"], ".4f") if t["name"] == "misattribution" else _n(t["value"], ".3f")
        lines.append(f"  {t['what']:<46}{value:>10}  target {t['target']:<12} {mark}")
    return "\n".join(lines)


def noise(summary: dict[str, Any]) -> float | None:
    """The median `other%` over every server and workload: how busy the rest of the machine was."""
    return median(
        [
            f["other_cpu_pct"]
            for per_wl in summary.values()
            for f in per_wl.values()
            if f.get("other_cpu_pct") is not None
        ]
    )


def render(results: dict[str, Any]) -> str:
    """Fill in `results`' summary, ratios and targets from its rounds and accuracy check, and
    return the terminal table (with a note when the machine was not idle)."""
    summary = summarise(results["rounds"])
    workloads = results["workloads"]
    rat = ratios(summary, list(workloads))
    tgts = targets(rat, results["accuracy"].get(HITCOUNT))
    results.update(summary=summary, ratios=rat, targets=tgts)
    blocks = [(name, f"{w['what']} ({w['connections']:,} connections)") for name, w in workloads.items()]
    text = table(summary, blocks, list(results["servers"]), results["peak_rss_kib"], rat, tgts)
    results["environment"]["median_other_cpu_pct"] = other = noise(summary)
    if other is not None and other > NOISY_OTHER_PCT:
        text += (
            f"\n\nNOTE: the machine was not idle — a median {other:.0f}% of a CPU went to other "
            "processes during the measurements; compare ratios, and rerun when it is quiet."
        )
    return text


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")


def write_chart(path: Path, results: dict[str, Any]) -> str | None:
    """A 2x2 PNG: req/s per workload, CPU µs/request per workload, p99 latency, peak RSS.
    Returns why it was not drawn (matplotlib missing), or None."""
    summary, rss = results["summary"], results["peak_rss_kib"]
    workloads, servers = list(results["workloads"]), list(results["servers"])
    env = results["environment"]
    title = (
        f"hitcount bench, {results['profile']} profile, {env['date']}, {env['cpu']} ({env['cpus']} CPUs), "
        f"kernel {env['kernel']}, Python {env['python']}; other processes: median "
        f"{env.get('median_other_cpu_pct') or 0:.0f}% of a CPU"
    )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no chart: pip install -e '.[bench]' (matplotlib)"
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    panels = (
        (axes[0][0], "rps", "requests/s (median)"),
        (axes[0][1], "cpu_us_per_req", "server CPU µs per request"),
        (axes[1][0], "p99", "p99 latency µs (wrk: closed loop; rate*: open loop)"),
    )
    width = 0.8 / max(1, len(servers))
    for ax, figure, title in panels:
        for i, s in enumerate(servers):
            values = [_get(summary, s, wl, figure) or 0.0 for wl in workloads]
            ax.bar([x + i * width for x in range(len(workloads))], values, width, label=s)
        ax.set_xticks([x + width * (len(servers) - 1) / 2 for x in range(len(workloads))])
        ax.set_xticklabels(workloads)
        ax.set_title(title)
        ax.set_yscale("log")
    axes[0][0].legend(fontsize=8)
    names = [s for s in servers if s in rss]
    axes[1][1].bar(names, [rss[s] / 1024 for s in names], color="grey")
    axes[1][1].set_title("peak RSS MiB")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
