"""How fast a failing new environment is sent back to 0%: the demo's `errors` scenario, N times.

    .venv/bin/python benchmarks/rollback.py [--runs 5] [--rate 200]
    .venv/bin/python benchmarks/rollback.py --scenario healthy --runs 20
    .venv/bin/python benchmarks/rollback.py --scenario healthy --background 0.005

With ``--scenario healthy`` nothing fails: it counts the runs that were rolled
back all the same (false rollbacks: the target is none) and prints their reasons.

Each run starts the whole local stack (two sample apps, HAProxy, Prometheus,
Locust at --rate req/s), runs the demo plan (1 s interval, failure_limit 2), and
makes the new app answer 5% HTTP 500 from the 10% step on. It prints, per run and
as medians: rollback_seconds (fault onset to 0% confirmed on HAProxy, read back
through the runtime API) and failed client requests between the two. Target: 0%
confirmed within 3 s of fault onset.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
from pathlib import Path

from rich.console import Console

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from shiftover.demo.scenario import run_demo  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--scenario", choices=("errors", "healthy"), default="errors")
    ap.add_argument("--background", type=float, default=0.0,
                    help="both apps answer this share of requests with 500 from the start")
    args = ap.parse_args()
    quiet = Console(file=io.StringIO())
    extra = {"background_error_rate": args.background} if args.background else {}
    if args.scenario == "healthy":
        return healthy(args.runs, args.rate, quiet, extra)
    rows = []
    for i in range(args.runs):
        s = run_demo("errors", as_json=False, rate=args.rate, console=quiet, bake="3s", **extra)
        gates = ", ".join(f"{g['gate']} = {g['value']:.4f}" for g in s["failing_gates"])
        seconds = s["rollback_seconds"]
        if seconds is None:  # rolled back before the fault (a false rollback), or never
            rows.append((s["outcome"] + " before the fault", None, None, gates))
            print(f"run {i + 1}: {s['outcome']} before the fault was set  [{s['reason']}]",
                  flush=True)
            continue
        rows.append((s["outcome"], seconds, s["failed_requests_after_fault"], gates))
        print(f"run {i + 1}: {s['outcome']:<12} rollback {seconds:.3f}s  "
              f"failed after fault {s['failed_requests_after_fault']:>3}  [{gates}]", flush=True)
    secs = [r[1] for r in rows if r[1] is not None] or [float("nan")]
    fails = [r[2] for r in rows if r[2] is not None] or [float("nan")]
    print()
    print("| runs | rolled back | median rollback_seconds | max | median failed requests after fault | max |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {len(rows)} | {sum(r[0] == 'rolled_back' for r in rows)} | "
          f"{statistics.median(secs):.3f} | {max(secs):.3f} | {statistics.median(fails):g} | {max(fails)} |")
    return 0 if all(r[0] == "rolled_back" for r in rows) else 1


def healthy(runs: int, rate: float, quiet: Console, extra: dict[str, float]) -> int:
    outcomes = []
    for i in range(runs):
        s = run_demo("healthy", as_json=False, rate=rate, console=quiet, bake="3s", **extra)
        outcomes.append(s["outcome"])
        why = f"  [{s['reason']}]" if s["outcome"] != "promoted" else ""
        print(f"run {i + 1}: {s['outcome']:<12} {s['requests_total']} requests, "
              f"{s['failed_requests_total']} failed, {s['run_seconds']:g}s{why}", flush=True)
    print()
    print(f"| runs | promoted | rolled back | other |\n|---:|---:|---:|---:|\n"
          f"| {runs} | {outcomes.count('promoted')} | {outcomes.count('rolled_back')} | "
          f"{runs - outcomes.count('promoted') - outcomes.count('rolled_back')} |")
    return 0 if all(o == "promoted" for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
