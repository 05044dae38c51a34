"""How fast compare_latency finds a slower new environment, and how rarely it is wrong.

    .venv/bin/python benchmarks/latency_detection.py [--runs 300] [--seed 5] [--json]

A seeded simulation with no servers, of the code the gate runs
(``shiftover.analysis.latency.CompareLatency``, fed one figure per environment
per check): per-interval p95s around 200 ms on old, log-normal noise (log sd
``sigma``), new ``ratio`` times as slow, optionally with AR(1) noise of lag-1
correlation ``rho`` on each side (figures of neighbouring intervals alike, as
real ones are). Each step lasts 60 checks. It prints, per scenario, the share
of steps that FAILed for regression within the step and the median check at
which they did. ``effect_size`` 1.2, ``alpha`` 0.01, ``min_intervals`` 10.

The scenarios at or under ``effect_size`` (1.0x, 1.1x, 1.2x) are false FAILs:
the target is at most ``alpha`` without autocorrelation.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from shiftover.analysis.latency import CompareLatency  # noqa: E402

ALPHA, EFFECT, MIN_INTERVALS, CHECKS = 0.01, 1.2, 10, 60
SCENARIOS: tuple[tuple[float, float, float], ...] = (
    # ratio, sigma, rho
    (1.0, 0.25, 0.0), (1.1, 0.25, 0.0), (1.2, 0.25, 0.0),
    (1.5, 0.25, 0.0), (2.0, 0.25, 0.0), (3.0, 0.25, 0.0),
    (2.0, 0.6, 0.0),
    (1.0, 0.25, 0.5), (1.2, 0.25, 0.5), (2.0, 0.25, 0.5),
)


def _noise(rng: np.random.Generator, sigma: float, rho: float) -> np.ndarray:
    z = rng.normal(0.0, sigma, CHECKS)
    if rho:
        scale = (1 - rho * rho) ** 0.5
        for t in range(1, CHECKS):
            z[t] = rho * z[t - 1] + scale * z[t]
    return z


def run_cell(ratio: float, sigma: float, rho: float, runs: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    firsts: list[int] = []
    for _ in range(runs):
        old = 0.2 * np.exp(_noise(rng, sigma, rho))
        new = 0.2 * ratio * np.exp(_noise(rng, sigma, rho))
        check = CompareLatency(alpha=ALPHA, effect_size=EFFECT, min_intervals=MIN_INTERVALS)
        for t in range(CHECKS):
            if check.update(float(old[t]), float(new[t])).regression:
                firsts.append(t + 1)
                break
    return {"ratio": ratio, "sigma": sigma, "rho": rho, "runs": runs,
            "failed": len(firsts), "fail_rate": len(firsts) / runs,
            "median_check": statistics.median(firsts) if firsts else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [run_cell(r, s, rho, args.runs, args.seed + i)
            for i, (r, s, rho) in enumerate(SCENARIOS)]
    result = {"date": datetime.date.today().isoformat(), "seed": args.seed, "alpha": ALPHA,
              "effect_size": EFFECT, "min_intervals": MIN_INTERVALS, "checks": CHECKS,
              "rows": rows}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"compare_latency detection {result['date']}, seed {args.seed}, {args.runs} steps "
          f"of {CHECKS} checks per row, alpha {ALPHA}, effect_size {EFFECT}, "
          f"min_intervals {MIN_INTERVALS}\n")
    print("| new / old | log sd | lag-1 corr | FAILed within the step | median check of FAIL |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        kind = " (false FAIL)" if r["ratio"] <= EFFECT else ""
        median = "-" if r["median_check"] is None else f"{r['median_check']:g}"
        print(f"| {r['ratio']:g}x | {r['sigma']:g} | {r['rho']:g} | "
              f"{r['failed']}/{r['runs']} = {r['fail_rate']:.1%}{kind} | {median} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
