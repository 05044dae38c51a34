"""API calls per step and seconds from rollback decision to confirmed, for the AWS routers.

    .venv/bin/python benchmarks/aws_routers.py [--runs 20] [--json]

Starts its own moto server on 127.0.0.1 (the local AWS double the tests use),
creates two weighted alias A records in a hosted zone and an ALB listener whose
default action forwards to two target groups (tests/routers/route53_setup.py and
alb_setup.py), and measures three routers: ``route53``, ``alb`` and ``lockstep``
(the Route53 records and the ALB listener as one group, Route53 first).

API calls are counted per HTTP request, by operation, on the routers' own boto3
clients (botocore's ``before-send`` event; the set-up uses other clients), for:
a fresh router's first ``read()``; a later ``read()`` (what the run does at
every tick); one step as the run does it (``apply`` + ``verify``) from 10% to
25%; and a rollback from 50% to a verified 0% (``drive_to_zero``, the one
rollback loop of the run and of ``shiftover rollback``).

Seconds from rollback decision to confirmed: ``drive_to_zero(router,
SystemClock())`` timed from 50% to a verified 0%, --runs times (median, p90 by
nearest rank, max). Route53 calls go through the real process-wide limiter
(``shiftover.aws.ROUTE53_RATE``, 5 requests/s), which is part of the real cost;
it is idle when each timed rollback starts (0.3 s after the set-up's last call).
The ``no limiter`` rows take it away, to show its share; shiftover never runs so.

moto answers every Route53 change INSYNC at once, so the router never polls
GetChange there. Real Route53 answers PENDING: the ``PENDING until the first
GetChange`` row scripts that answer (tests/routers/route53_setup.ScriptedClient)
and lets moto's GetChange say INSYNC at the first poll, i.e. the least a real
change costs; real propagation adds its own seconds (polls every 0.5, 1, then
2 s), and resolvers keep the old answers for the records' TTL after INSYNC.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests" / "routers"))

from shiftover.clock import SystemClock  # noqa: E402
from shiftover.demo.moto import MotoServer  # noqa: E402
from shiftover.engine.rollback import drive_to_zero  # noqa: E402
from shiftover.routers.alb import ALBRouter  # noqa: E402
from shiftover.routers.group import LockstepRouter  # noqa: E402
from shiftover.routers.route53 import Route53Router  # noqa: E402
from shiftover.types import Weights  # noqa: E402

IDLE = 0.3  # seconds before each timed rollback: more than the limiter's 0.2 s spacing
WRITES = ("ChangeResourceRecordSets", "ModifyListener", "ModifyRule")
LIMITER = {True: "5 req/s", False: "off", None: "n/a"}
PHASES = ("first read", "tick read", "step 10→25%", "rollback 50→0%")


class Calls:
    """HTTP requests by operation on some boto3 clients (botocore's before-send event
    fires once per request sent, retries included)."""

    def __init__(self, clients: list[Any]) -> None:
        self.counts: Counter[str] = Counter()
        self.writes: dict[str, float] = {}  # write operation -> perf_counter() when first sent
        for c in clients:
            c.meta.events.register("before-send", self._sent)

    def _sent(self, event_name: str, **_: Any) -> None:
        op = event_name.rsplit(".", 1)[-1]  # before-send.<service>.<Operation>
        self.counts[op] += 1
        if op in WRITES:
            self.writes.setdefault(op, time.perf_counter())

    def take(self) -> dict[str, int]:
        """The counts since the last take, and start again."""
        out = dict(self.counts)
        self.counts.clear()
        self.writes.clear()
        return out


@dataclass
class Case:
    name: str
    router: Any
    clients: list[Any]
    at_zero: Callable[[], bool]  # read straight from moto, not through the router
    limiter: bool | None = True  # Route53 calls through ROUTE53_RATE; None: no Route53 member
    calls: dict[str, dict[str, int]] = field(default_factory=dict)
    rollback_calls: list[int] = field(default_factory=list)
    write_at: dict[str, list[float]] = field(default_factory=dict)  # seconds after the decision
    seconds: list[float] = field(default_factory=list)


def route53_router(setup: Any) -> Route53Router:
    return Route53Router(setup.zone_id, setup.record_name, setup.record_type, setup.old, setup.new)


def alb_router(setup: Any) -> ALBRouter:
    return ALBRouter(setup.listener_arn, setup.old_arn, setup.new_arn)


def measure_calls(case: Case) -> None:
    calls = Calls(case.clients)
    r = case.router
    r.read()
    case.calls["first read"] = calls.take()
    r.read()
    case.calls["tick read"] = calls.take()
    r.apply(Weights(10))
    assert r.verify(Weights(10)) is True
    calls.take()
    r.apply(Weights(25))
    assert r.verify(Weights(25)) is True
    case.calls["step 10→25%"] = calls.take()
    r.apply(Weights(50))
    assert r.verify(Weights(50)) is True
    calls.take()
    assert drive_to_zero(r, SystemClock()) is None and case.at_zero()
    case.calls["rollback 50→0%"] = calls.take()


def time_rollbacks(case: Case, runs: int) -> None:
    calls = Calls(case.clients)
    clock = SystemClock()
    for _ in range(runs):
        case.router.apply(Weights(50))
        assert case.router.verify(Weights(50)) is True
        time.sleep(IDLE)
        calls.take()
        t0 = time.perf_counter()
        error = drive_to_zero(case.router, clock)
        seconds = time.perf_counter() - t0
        if error is not None or not case.at_zero():
            raise SystemExit(f"{case.name}: rollback not confirmed: {error}")
        case.seconds.append(seconds)
        for op, at in calls.writes.items():
            case.write_at.setdefault(op, []).append(at - t0)
        case.rollback_calls.append(sum(calls.take().values()))


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


def ops(counts: dict[str, int]) -> str:
    return ", ".join(f"{op} {n}" for op, n in counts.items()) or "none"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = ap.parse_args()

    with MotoServer() as moto:
        os.environ.update(moto.aws_env())
        from alb_setup import make_alb
        from route53_setup import ScriptedClient, make_route53, weights_at, with_status

        r53 = make_route53(record_type="A")  # alias records to two load balancers
        alb = make_alb()

        def r53_zero() -> bool:
            return bool(weights_at(r53.client, r53.zone_id, r53.record_name, r53.old, r53.new)
                        == (255, 0))

        def alb_zero() -> bool:
            w = alb.weights()
            return bool(w.get(alb.new_arn, 0) == 0 and w.get(alb.old_arn, 0) > 0)

        def pending(router: Route53Router) -> Route53Router:
            # real Route53 answers a change PENDING; here it turns INSYNC at the first poll
            scripted = ScriptedClient(router.client)
            scripted.always["change_resource_record_sets"] = with_status("PENDING")
            router.client = scripted
            return router

        def case(name: str, members: list[Any], at_zero: Callable[[], bool], *,
                 limiter: bool = True) -> Case:
            for m in members:
                if isinstance(m, Route53Router) and not limiter:
                    m.limiter = None
            router = members[0] if len(members) == 1 else LockstepRouter(members)
            has_route53 = any(isinstance(m, Route53Router) for m in members)
            return Case(name, router, [m.client for m in members], at_zero,
                        limiter if has_route53 else None)

        cases = [
            case("route53", [route53_router(r53)], r53_zero),
            case("alb", [alb_router(alb)], alb_zero),
            case("lockstep", [route53_router(r53), alb_router(alb)],
                 lambda: r53_zero() and alb_zero()),
            case("route53, PENDING until the first GetChange", [pending(route53_router(r53))],
                 r53_zero),
            case("lockstep, Route53 PENDING until the first GetChange",
                 [pending(route53_router(r53)), alb_router(alb)], lambda: r53_zero() and alb_zero()),
            case("route53, no limiter", [route53_router(r53)], r53_zero, limiter=False),
            case("lockstep, no limiter", [route53_router(r53), alb_router(alb)],
                 lambda: r53_zero() and alb_zero(), limiter=False),
        ]
        for c in cases:
            measure_calls(c)
            time_rollbacks(c, args.runs)
            if not args.json:
                print(f"{c.name}: median {statistics.median(c.seconds):.3f} s", file=sys.stderr,
                      flush=True)

    result = {
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "moto": version("moto"),
        "boto3": version("boto3"),
        "runs": args.runs,
        "routers": {
            c.name: {
                "route53_limiter": c.limiter,
                "calls": c.calls,
                "rollback_seconds": {
                    "median": round(statistics.median(c.seconds), 4),
                    "p90": round(p90(c.seconds), 4),
                    "max": round(max(c.seconds), 4),
                    "all": [round(s, 4) for s in c.seconds],
                },
                "calls_per_timed_rollback": sorted(set(c.rollback_calls)),
                "write_sent_after_decision_median": {
                    op: round(statistics.median(v), 4) for op, v in c.write_at.items()},
            } for c in cases
        },
    }
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0

    print(f"\nmoto {result['moto']}, boto3 {result['boto3']}, {result['machine']}, "
          f"{args.runs} timed rollbacks per router\n")
    print("| router | " + " | ".join(PHASES) + " |")
    print("|---|" + "---|" * len(PHASES))
    for c in cases:
        if c.limiter is not False:  # the calls do not depend on the limiter
            cells = [f"{sum(c.calls[p].values())}: {ops(c.calls[p])}" for p in PHASES]
            print(f"| {c.name} | " + " | ".join(cells) + " |")
    print()
    print("| router | Route53 limiter | runs | median s | p90 s | max s | calls per rollback "
          "| write sent after decision (median s) |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for c in cases:
        counts = "/".join(str(n) for n in sorted(set(c.rollback_calls)))
        writes = ", ".join(f"{op} {statistics.median(v):.3f}" for op, v in c.write_at.items())
        print(f"| {c.name} | {LIMITER[c.limiter]} | {len(c.seconds)} | "
              f"{statistics.median(c.seconds):.3f} | {p90(c.seconds):.3f} | "
              f"{max(c.seconds):.3f} | {counts} | {writes} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
