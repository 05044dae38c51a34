"""How fast the compare gate's sequential test finds a worse new environment, and how rarely it cries wolf.

    .venv/bin/python benchmarks/detection.py [--runs 1000] [--seed 8] [--json]

A seeded simulation, no servers. Requests arrive as Poisson processes: new gets
``share`` of them at 1, 10 or 100 req/s, old the rest (at a 1% share old serves
99 times new's traffic). Old fails 0.1% of its requests; new fails 0.1%
(healthy) or 0.5%, 2%, 5%, 20% (bad). Neither rate is known to the test.

Compared, per scenario:

- ``compare``: :class:`shiftover.analysis.compare.CompareErrors` (alpha 0.01,
  tolerance 0, min_requests 1), fed after every request on new (vectorised over
  runs with numpy; the same arithmetic as the class, checked against it below).
  Requests to FAIL come from that simulation; seconds to FAIL from a second
  one where the gate is fed every second (Poisson counts per second).
- ``flagger``: a Flagger-style gate: every minute, new's error ratio over that
  minute > 1% is a failed check; rollback at the 1st (threshold 1) or 5th
  (threshold 5) failed check.
- ``wald``: the information-theoretic bound log(1/alpha) / KL(p_new || p_old)
  requests on new, for a test that knew old's rate.
- ``floor``: the same bound for a test that must learn old's rate from old's
  own traffic: log(1/alpha) / the information per new request about which
  environment each error came from (conditional on the errors' total).

False-FAIL rates: the share of healthy runs that ever FAIL, over
``--healthy-requests`` requests on new for ``compare`` (checked after every
one, and in the seconds column fed every second for as long), and over
``--horizon`` minutes for ``flagger``. Bad runs stop at FAIL or
at the horizon; a median past the horizon is printed as ``>``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from shiftover.analysis.compare import GRID, CompareErrors  # noqa: E402

ALPHA = 0.01
OLD_RATE = 0.001
BAD_RATES = (0.005, 0.02, 0.05, 0.20)
SHARES = (0.01, 0.10)
NEW_RPS = (1.0, 10.0, 100.0)


def kl_bernoulli(p: float, q: float) -> float:
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def wald_bound(p_new: float, p_old: float, alpha: float = ALPHA) -> float:
    return math.log(1 / alpha) / kl_bernoulli(p_new, p_old)


def floor_bound(p_new: float, p_old: float, share: float, alpha: float = ALPHA) -> float:
    """log(1/alpha) over the conditional information per new request (Poisson errors)."""
    old_per_new = (1 - share) / share
    new_err, old_err = p_new, p_old * old_per_new
    q1 = new_err / (new_err + old_err)
    q0 = share
    return math.log(1 / alpha) / ((new_err + old_err) * kl_bernoulli(q1, q0))


class Sequential:
    """CompareErrors' e-value for many runs at once (tolerance 0)."""

    def __init__(self, runs: int, alpha: float = ALPHA) -> None:
        self.log_rho = np.log(np.array(GRID))
        self.above = np.array(GRID) > 1.0
        self.ll = np.zeros((runs, len(GRID)))
        self.llb = np.zeros(runs)
        self.pending = np.zeros((runs, 4), dtype=np.int64)  # old_n, old_x, new_n, new_x
        self.threshold = math.log(1 / alpha)
        self.log_above = math.log(int(self.above.sum()))

    def feed(self, rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Add interval counts for ``rows``; return which of them now FAIL."""
        self.pending[rows] += counts
        p = self.pending[rows]
        close = (p[:, 0] > 0) & (p[:, 2] > 0)
        total = p[:, 1] + p[:, 3]
        upd = close & (total > 0)
        if upd.any():
            r = rows[upd]
            old_n, old_x, new_n, new_x = (p[upd, i].astype(float)[:, None] for i in range(4))
            log_rn = self.log_rho[None, :] + np.log(new_n)
            log_tot = np.logaddexp(log_rn, np.log(old_n))
            self.ll[r] += new_x * (log_rn - log_tot) + old_x * (np.log(old_n) - log_tot)
            log_tot_b = np.logaddexp(np.log(new_n), np.log(old_n))[:, 0]
            self.llb[r] += (new_x[:, 0] * (np.log(new_n[:, 0]) - log_tot_b)
                            + old_x[:, 0] * (np.log(old_n[:, 0]) - log_tot_b))
        self.pending[rows[close]] = 0
        la = self.ll[rows][:, self.above]
        top = la.max(axis=1)
        log_e = top + np.log(np.exp(la - top[:, None]).sum(axis=1)) - self.log_above - self.llb[rows]
        return np.asarray(log_e >= self.threshold)


def sequential_requests(p_new: float, share: float, runs: int, max_requests: int,
                        rng: np.random.Generator) -> np.ndarray:
    """Requests on new until FAIL, per run (inf = not within max_requests)."""
    seq = Sequential(runs)
    result = np.full(runs, np.inf)
    active = np.arange(runs)
    for k in range(1, max_requests + 1):
        if active.size == 0:
            break
        n = active.size
        old_n = rng.geometric(share, size=n) - 1  # old arrivals before this new one
        counts = np.stack([old_n, rng.binomial(old_n, OLD_RATE), np.ones(n, dtype=np.int64),
                           rng.binomial(1, p_new, size=n)], axis=1)
        failed = seq.feed(active, counts)
        result[active[failed]] = k
        active = active[~failed]
    return result


def flagger_minutes(p_new: float, rps: float, threshold: int, runs: int, horizon: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(minutes, requests on new) until the threshold-th failed check (inf = never)."""
    n = rng.poisson(rps * 60, size=(runs, horizon))
    x = rng.binomial(n, p_new)
    failed = (n > 0) & (x > 0.01 * n)
    count = np.cumsum(failed, axis=1)
    hit = count >= threshold
    any_hit = hit.any(axis=1)
    first = np.where(any_hit, hit.argmax(axis=1), 0)
    minutes = np.where(any_hit, first + 1, np.inf)
    cum_n = np.cumsum(n, axis=1)
    requests = np.where(any_hit, cum_n[np.arange(runs), first], np.inf)
    return minutes, requests


def _median(values: np.ndarray) -> float:
    return float(np.median(values))  # inf when more than half never FAILed


def sequential_seconds(p_new: float, share: float, rps: float, runs: int, max_seconds: int,
                       rng: np.random.Generator) -> np.ndarray:
    """Seconds until FAIL, per run, for a gate fed every second (Poisson counts per second)."""
    seq = Sequential(runs)
    result = np.full(runs, np.inf)
    active = np.arange(runs)
    old_rps = rps * (1 - share) / share
    for t in range(1, max_seconds + 1):
        if active.size == 0:
            break
        n = active.size
        old_n, new_n = rng.poisson(old_rps, size=n), rng.poisson(rps, size=n)
        counts = np.stack([old_n, rng.binomial(old_n, OLD_RATE),
                           new_n, rng.binomial(new_n, p_new)], axis=1)
        failed = seq.feed(active, counts)
        result[active[failed]] = t
        active = active[~failed]
    return result


def check_against_class(rng: np.random.Generator) -> None:
    """The vectorised arithmetic equals CompareErrors' on a few random paths."""
    for _ in range(3):
        seq = Sequential(1)
        check = CompareErrors(alpha=ALPHA, min_requests=1)
        tot = np.zeros(4, dtype=np.int64)
        for _ in range(300):
            old_n = int(rng.geometric(0.1)) - 1
            c = np.array([old_n, rng.binomial(old_n, 0.02), 1, rng.binomial(1, 0.05)])
            tot += c
            fail_vec = bool(seq.feed(np.array([0]), c[None, :])[0])
            v = check.update(int(tot[0]), int(tot[1]), int(tot[2]), int(tot[3]))
            la = seq.ll[0][seq.above]
            log_e = float(np.logaddexp.reduce(la) - seq.log_above - seq.llb[0])
            if not math.isclose(log_e, math.log(v.e_value), rel_tol=1e-9, abs_tol=1e-9):
                raise AssertionError(f"vectorised log e {log_e} != class {math.log(v.e_value)}")
            if fail_vec and v.outcome.value != "fail":
                raise AssertionError("vectorised FAIL without the class's")


def run(runs: int, seed: int, healthy_requests: int, horizon: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    check_against_class(rng)
    rows = []
    for share in SHARES:
        healthy = sequential_requests(OLD_RATE, share, runs, healthy_requests, rng)
        seq_false = float(np.isfinite(healthy).mean())
        for p_new in (OLD_RATE, *BAD_RATES):
            bad = p_new != OLD_RATE
            wald = wald_bound(p_new, OLD_RATE) if bad else None
            floor = floor_bound(p_new, OLD_RATE, share) if bad else None
            reqs = (sequential_requests(p_new, share, runs, max(healthy_requests, 20_000), rng)
                    if bad else healthy)
            for rps in NEW_RPS:
                row: dict[str, Any] = {
                    "share": share, "new_rate": p_new, "old_rate": OLD_RATE, "new_rps": rps,
                    "wald_requests": wald, "floor_requests": floor,
                }
                if bad:
                    med = _median(reqs)
                    row["compare_requests"] = med
                    row["compare_seconds"] = _median(sequential_seconds(
                        p_new, share, rps, runs, max(int(4 * med / rps), 60), rng))
                    row["compare_vs_wald"] = med / wald if wald else None
                    row["compare_vs_floor"] = med / floor if floor else None
                else:
                    row["compare_false_fail"] = seq_false
                    per_second = sequential_seconds(OLD_RATE, share, rps, runs,
                                                    int(healthy_requests / rps), rng)
                    row["compare_false_fail_per_second"] = float(np.isfinite(per_second).mean())
                for threshold in (1, 5):
                    minutes, freq = flagger_minutes(p_new, rps, threshold, runs, horizon, rng)
                    if bad:
                        row[f"flagger{threshold}_requests"] = _median(freq)
                        row[f"flagger{threshold}_seconds"] = _median(minutes) * 60
                    else:
                        row[f"flagger{threshold}_false_fail"] = float(np.isfinite(minutes).mean())
                rows.append(row)
    return {
        "date": datetime.date.today().isoformat(),
        "seed": seed, "runs": runs, "alpha": ALPHA,
        "healthy_requests": healthy_requests, "flagger_horizon_minutes": horizon,
        "rows": rows,
    }


def _cell(value: float | None, fmt: str = "{:.0f}") -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "never"
    return fmt.format(value)


def table(result: dict[str, Any]) -> str:
    lines = [
        f"detection benchmark {result['date']}, seed {result['seed']}, {result['runs']} runs "
        f"per cell, alpha {result['alpha']}",
        "",
        "| share | new err | new req/s | wald req | floor req | compare req (x wald, x floor) "
        "| compare s | flagger t=1 req / s | flagger t=5 req / s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        head = f"| {r['share']:.0%} | {r['new_rate']:.1%} | {r['new_rps']:g} |"
        if r["wald_requests"] is None:
            lines.append(
                f"{head} - | - | false FAIL {r['compare_false_fail']:.2%} "
                f"(over {result['healthy_requests']} req) | "
                f"false FAIL {r['compare_false_fail_per_second']:.2%} | "
                f"false FAIL {r['flagger1_false_fail']:.1%} | "
                f"false FAIL {r['flagger5_false_fail']:.1%} |")
            continue
        lines.append(
            f"{head} {r['wald_requests']:.0f} | {r['floor_requests']:.0f} | "
            f"{_cell(r['compare_requests'])} ({_cell(r['compare_vs_wald'], '{:.2f}')}, "
            f"{_cell(r['compare_vs_floor'], '{:.2f}')}) | {_cell(r['compare_seconds'])} | "
            f"{_cell(r['flagger1_requests'])} / {_cell(r['flagger1_seconds'])} | "
            f"{_cell(r['flagger5_requests'])} / {_cell(r['flagger5_seconds'])} |")
    lines.append("")
    lines.append(f"flagger false FAIL over {result['flagger_horizon_minutes']} min; "
                 "never = median past the horizon")
    return "\n".join(lines)


def _finite(value: Any) -> Any:
    """inf (never FAILed within the horizon) as null: JSON has no infinity."""
    if isinstance(value, float) and math.isinf(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--healthy-requests", type=int, default=20_000)
    ap.add_argument("--horizon", type=int, default=30, help="flagger minutes")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = run(args.runs, args.seed, args.healthy_requests, args.horizon)
    if args.json:
        print(json.dumps(_finite(result), indent=2))
    else:
        print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
