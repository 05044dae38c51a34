"""Judgement: a gate's measurement (or the provider's failure) becomes a verdict.

Providers only measure; this module decides, with one rule table per gate type:

- No data never passes: ``NoData`` and too few samples are INCONCLUSIVE, which
  holds the step without counting as a failure.
- A provider that cannot answer at all (refused, timed out, a query Prometheus
  rejects) is INCONCLUSIVE *and marked as an error* (``GateResult.error``): the
  engine counts errors toward the plan's ``error_limit`` and ``validate`` fails
  on them, while "answered, nothing to judge yet" stays plain no data. The
  exception is ``http`` gates, whose whole point is reachability: there a
  connection error is a FAIL.
- Breakage is a value, not an absence: a provider that sees traffic sent to
  the new environment and no answers reports it as a measurement (an error
  ratio of 1), which the thresholds below fail.
- Alert-like gates (``JUDGE = "alerts"``: Prometheus alerts, CloudWatch alarms,
  Datadog monitors) report ``details["firing"]`` and ``details["no_data"]``:
  anything firing FAILs, else anything without data is INCONCLUSIVE.
- Thresholds are inclusive (``max: 0.01`` passes at exactly 0.01).

Every verdict carries the value, the threshold it was held to, the sample size
and a one-line reason, so the journal shows what decided it.
"""

from __future__ import annotations

import math
from typing import Any

from shiftover.errors import NoData, ProviderError
from shiftover.types import GateResult, Measurement, Verdict


def _threshold_text(spec: Any) -> str:
    parts = []
    if getattr(spec, "min", None) is not None:
        parts.append(f">= {spec.min:g}")
    if getattr(spec, "max", None) is not None:
        parts.append(f"<= {spec.max:g}")
    return " and ".join(parts)


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def judge(spec: Any, outcome: Measurement | ProviderError, *, now: float) -> GateResult:
    """Turn one measurement (or provider error) into a :class:`GateResult`."""
    kind = getattr(spec, "JUDGE", "threshold")
    if kind == "probe":
        return _judge_http(spec, outcome, now)
    if kind == "alerts":
        return _judge_alerts(spec, outcome, now)
    return _judge_threshold(spec, outcome, now)


def _inconclusive(spec: Any, now: float, reason: str, *, threshold: str | None = None,
                  value: float | None = None, samples: int | None = None,
                  error: bool = False) -> GateResult:
    return GateResult(spec.name, Verdict.INCONCLUSIVE, value, threshold, samples, reason, now,
                      error=error)


def _judge_threshold(spec: Any, outcome: Measurement | ProviderError, now: float) -> GateResult:
    threshold = _threshold_text(spec)
    if isinstance(outcome, NoData):
        return _inconclusive(spec, now, f"no data: {outcome.message}", threshold=threshold)
    if isinstance(outcome, ProviderError):
        return _inconclusive(spec, now, f"provider error: {outcome.message}", threshold=threshold,
                             error=True)
    value, samples = outcome.value, outcome.samples
    if value is None or math.isnan(value):
        return _inconclusive(spec, now, "no value to judge", threshold=threshold, samples=samples)
    min_samples = getattr(spec, "min_samples", 0)
    if min_samples:
        if samples is None:
            return _inconclusive(spec, now, f"sample size unknown, {min_samples} required",
                                 threshold=threshold, value=value)
        if samples < min_samples:
            return _inconclusive(spec, now, f"{samples} samples, {min_samples} required",
                                 threshold=threshold, value=value, samples=samples)
    hi, lo = getattr(spec, "max", None), getattr(spec, "min", None)
    if hi is not None and value > hi:
        return GateResult(spec.name, Verdict.FAIL, value, threshold, samples,
                          f"{_fmt(value)} is above max {hi:g}", now)
    if lo is not None and value < lo:
        return GateResult(spec.name, Verdict.FAIL, value, threshold, samples,
                          f"{_fmt(value)} is below min {lo:g}", now)
    return GateResult(spec.name, Verdict.PASS, value, threshold, samples,
                      f"{_fmt(value)} within {threshold}", now)


def _judge_alerts(spec: Any, outcome: Measurement | ProviderError, now: float) -> GateResult:
    threshold = "0 firing"
    if isinstance(outcome, ProviderError):  # NoData included: no answer is not "no alerts"
        return _inconclusive(spec, now, f"cannot read alerts: {outcome.message}", threshold=threshold,
                             error=not isinstance(outcome, NoData))
    firing = int(outcome.value or 0)
    if firing:
        names = sorted({str(a.get("alertname", "?")) for a in outcome.details.get("firing", [])})
        listed = ", ".join(names) if names else f"{firing} alert(s)"
        return GateResult(spec.name, Verdict.FAIL, float(firing), threshold, outcome.samples,
                          f"firing: {listed}", now)
    # alarms/monitors that exist but have no data to judge hold the step: a quiet
    # alarm is not a green one (CloudWatch INSUFFICIENT_DATA, Datadog No Data)
    no_data = sorted(str(n) for n in outcome.details.get("no_data", []))
    if no_data:
        return _inconclusive(spec, now, f"no data: {', '.join(no_data)}", threshold=threshold,
                             value=0.0, samples=outcome.samples)
    return GateResult(spec.name, Verdict.PASS, 0.0, threshold, outcome.samples,
                      "no matching alert firing", now)


def _judge_http(spec: Any, outcome: Measurement | ProviderError, now: float) -> GateResult:
    threshold = f"status {spec.expect_status}"
    if spec.body_contains:
        threshold += f", body contains {spec.body_contains!r}"
    if isinstance(outcome, NoData):
        return _inconclusive(spec, now, outcome.message, threshold=threshold)
    if isinstance(outcome, ProviderError):
        return GateResult(spec.name, Verdict.FAIL, None, threshold, None,
                          f"request failed: {outcome.message}", now)
    status = int(outcome.value) if outcome.value is not None else None
    if status != spec.expect_status:
        return GateResult(spec.name, Verdict.FAIL, outcome.value, threshold, 1,
                          f"status {status}, expected {spec.expect_status}", now)
    if spec.body_contains and outcome.details.get("body_match") is False:
        return GateResult(spec.name, Verdict.FAIL, outcome.value, threshold, 1,
                          f"body does not contain {spec.body_contains!r}", now)
    return GateResult(spec.name, Verdict.PASS, outcome.value, threshold, 1, f"status {status}", now)


def summarize(results: list[GateResult] | tuple[GateResult, ...]) -> Verdict:
    """The tick's overall verdict: any FAIL fails; else any INCONCLUSIVE holds; else PASS.
    No gates at all is INCONCLUSIVE (no data never passes)."""
    if not results:
        return Verdict.INCONCLUSIVE
    if any(r.verdict is Verdict.FAIL for r in results):
        return Verdict.FAIL
    if any(r.verdict is Verdict.INCONCLUSIVE for r in results):
        return Verdict.INCONCLUSIVE
    return Verdict.PASS


def result_from_dict(d: dict[str, Any]) -> GateResult:
    return GateResult(d["gate"], Verdict(d["verdict"]), d.get("value"), d.get("threshold"),
                      d.get("samples"), d.get("reason", ""), d.get("at", 0.0),
                      error=bool(d.get("error", False)))
