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
- Command gates (``JUDGE = "command"``) are judged on the command's exit code:
  0 PASS, 1 FAIL, any other INCONCLUSIVE (the command cannot tell); killed by a
  signal, 126 and 127 (not executable, not found), or an unusable JSON value line
  are INCONCLUSIVE as errors (could not start and timed out arrive as
  ``ProviderError``). ``min_samples`` applies to the samples of its JSON line
  before either PASS or FAIL.

Every verdict carries the value, the threshold it was held to, the sample size
and a one-line reason, so the journal shows what decided it.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Protocol

from shiftover.analysis.compare import CompareErrors
from shiftover.analysis.latency import CompareLatency
from shiftover.errors import NoData, ProviderError
from shiftover.types import GateResult, Measurement, Verdict


def _threshold_text(spec: Any) -> str:
    parts = []
    if getattr(spec, "min", None) is not None:
        parts.append(f">= {spec.min:g}")
    if getattr(spec, "max", None) is not None:
        parts.append(f"<= {spec.max:g}")
    return " and ".join(parts)


def _with_hint(error: ProviderError) -> str:
    """A provider's message with its hint (how to fix it): the check's reason is all
    that `validate`, the journal and the live view show of it."""
    hint = getattr(error, "hint", None)
    return f"{error.message} (hint: {hint})" if hint and not isinstance(error, NoData) \
        else error.message


def _fmt(value: float) -> str:
    return f"{value:.6g}"


class Judge(Protocol):
    def __call__(self, outcome: Measurement | ProviderError, *, now: float) -> GateResult: ...


def make_judge(spec: Any) -> Judge:
    """The judge of one gate for a whole run: :func:`judge` for the stateless rule
    tables, a :class:`CompareJudge` (which keeps its test across checks) for a
    ``compare`` gate."""
    kind = getattr(spec, "JUDGE", "threshold")
    if kind == "compare":
        return CompareJudge(spec)
    if kind == "compare_latency":
        return CompareLatencyJudge(spec)
    return functools.partial(judge, spec)


def judge(spec: Any, outcome: Measurement | ProviderError, *, now: float) -> GateResult:
    """Turn one measurement (or provider error) into a :class:`GateResult`.
    (``compare`` gates keep state across checks: see :func:`make_judge`.)"""
    kind = getattr(spec, "JUDGE", "threshold")
    if kind in ("compare", "compare_latency"):
        return make_judge(spec)(outcome, now=now)
    if kind == "probe":
        return _judge_http(spec, outcome, now)
    if kind == "alerts":
        return _judge_alerts(spec, outcome, now)
    if kind == "command":
        return _judge_command(spec, outcome, now)
    return _judge_threshold(spec, outcome, now)


def _inconclusive(spec: Any, now: float, reason: str, *, threshold: str | None = None,
                  value: float | None = None, samples: int | None = None,
                  error: bool = False) -> GateResult:
    return GateResult(spec.name, Verdict.INCONCLUSIVE, value, threshold, samples, reason, now,
                      error=error)


def _unanswered(spec: Any, outcome: ProviderError, now: float, threshold: str) -> GateResult:
    """No measurement: no data holds the step; a provider that could not answer is an
    error as well (counted toward error_limit; ``validate`` fails on it)."""
    if isinstance(outcome, NoData):
        return _inconclusive(spec, now, f"no data: {outcome.message}", threshold=threshold)
    return _inconclusive(spec, now, f"provider error: {_with_hint(outcome)}", threshold=threshold,
                         error=True)


