"""How fast the autoscaling simulator is: one day at 15 s HPA sync, and a 1,000+ configuration sweep.

    .venv/bin/python benchmarks/scaling.py [--runs 21] [--jobs 2] [--skip-sweep]

Workload: the NASA KSC trace's launch day (1995-07-13 UTC, 1,440 per-minute rows)
at --scale 200 (peak 1,350 requests/s) through examples/scaling.yaml: web HPA on
an External AverageValue metric, Cluster Autoscaler (10 s scan, 90 s
provisioning, scale-down after 10 min). The ``+ worker`` rows add the worker
deployment with its queue-length HPA (a closed loop). The trace ships in
examples/data/ (see its README).

Times are wall-clock medians of ``--runs`` runs on a prepared workload (``run``)
and end to end (``simulate``: per-second demand, the metric pipeline, the run,
the per-minute SLO accounting). The sweep is ``recommend`` over the default grid.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
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

    if not args.skip_sweep:
        grid = Grid.default(web_only)
        sweep = recommend(trace, web_only, grid=grid, jobs=args.jobs)
        rows.append((
            f"recommend, {sweep.evaluated} configurations (24 h each, HPA + CA)",
            f"{sweep.seconds:.1f} s",
            f"{sweep.evaluated / sweep.seconds:.0f} configs/s on {sweep.jobs} processes",
        ))
        best = sweep.best
        if best is not None:
            rows.append((
                "  cheapest with 0 min over SLO",
                f"{best.node_hours:.1f} node-h",
                f"min {best.min_replicas}, target {best.target_per_pod:g}/pod, window {best.scale_down_window}s, headroom {best.headroom_pods}",
            ))

    print(f"shiftover scale benchmark: {label}, 86,400 s simulated per run")
    print()
    print("| what | time | notes |")
    print("|---|---:|---|")
    for what, t, notes in rows:
        print(f"| {what} | {t} | {notes} |")


if __name__ == "__main__":
    main()
