"""How long `shiftover simulate` takes: simulated time against wall time.

    .venv/bin/python benchmarks/simulate.py [--rounds 3]

Cases: the example plan once with the fail-at-25 script, the example plan's and the
cutover plan's (production) ``--fail-each-step``, and a week-long plan (7 steps baked
a day each, checked every 60 s) once. It prints, per case, the simulated time, the
median wall time over the rounds, and how many times the simulation clock slept
(what used to grow with simulated time: one sleep per 0.2 s slice before the runner
took ``poll_slice``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from shiftover.engine import simulate as sim  # noqa: E402
from shiftover.plan import Plan, load_plan  # noqa: E402
from shiftover.testing import plan_dict  # noqa: E402


def week_plan() -> Plan:
    return Plan.model_validate(plan_dict(steps=[1, 5, 10, 25, 50, 75, 100], bake="1d",
                                         interval="60s"))


def cases() -> list[tuple[str, Any]]:
    example = load_plan(REPO / "examples" / "plan.yaml").plan
    cutover = load_plan(REPO / "examples" / "cutover.yaml", environment="production").plan
    fail25 = sim.load_script(REPO / "examples" / "simulate" / "fail-at-25.yaml", example)
    week = week_plan()
    return [
        ("examples/plan.yaml, fail-at-25 script, one run",
         lambda: [sim.simulate(example, fail25)]),
        ("examples/plan.yaml --fail-each-step (8 runs)",
         lambda: [r.result for r in sim.fail_each_step(example, sim.Script())]),
        ("examples/cutover.yaml --env production --fail-each-step (7 runs)",
         lambda: [r.result for r in sim.fail_each_step(cutover, sim.Script())]),
        ("7 steps baked 1 day each, checks every 60 s, one run",
         lambda: [sim.simulate(week, sim.Script())]),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    sleeps = {"n": 0}
    original = sim.SimulationClock.sleep

    def counted(self: sim.SimulationClock, seconds: float) -> None:
        sleeps["n"] += 1
        original(self, seconds)

    sim.SimulationClock.sleep = counted  # type: ignore[method-assign]
    print("| case | simulated | wall (median) | rounds | clock sleeps per round |")
    print("|---|---:|---:|---:|---:|")
    for name, fn in cases():
        walls = []
        simulated = 0.0
        for _ in range(args.rounds):
            sleeps["n"] = 0
            t0 = time.perf_counter()
            results = fn()
            walls.append(time.perf_counter() - t0)
            simulated = sum(r.simulated for r in results)
        print(f"| {name} | {sim.span(simulated)} | {statistics.median(walls):.2f} s | "
              f"{args.rounds} | {sleeps['n']:,} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