def _judge_threshold(spec: Any, outcome: Measurement | ProviderError, now: float) -> GateResult:
    threshold = _threshold_text(spec)
    if isinstance(outcome, ProviderError):
        return _unanswered(spec, outcome, now, threshold)
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
        return _inconclusive(spec, now, f"cannot read alerts: {_with_hint(outcome)}", threshold=threshold,
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


# exit codes a shell gives when it cannot run the command: the gate cannot work
_CANNOT_RUN = {126: "found but not executable", 127: "command not found"}


def _judge_command(spec: Any, outcome: Measurement | ProviderError, now: float) -> GateResult:
    min_samples = getattr(spec, "min_samples", 0) or 0
    threshold = "exit 0" + (f", at least {min_samples} samples" if min_samples else "")
    if isinstance(outcome, ProviderError):  # could not start, timed out
        return _unanswered(spec, outcome, now, threshold)
    d = outcome.details
    code = d.get("exit_code")
    value, samples = outcome.value, outcome.samples
    said = f": {d['message']}" if d.get("message") else ""

    def result(verdict: Verdict, reason: str, *, error: bool = False) -> GateResult:
        # the output's tail is kept when it did not pass: why it failed (the journal
        # redacts it), without a copy of every passing check's output
        evidence: dict[str, Any] = {"exit_code": code, "summary": d.get("summary")}
        if verdict is not Verdict.PASS:
            evidence["output"] = str(d.get("output") or "")[-1000:]
        return GateResult(spec.name, verdict, value, threshold, samples, reason, now,
                          error=error, evidence=evidence)

    summary = str(d.get("summary") or f"exit {code}")
    if not isinstance(code, int) or code < 0 or d.get("timed_out"):
        return result(Verdict.INCONCLUSIVE, f"{summary}{said}", error=True)
    if code in _CANNOT_RUN:
        return result(Verdict.INCONCLUSIVE, f"{summary} ({_CANNOT_RUN[code]}){said}", error=True)
    if d.get("json_error"):
        return result(Verdict.INCONCLUSIVE, f"{summary}, unusable value line: {d['json_error']}",
                      error=True)
    if code not in (0, 1):
        return result(Verdict.INCONCLUSIVE, f"{summary}: the command cannot tell{said}")
    if min_samples and (samples is None or samples < min_samples):
        counted = "sample size unknown" if samples is None else f"{samples} samples"
        return result(Verdict.INCONCLUSIVE,
                      f"{summary}, {counted}, {min_samples} required{said}")
    return result(Verdict.PASS if code == 0 else Verdict.FAIL, f"{summary}{said}")


class _StepJudge:
    """What both compare judges share: one test per step of the provider's
    (``details["step"]`` and ``details["since"]``), a new step a new test."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self._step: tuple[Any, Any] | None = None
        self._test: Any = None

    def _new_test(self) -> Any:
        raise NotImplementedError  # pragma: no cover

    def _test_for(self, details: dict[str, Any]) -> Any:
        step = (details.get("step"), details.get("since"))
        if step != self._step or self._test is None:
            self._step, self._test = step, self._new_test()
        return self._test


class CompareJudge(_StepJudge):
    """A ``compare`` gate's judge: one :class:`CompareErrors` per step, fed the
    counts the provider measured since the step started.

    The step is the provider's (``details["step"]`` and ``details["since"]``): a
    new one starts a new test. FAIL is final for a step (the always-valid p-value
    never goes back up). A provider that cannot count is INCONCLUSIVE like any
    gate's (an error when it could not answer); counts that go down within a
    step (a source that lost count) are an error and leave the test as it was.
    At 100% (``details["not_applicable"]``) there is no live baseline: PASS as
    not applicable, with the reason saying so (the plan requires another gate
    that judges new alone, and at 100% that one decides)."""

    def _new_test(self) -> CompareErrors:
        return CompareErrors(alpha=self.spec.alpha, tolerance=self.spec.tolerance,
                             min_requests=self.spec.min_requests)

    @property
    def _threshold(self) -> str:
        limit = "old's" if self.spec.tolerance == 0 else f"{1 + self.spec.tolerance:g}x old's"
        return f"always-valid p > {self.spec.alpha:g} (new's error rate <= {limit})"

    def __call__(self, outcome: Measurement | ProviderError, *, now: float) -> GateResult:
        spec, threshold = self.spec, self._threshold
        if isinstance(outcome, ProviderError):
            return _unanswered(spec, outcome, now, threshold)
        details = outcome.details
        if "not_applicable" in details:
            self._step = self._test = None
            return GateResult(spec.name, Verdict.PASS, None, threshold, 0,
                              f"not applicable: {details['not_applicable']}", now,
                              evidence={"not_applicable": True, "step": details.get("step")})
        test: CompareErrors = self._test_for(details)
        c = details.get("counts", {})
        try:
            v = test.update(c["old_requests"], c["old_errors"],
                                  c["new_requests"], c["new_errors"])
        except (KeyError, ValueError) as exc:
            return _inconclusive(spec, now, f"counts not usable: {exc}", threshold=threshold,
                                 samples=outcome.samples, error=True)
        evidence = {**v.as_dict(), "step": details.get("step"), "since": details.get("since"),
                    # an anytime-valid FAIL stands for the rest of the step (see decide's rule 3)
                    "final": v.outcome is Verdict.FAIL}
        return GateResult(spec.name, v.outcome, v.p_value, threshold, v.new_requests,
                          v.reason, now, evidence=evidence)


class CompareLatencyJudge(_StepJudge):
    """A ``compare_latency`` gate's judge: one :class:`CompareLatency` per step, fed
    one ``(old, new)`` pair of latency figures per check.

    A regression FAIL is final for the step (evidence ``final``: the engine rolls
    back at once); an SLO FAIL is a reading of the present and goes through the
    plan's ``failure_limit``. At 100% (``not_applicable``) there is no baseline:
    only the SLO judges new's figures; without an SLO the gate passes there as
    not applicable."""

    def _new_test(self) -> CompareLatency:
        return CompareLatency(alpha=self.spec.alpha, effect_size=self.spec.effect_size,
                              slo=self.spec.slo, min_intervals=self.spec.min_intervals)

    @property
    def _threshold(self) -> str:
        text = f"new <= {self.spec.effect_size:g}x old's latency (alpha {self.spec.alpha:g})"
        return text if self.spec.slo is None else f"{text}; new <= SLO {self.spec.slo:g}s"

    def __call__(self, outcome: Measurement | ProviderError, *, now: float) -> GateResult:
        spec, threshold = self.spec, self._threshold
        if isinstance(outcome, ProviderError):
            return _unanswered(spec, outcome, now, threshold)
        d = outcome.details
        test: CompareLatency = self._test_for(d)
        try:
            v = test.update(d.get("old"), d.get("new"))
        except ValueError as exc:
            return _inconclusive(spec, now, f"latency not usable: {exc}", threshold=threshold,
                                 error=True)
        evidence = {**v.as_dict(), "step": d.get("step"), "since": d.get("since"),
                    "final": v.regression}
        if "not_applicable" in d and v.outcome is not Verdict.FAIL and d.get("new") is None:
            return _inconclusive(spec, now, "no latency figure from new at 100%: no data "
                                 "never passes", threshold=threshold)
        if "not_applicable" in d and v.outcome is not Verdict.FAIL:
            evidence["not_applicable"] = True
            why = f"not applicable: {d['not_applicable']}"
            if spec.slo is not None and v.new_recent is not None:
                why += f" (new {v.new_recent:.3g}s within SLO {spec.slo:g}s)"
            return GateResult(spec.name, Verdict.PASS, d.get("new"), threshold, None, why,
                              now, evidence=evidence)
        return GateResult(spec.name, v.outcome, v.new_median, threshold, v.intervals_new,
                          v.reason, now, evidence=evidence)


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
                      error=bool(d.get("error", False)), evidence=d.get("evidence"))
