"""How fast the autoscaling simulator is: one day at 15 s HPA sync, 35 days end to end, a 1,050-configuration sweep.

    .venv/bin/python benchmarks/scaling.py [--runs 21] [--jobs 2] [--long-runs 3] [--skip-long] [--skip-sweep]

Workload: the NASA KSC trace's launch day (1995-07-13 UTC, 1,440 per-minute rows)
at --scale 200 (peak 1,350 requests/s) through examples/scaling.yaml: web HPA on
an External AverageValue metric, Cluster Autoscaler (10 s scan, 90 s
provisioning, scale-down after 10 min). The ``+ worker`` rows add the worker
deployment with its queue-length HPA (a closed loop). The trace ships in
examples/data/ (see its README).

Times are wall-clock medians of ``--runs`` runs on a prepared workload (``run``)
and end to end (``simulate``: per-second demand, the metric pipeline, the run,
the per-minute SLO accounting).

35 days: the NASA trace tiled to 35 days (50,400 one-minute rows from
1995-07-01T04:00:00Z, written to a temporary file) through the CLI,
``shiftover scale simulate ... --scale 200 --out DIR`` with web and worker, in a
subprocess: everything a user waits for (start-up and imports, reading the
trace, the simulation, timeline.csv, summary.json and the charts). Wall time and
the child's peak RSS (``os.wait4``), the median of ``--long-runs`` runs.

The sweep is ``recommend`` over the default grid of examples/scaling.yaml, web
and worker (1,050 configurations; the web HPA's decisions shared within each
group of headroom values), on ``--jobs`` processes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from shiftover.scaling.config import (  # noqa: E402
    ScalingConfig,
    controller_constants,
    load_config,
    sim_params,
    web_hpa_spec,
    worker_hpa_spec,
)
from shiftover.scaling.recommend import Grid, recommend  # noqa: E402
from shiftover.scaling.sim import prepare, run, simulate  # noqa: E402
from shiftover.scaling.trace import Trace, load_trace, parse_timestamp  # noqa: E402

NASA = REPO / "examples" / "data" / "nasa_ksc_jul1995_rpm.csv"


def day_trace() -> tuple[Trace, str]:
    trace = load_trace(
        NASA, scale=200, start=parse_timestamp("1995-07-13T00:00:00Z"), end=parse_timestamp("1995-07-14T00:00:00Z")
    )
    return trace, "NASA KSC 1995-07-13 x200"


def tiled_trace(path: Path, days: int = 35) -> None:
    """The NASA trace repeated to ``days`` days of one-minute rows, from its first minute."""
    lines = NASA.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    start = parse_timestamp(rows[0].split(",", 1)[0])
    out = [header]
    for i in range(days * 1440):
        stamp = datetime.fromtimestamp(start.timestamp() + 60 * i, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append(f"{stamp},{rows[i % len(rows)].split(',', 1)[1]}")
    path.write_text("\n".join(out) + "\n")


def cli_run(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one CLI run in a child process."""
    exe = Path(sys.executable).with_name("shiftover")
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}  # this checkout's code, as above
    child = subprocess.Popen([str(exe), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"shiftover {' '.join(args)} exited {child.returncode}")
    return wall, usage.ru_maxrss / 1024  # kB on Linux


def median_ms(fn: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--long-runs", type=int, default=3)
    ap.add_argument("--skip-long", action="store_true")
    ap.add_argument("--skip-sweep", action="store_true")
    args = ap.parse_args()

    trace, label = day_trace()
    full: ScalingConfig = load_config(REPO / "examples" / "scaling.yaml")
    web_only = full.model_copy(update={"worker": None})
    rows: list[tuple[str, str, str]] = []
    for name, cfg in (("HPA + Cluster Autoscaler", web_only), ("HPA + CA + worker (queue HPA)", full)):
        params = sim_params(cfg)
        work = prepare(trace, params)
        web, worker, consts = web_hpa_spec(cfg), worker_hpa_spec(cfg), controller_constants(cfg)
        run(work, params, web, worker, consts)  # warm-up
        ms_run = median_ms(lambda: run(work, params, web, worker, consts), args.runs)  # noqa: B023
        ms_all = median_ms(lambda: simulate(trace, cfg), args.runs)  # noqa: B023
        syncs = work.duration // params.sync_period
        rows.append((f"24 h, 15 s sync, {name}: run", f"{ms_run:.1f} ms", f"{syncs} HPA syncs, CA scan every {params.scan_interval} s"))
        rows.append((f"24 h, 15 s sync, {name}: simulate (end to end)", f"{ms_all:.1f} ms", f"median of {args.runs}"))

    if not args.skip_long:
        with tempfile.TemporaryDirectory() as tmp:
            trace35 = Path(tmp) / "trace35.csv"
            tiled_trace(trace35)
            runs = [
                cli_run([
                    "scale", "simulate", "--trace", str(trace35), "--config", str(REPO / "examples" / "scaling.yaml"),
                    "--scale", "200", "--out", str(Path(tmp) / f"out{i}"),
                ])
                for i in range(args.long_runs)
            ]
        wall = statistics.median(r[0] for r in runs)
        rss = statistics.median(r[1] for r in runs)
        rows.append((
            "35 days, 1-minute rows, web + worker: `shiftover scale simulate` end to end (CLI, charts included)",
            f"{wall:.2f} s, {rss:.0f} MB peak RSS",
            f"median of {args.long_runs}; 201,600 HPA syncs per tier",
        ))

    if not args.skip_sweep:
        grid = Grid.default(full)
        t0 = time.perf_counter()
        sweep = recommend(trace, full, grid=grid, jobs=args.jobs)
        wall = time.perf_counter() - t0
        rows.append((
            f"recommend, {sweep.evaluated} configurations (24 h each, HPA + CA + worker)",
            f"{wall:.1f} s",
            f"the call, workers' start-up included ({sweep.seconds:.1f} s in the sweep); "
            f"{sweep.evaluated / wall:.0f} configs/s on {sweep.jobs} processes",
        ))
        best = sweep.best
        if best is not None:
            rows.append((
                "  cheapest with 0 min over SLO",
                f"{best.node_hours:.1f} node-h",
                f"min {best.min_replicas}, target {best.target_per_pod:g}/pod, window {best.scale_down_window}s, headroom {best.headroom_pods}",
            ))

    print(f"shiftover scale benchmark: {label}, 86,400 s simulated per run; load average {os.getloadavg()[0]:.1f}")
    print()
    print("| what | time | notes |")
    print("|---|---:|---|")
    for what, t, notes in rows:
        print(f"| {what} | {t} | {notes} |")


if __name__ == "__main__":
    main()
