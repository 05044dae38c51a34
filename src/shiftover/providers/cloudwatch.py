"""CloudWatch as a source of evidence: metric gates (GetMetricData) and alarm gates
(DescribeAlarms).

``cloudwatch``: one number over a window
-----------------------------------------
A gate names either one ``metric`` (optionally ``per`` a denominator metric) or a
metric-math ``expression`` over named ``metrics``. Every query asks CloudWatch for
ONE datapoint whose period is the whole ``window`` (``Period = window``, the window
ending at the next whole minute after our wall clock), so CloudWatch itself
computes the statistic over the window: an ``Average`` or a ``p99`` over 5 minutes
is the real one, not an average of per-minute figures.

**Why a ratio of sums.** ``metric: HTTPCode_Target_5XX_Count, per: RequestCount``
is sum(5xx over the window) / sum(requests over the window). The mean of
per-minute ratios would weigh a minute with 3 requests (1 failed: 33%) like a
minute with 3,000, and a minute without requests has no ratio at all. The sum of
``per`` is also the sample size, so ``min_samples: 200`` means 200 requests. Both
statistics must therefore be counts (``Sum`` or ``SampleCount``).

**ALB counts are absent when they are zero.** CloudWatch publishes the ALB's
``HTTPCode_Target_5XX_Count`` (and ELB/4XX/...) only for minutes in which it was
non-zero: a healthy target group has no 5xx datapoint at all. Read naively that
is "no data", and a healthy ALB could never pass. So a count (``Sum`` or
``SampleCount``) with no datapoint while the traffic metric (``per``, or
``samples``) counted requests is 0, and ``details["notes"]`` says so. No traffic
(no datapoint, or a sum of 0, for ``per``) is ``NoData``; so is no datapoint for
the value without a traffic metric to vouch for it: no data never passes.

Metric math is sent to AWS as written. CloudWatch leaves a datapoint out of
``m1 / m2`` when ``m1`` has none, so the same ALB fact applies: write
``FILL(errors, 0) / requests``. An expression without a result is ``NoData``
(with that hint). ``samples`` may name one of ``metrics`` by its id.

Clocks: the window ends at our wall clock, rounded *up* to the minute (CloudWatch
rounds times to its one-minute resolution; rounding up keeps the current partial
minute in the window). Request signing already requires the host's clock within
5 minutes of AWS's. ``Measurement.at`` is the engine's ``now``, as for every
provider.

``cloudwatch_alarms``: what CloudWatch already judges
------------------------------------------------------
Alarms named in ``alarm_names`` or starting with ``alarm_name_prefix``, metric and
composite alike (``AlarmTypes`` must name both: by default DescribeAlarms returns
metric alarms only), every page. ``ALARM`` fires (FAIL), ``INSUFFICIENT_DATA`` is
``details["no_data"]`` (INCONCLUSIVE), ``OK`` passes. A prefix that matches no
alarm, or listed names that do not exist, are a ``ProviderError``, not ``NoData``:
a gate that watches nothing is a configuration error that waiting will not fix,
and ``shiftover validate`` fails on errors while it accepts "no data yet".

``source: {type: cloudwatch}`` of a ``compare`` gate
-----------------------------------------------------
Each environment's requests and errors (an ALB's ``RequestCount`` and
``HTTPCode_Target_5XX_Count`` of its target group) summed since the step started,
in whole minutes: see :class:`CloudWatchCounts` for the minute the step started
in (left out) and late datapoints (counted as they arrive, so the counts lag).

Errors
------
Access denied, throttling that outlasts the gate's ``timeout``, an unreachable or
wrong endpoint, an answer that is not CloudWatch's: ``ProviderError`` (via
:func:`shiftover.aws.call`, which retries throttling with jittered backoff), with
the endpoint and a hint. After a failure the next check builds a fresh client
(credentials and endpoint variables read again).

What the local double (moto 5.2) does not do, and so what the tests cannot show:
it does not evaluate metric math (an expression that is just an id returns that
query's values, anything else no datapoints), it has no composite alarms
(PutCompositeAlarm is not implemented: the tests feed one through the client),
it never evaluates alarms (tests set their state), and it does not paginate.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from shiftover import aws
from shiftover.errors import NoData, ProviderError
from shiftover.providers.base import env_counts, whole_count
from shiftover.providers.http import redact_url, scrub_userinfo
from shiftover.spec import (
    Duration,
    FiniteFloat,
    GateSpecBase,
    MinSamples,
    SpecModel,
    Timeout,
    check_threshold,
    rule,
)
from shiftover.types import EnvCounts, Measurement

# CloudWatch's resolution for standard metrics: periods are whole minutes
RESOLUTION = 60
BASIC_STATS = ("Sum", "Average", "Minimum", "Maximum", "SampleCount")
COUNTS = frozenset({"Sum", "SampleCount"})  # statistics that add up over time
_STAT = re.compile(
    r"^(IQM|p(\d{1,2}(\.\d+)?|100)|(tm|wm|tc|ts)\d{1,2}(\.\d+)?|(TM|WM|TC|TS|PR)\(.+\))$"
)
_ID = re.compile(r"^[a-z][A-Za-z0-9_]*$")
_RESERVED = "shiftover_"  # our own query ids
ALARM_STATES = ("ALARM", "INSUFFICIENT_DATA", "OK")
_MAX_PAGES = 100  # 10,000 alarms; a longer walk is a broken endpoint
_ENDPOINT_HINT = (
    "check AWS_REGION (or region: in the gate) and any AWS_ENDPOINT_URL* variable: "
    "they must lead to CloudWatch (monitoring.<region>.amazonaws.com)"
)
# AWS understood the request and refused what the gate asks (a bad expression, id or stat)
_REFUSED_QUERY = frozenset({"ValidationError", "InvalidParameterValue",
                            "InvalidParameterCombination", "MissingParameter"})
# AWS/ApplicationELB's metrics as AWS spells them. CloudWatch names are case-sensitive
# and a name that matches nothing has no datapoints, which a count read beside its
# traffic takes as 0: a mis-cased HTTPCode_Target_5xx_Count would pass for ever.
ALB_NAMESPACE = "AWS/ApplicationELB"
ALB_METRICS = frozenset({
    "ActiveConnectionCount", "AnomalousHostCount", "ClientTLSNegotiationErrorCount",
    "ConsumedLCUs", "DesyncMitigationMode_NonCompliant_Request_Count",
    "DroppedInvalidHeaderRequestCount", "ELBAuthError", "ELBAuthFailure", "ELBAuthLatency",
    "ELBAuthRefreshTokenSuccess", "ELBAuthSuccess", "ELBAuthUserClaimsSizeExceeded",
    "ForwardedInvalidHeaderRequestCount", "GrpcRequestCount", "HealthyHostCount",
    "HealthyStateDNS", "HealthyStateRouting", "HTTP_Fixed_Response_Count", "HTTP_Redirect_Count",
    "HTTP_Redirect_Url_Limit_Exceeded_Count", "HTTPCode_ELB_3XX_Count", "HTTPCode_ELB_4XX_Count",
    "HTTPCode_ELB_5XX_Count", "HTTPCode_ELB_500_Count", "HTTPCode_ELB_502_Count",
    "HTTPCode_ELB_503_Count", "HTTPCode_ELB_504_Count", "HTTPCode_Target_2XX_Count",
    "HTTPCode_Target_3XX_Count", "HTTPCode_Target_4XX_Count", "HTTPCode_Target_5XX_Count",
    "IPv6ProcessedBytes", "IPv6RequestCount", "LambdaInternalError", "LambdaTargetProcessedBytes",
    "LambdaUserError", "MitigatedHostCount", "NewConnectionCount", "NonStickyRequestCount",
    "ProcessedBytes", "RejectedConnectionCount", "RequestCount", "RequestCountPerTarget",
    "RuleEvaluations", "TargetConnectionErrorCount", "TargetResponseTime",
    "TargetTLSNegotiationErrorCount", "UnHealthyHostCount", "UnhealthyRoutingRequestCount",
    "UnhealthyStateDNS", "UnhealthyStateRouting",
})
_ALB_BY_LOWER = {name.lower(): name for name in ALB_METRICS}
_QUERY_HINT = ("CloudWatch refused the gate's query: fix what AWS's message names (expression, "
               "metric ids, statistic, dimensions, alarm names)")


class CloudWatchMetric(SpecModel):
    """One CloudWatch metric and the statistic taken of it over the window. In
    ``per`` and ``samples``, a missing ``namespace`` or ``dimensions`` is the
    ``metric``'s."""

    namespace: str | None = Field(default=None, min_length=1, description="e.g. AWS/ApplicationELB")
    name: str = Field(min_length=1, description="e.g. HTTPCode_Target_5XX_Count")
    dimensions: dict[str, str] | None = Field(
        default=None, description="e.g. {TargetGroup: targetgroup/eks-web/73e2d6bc24d8a067}"
    )
    stat: str = Field(default="Sum", description="Sum, Average, Minimum, Maximum, SampleCount, p99, ...")

    @field_validator("stat")
    @classmethod
    def _known_stat(cls, value: str) -> str:
        for known in BASIC_STATS:
            if value.lower() == known.lower():
                return known
        if not _STAT.match(value):
            raise rule(
                f"{value!r} is not a CloudWatch statistic: use Sum, Average, Minimum, Maximum, "
                "SampleCount, or a percentile such as p99"
            )
        return value

    @field_validator("dimensions")
    @classmethod
    def _few_dimensions(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and len(value) > 30:
            raise rule(f"{len(value)} dimensions: a CloudWatch metric has at most 30")
        if value is not None and any(not k or not v for k, v in value.items()):
            raise rule("dimension names and values cannot be empty")
        return value

    def text(self) -> str:
        dims = ",".join(f"{k}={v}" for k, v in sorted((self.dimensions or {}).items()))
        return f"{self.namespace} {self.name} {self.stat}" + (f" {{{dims}}}" if dims else "")

    def query(self, query_id: str, period: int, *, return_data: bool = True) -> dict[str, Any]:
        return {
            "Id": query_id,
            "ReturnData": return_data,
            "MetricStat": {
                "Metric": {
                    "Namespace": self.namespace,
                    "MetricName": self.name,
                    "Dimensions": [
                        {"Name": k, "Value": v} for k, v in sorted((self.dimensions or {}).items())
                    ],
                },
                "Period": period,
                "Stat": self.stat,
            },
        }


_REGION = "default: the environment's (AWS_REGION / AWS_DEFAULT_REGION, AWS_PROFILE's)"
_PROFILE = "default: AWS_PROFILE, or the standard credential chain"
_TIMEOUT = "per request; retries after throttling stop at it too"


def _check_alb_spelling(m: CloudWatchMetric, at: tuple[str | int, ...], consequence: str) -> None:
    """An ALB metric name spelt with other capitals than AWS's (see ALB_METRICS)."""
    right = _ALB_BY_LOWER.get(m.name.lower()) if m.namespace == ALB_NAMESPACE else None
    if right is not None and right != m.name:
        raise rule(
            f"{ALB_NAMESPACE} has no metric {m.name!r}: CloudWatch names are case-sensitive, "
            f"write {right} (a name that matches nothing has no datapoints, and an absent "
            f"count beside counted requests reads as 0: {consequence})",
            at,
        )


class CloudWatchGate(GateSpecBase):
    """A number from CloudWatch over the last ``window``: one ``metric`` (optionally
    ``per`` a denominator, as a ratio of sums), or a metric-math ``expression`` over
    ``metrics``. ``samples`` (a metric, or an id of ``metrics``) counts the sample
    size when ``per`` does not."""

    type: Literal["cloudwatch"]
    metric: CloudWatchMetric | None = None
    per: CloudWatchMetric | None = Field(
        default=None, description="denominator: the value is sum(metric) / sum(per) over the window"
    )
    expression: str | None = Field(
        default=None, min_length=1, description="CloudWatch metric math over `metrics`, e.g. FILL(errors, 0) / requests"
    )
    metrics: dict[str, CloudWatchMetric] = Field(default_factory=dict)
    samples: CloudWatchMetric | str | None = Field(
        default=None, description="the sample size: a metric (Sum over the window), or an id of `metrics`"
    )
    window: Duration = Field(default=300.0, description="whole minutes, e.g. 5m")
    max: FiniteFloat | None = None
    min: FiniteFloat | None = None
    min_samples: MinSamples = 0
    region: str | None = Field(default=None, min_length=1, description=_REGION)
    profile: str | None = Field(default=None, min_length=1, description=_PROFILE)
    timeout: Timeout = Field(default=10.0, description=_TIMEOUT)

    @model_validator(mode="after")
    def _coherent(self) -> CloudWatchGate:
        self._check_source()
        self._check_spelling()
        if self.window < RESOLUTION or self.window % RESOLUTION:
            raise rule(
                f"window {self.window:g}s is not a whole number of minutes: CloudWatch periods "
                "are whole minutes (write e.g. 5m)",
                ("window",),
            )
        check_threshold(self)
        counted = self.metrics.get(self.samples) if isinstance(self.samples, str) else self.samples
        if counted is not None and counted.stat not in COUNTS:
            raise rule(
                f"the sample size is a count: its statistic must be Sum or SampleCount, not {counted.stat}",
                ("samples", "stat") if isinstance(self.samples, CloudWatchMetric) else ("samples",),
            )
        if self.min_samples and self.per is None and self.samples is None:
            raise rule(
                f"min_samples {self.min_samples} needs `per` or `samples` to count the samples: "
                "without one this gate could never pass",
                ("min_samples",),
            )
        return self

    def _check_source(self) -> None:
        if self.metric is None and self.expression is None:
            raise rule(
                "a cloudwatch gate needs `metric` (one metric, optionally `per` a denominator) "
                "or `expression` (metric math over `metrics`)",
                ("metric",),
            )
        if self.metric is not None and self.expression is not None:
            raise rule(
                "set `metric` or `expression`, not both (a ratio of two metrics: `metric` and `per`)",
                ("expression",),
            )
        if self.metric is not None:
            if self.metric.namespace is None:
                raise rule("the metric needs a namespace, e.g. AWS/ApplicationELB", ("metric", "namespace"))
            if self.metrics:
                raise rule("`metrics` go with `expression`; with `metric`, use `per`", ("metrics",))
            if isinstance(self.samples, str):
                raise rule(
                    "`samples` names a metric id only with `expression`; here write a metric, "
                    "e.g. samples: {name: RequestCount}",
                    ("samples",),
                )
            if self.per is not None:
                if self.samples is not None:
                    raise rule(
                        "with `per`, the sample size is sum(per) already: remove `samples`",
                        ("samples",),
                    )
                for where, m in (("metric", self.metric), ("per", self.per)):
                    if m.stat not in COUNTS:
                        raise rule(
                            f"`per` makes a ratio of sums, so both statistics must be counts "
                            f"(Sum or SampleCount), not {m.stat}",
                            (where, "stat"),
                        )
            return
        # expression
        if self.per is not None:
            raise rule(
                "`per` goes with `metric`; with `expression`, write the division in it",
                ("per",),
            )
        if not self.metrics:
            raise rule(
                "an expression needs `metrics`: the metrics it names, by id, e.g. "
                "metrics: {errors: {...}, requests: {...}}",
                ("metrics",),
            )
        for mid, m in self.metrics.items():
            if not _ID.match(mid) or mid.startswith(_RESERVED):
                raise rule(
                    f"metric id {mid!r}: CloudWatch ids start with a lowercase letter and hold "
                    f"letters, digits and _ (and shiftover keeps ids starting {_RESERVED})",
                    ("metrics", mid),
                )
            if m.namespace is None:
                raise rule("this metric needs a namespace, e.g. AWS/ApplicationELB", ("metrics", mid, "namespace"))
        if isinstance(self.samples, str) and self.samples not in self.metrics:
            raise rule(
                f"samples {self.samples!r} is not one of the metrics ({', '.join(sorted(self.metrics))})",
                ("samples",),
            )
        if isinstance(self.samples, CloudWatchMetric) and self.samples.namespace is None:
            raise rule("the samples metric needs a namespace (there is no `metric` to take it from)",
                       ("samples", "namespace"))

    def _check_spelling(self) -> None:
        """An ALB metric name spelt with other capitals than AWS's (see ALB_METRICS)."""
        named: list[tuple[tuple[str, ...], CloudWatchMetric]] = []
        if self.metric is not None:
            named.append((("metric", "name"), self.metric))
        if self.per is not None:
            named.append((("per", "name"), self.inherit(self.per)))
        if isinstance(self.samples, CloudWatchMetric):
            named.append((("samples", "name"), self.inherit(self.samples)))
        named += [(("metrics", mid, "name"), m) for mid, m in self.metrics.items()]
        for at, m in named:
            _check_alb_spelling(m, at, "this gate would pass for ever")

    def inherit(self, m: CloudWatchMetric) -> CloudWatchMetric:
        """``m`` with the namespace and dimensions of ``metric`` where it has none."""
        if self.metric is None:
            return m
        return m.model_copy(update={
            "namespace": m.namespace or self.metric.namespace,
            "dimensions": self.metric.dimensions if m.dimensions is None else m.dimensions,
        })


class CloudWatchAlarmsGate(GateSpecBase):
    """FAIL while any of the alarms is in ALARM; INCONCLUSIVE while any has
    INSUFFICIENT_DATA; PASS when all are OK. Metric and composite alarms."""

    JUDGE: ClassVar[str] = "alerts"

    type: Literal["cloudwatch_alarms"]
    alarm_names: list[str] | None = Field(default=None, description="these alarms, each must exist")
    alarm_name_prefix: str | None = Field(
        default=None, min_length=1, description="every alarm whose name starts with this"
    )
    region: str | None = Field(default=None, min_length=1, description=_REGION)
    profile: str | None = Field(default=None, min_length=1, description=_PROFILE)
    timeout: Timeout = Field(default=10.0, description=_TIMEOUT)

    @model_validator(mode="after")
    def _one_selector(self) -> CloudWatchAlarmsGate:
        if self.alarm_names is None and self.alarm_name_prefix is None:
            raise rule(
                "a cloudwatch_alarms gate needs alarm_names (a list) or alarm_name_prefix",
                ("alarm_names",),
            )
        if self.alarm_names is not None and self.alarm_name_prefix is not None:
            raise rule(
                "set alarm_names or alarm_name_prefix, not both (DescribeAlarms takes one)",
                ("alarm_name_prefix",),
            )
        if self.alarm_name_prefix is not None and not self.alarm_name_prefix.strip():
            raise rule("alarm_name_prefix is blank: write the start of the alarms' names, e.g. "
                       "accounting-", ("alarm_name_prefix",))
        if self.alarm_names is not None:
            if not self.alarm_names:
                raise rule("alarm_names is empty: a gate that watches nothing never passes",
                           ("alarm_names",))
            for i, name in enumerate(self.alarm_names):
                if not name.strip():
                    raise rule("an alarm name cannot be empty", ("alarm_names", i))
        return self


# --- talking to CloudWatch -------------------------------------------------------


class CloudWatchApi:
    """A cached boto3 CloudWatch client; each call through :func:`shiftover.aws.call`.
    Any failure drops the client, so the next check builds a fresh one."""

    def __init__(self, region: str | None, profile: str | None, timeout: float) -> None:
        self.region = region
        self.profile = profile
        self.timeout = timeout
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                self._client = aws.client("cloudwatch", region=self.region, profile=self.profile,
                                          timeout=self.timeout, error=ProviderError)
            except ProviderError as exc:
                raise ProviderError(exc.message, hint=exc.hint or _ENDPOINT_HINT) from None
        return self._client

    def region_name(self) -> str | None:
        meta = getattr(self._client, "meta", None)
        return self.region or getattr(meta, "region_name", None)

    @property
    def endpoint(self) -> str | None:
        endpoint = getattr(getattr(self._client, "meta", None), "endpoint_url", None)
        return str(endpoint) if endpoint else None

    @property
    def where(self) -> str:
        endpoint = self.endpoint
        return f"CloudWatch at {redact_url(endpoint)}" if endpoint else "CloudWatch"

    def scrub(self, text: str) -> str:
        """``text`` without the password of an endpoint URL (AWS_ENDPOINT_URL=
        https://user:password@proxy/...): botocore quotes the URL it could not reach."""
        endpoint = self.endpoint
        return scrub_userinfo(text, endpoint) if endpoint else text

    def call(self, operation: str, action: str, deadline: float, **kwargs: Any) -> dict[str, Any]:
        method = getattr(self.client, operation)
        where = self.where
        last: list[BaseException] = []

        def attempt(**kw: Any) -> Any:
            try:
                return method(**kw)
            except Exception as exc:
                last.append(exc)
                raise

        try:
            reply = aws.call(attempt, f"{action} on {where}", error=ProviderError,
                             deadline=deadline, **kwargs)
        except ProviderError as exc:
            message = self.scrub(exc.message)
            self._client = None
            code = aws.error_code(last[-1]) if last else None
            hint = _QUERY_HINT if code in _REFUSED_QUERY else exc.hint or _ENDPOINT_HINT
            raise ProviderError(message, hint=hint) from None
        except Exception as exc:  # botocore's parsers fail on answers that are not AWS's
            self._client = None
            raise ProviderError(
                f"{action} on {where}: an answer botocore cannot read ({type(exc).__name__})",
                hint=_ENDPOINT_HINT,
            ) from None
        if not isinstance(reply, dict):  # pragma: no cover - botocore always returns a dict
            self._client = None
            raise ProviderError(f"{action} on {where}: not an AWS answer", hint=_ENDPOINT_HINT)
        return reply

    def malformed(self, action: str, what: str) -> ProviderError:
        self._client = None
        return ProviderError(f"{action} on {self.where}: {what}", hint=_ENDPOINT_HINT)


def _iso(moment: Any) -> str | None:
    if isinstance(moment, datetime):
        return moment.isoformat()
    return None if moment is None else str(moment)


def fetch_metric_data(api: CloudWatchApi, queries: list[dict[str, Any]], start: datetime,
                      end: datetime, deadline: float) -> dict[str, list[float]]:
    """Values by query id from GetMetricData, every page; a query not answered is an error."""
    wanted = [q["Id"] for q in queries if q.get("ReturnData", True)]
    values: dict[str, list[float]] = {}
    token: str | None = None
    for _ in range(_MAX_PAGES):
        kwargs: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end}
        if token:
            kwargs["NextToken"] = token
        reply = api.call("get_metric_data", "GetMetricData", deadline, **kwargs)
        page = reply.get("MetricDataResults")
        if not isinstance(page, list):
            raise api.malformed("GetMetricData", "the answer has no MetricDataResults")
        for result in page:
            _take(api, result, values)
        next_token = reply.get("NextToken")
        if not next_token:
            break
        if next_token == token:
            raise api.malformed("GetMetricData", "the same NextToken twice")
        token = str(next_token)
    else:
        raise api.malformed("GetMetricData", f"more than {_MAX_PAGES} pages")
    missing = [q for q in wanted if q not in values]
    if missing:
        raise api.malformed("GetMetricData", f"no result for the queries {', '.join(missing)}")
    return values


def _take(api: CloudWatchApi, result: Any, values: dict[str, list[float]]) -> None:
    if not isinstance(result, dict) or not isinstance(result.get("Id"), str):
        raise api.malformed("GetMetricData", f"a result without an Id: {result!r:.200}")
    qid = result["Id"]
    status = result.get("StatusCode")
    if status in ("Forbidden", "InternalError"):
        messages = "; ".join(
            str(m.get("Value") or m.get("Code")) for m in result.get("Messages") or []
            if isinstance(m, dict)
        )
        raise ProviderError(
            f"GetMetricData on {api.where}: query {qid} answered {status}"
            + (f" ({messages})" if messages else ""),
            hint="grant cloudwatch:GetMetricData on the metrics' account (README, IAM)"
            if status == "Forbidden" else "CloudWatch failed internally: the next check retries",
        )
    raw = result.get("Values", [])
    if not isinstance(raw, list):
        raise api.malformed("GetMetricData", f"query {qid}: Values is not a list")
    got = values.setdefault(qid, [])
    for v in raw:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise api.malformed("GetMetricData", f"query {qid}: {v!r} is not a number")
        got.append(float(v))


# --- the metric gate -----------------------------------------------------------


def window_bounds(wall: float, window: float) -> tuple[datetime, datetime]:
    """[start, end) of the last ``window`` seconds, end rounded up to the minute."""
    end = math.ceil(wall / RESOLUTION) * RESOLUTION
    start = end - int(window)
    return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)


class CloudWatchProvider:
    """Measures a :class:`CloudWatchGate` with one GetMetricData request (see the
    module docstring for what each answer becomes)."""

    Spec: ClassVar[type[CloudWatchGate]] = CloudWatchGate
    VALUE, PER, SAMPLES = "shiftover_value", "shiftover_per", "shiftover_samples"

    def __init__(self, spec: CloudWatchGate, *, clock: Callable[[], float] = time.time) -> None:
        self.spec = spec
        self.api = CloudWatchApi(spec.region, spec.profile, spec.timeout)
        self.clock = clock  # the wall clock the window ends at (AWS's, within signing skew)
        self.metric = spec.metric
        self.per = spec.inherit(spec.per) if spec.per is not None else None
        self.samples = spec.inherit(spec.samples) if isinstance(spec.samples, CloudWatchMetric) else None

    @classmethod
    def from_spec(cls, spec: CloudWatchGate) -> CloudWatchProvider:
        return cls(spec)

    def describe(self) -> str:
        what = self.metric.text() if self.metric is not None else str(self.spec.expression)
        if self.per is not None:
            what += f" per {self.per.name}"
        return f"cloudwatch {what} over {self.spec.window:g}s"

    def queries(self) -> list[dict[str, Any]]:
        period = int(self.spec.window)
        if self.metric is not None:
            out = [self.metric.query(self.VALUE, period)]
            if self.per is not None:
                out.append(self.per.query(self.PER, period))
        else:
            assert self.spec.expression is not None
            out = [m.query(mid, period, return_data=mid == self.spec.samples)
                   for mid, m in sorted(self.spec.metrics.items())]
            out.append({"Id": self.VALUE, "Expression": self.spec.expression, "ReturnData": True})
        if self.samples is not None:
            out.append(self.samples.query(self.SAMPLES, period))
        return out

    def measure(self, *, now: float) -> Measurement:
        deadline = time.monotonic() + self.spec.timeout
        start, end = window_bounds(self.clock(), self.spec.window)
        results = self._fetch(start, end, deadline)
        details: dict[str, Any] = {
            "source": "cloudwatch",
            "region": self.api.region_name(),
            "window": {"start": start.isoformat(), "end": end.isoformat()},
            "datapoints": {k: len(v) for k, v in sorted(results.items())},
            "notes": [],
        }
        value = self._combine(self.VALUE, results)
        if self.per is not None:
            return self._ratio(value, self._combine(self.PER, results), now, details)
        samples_id = self.spec.samples if isinstance(self.spec.samples, str) else self.SAMPLES
        count = self._combine(samples_id, results) if self.spec.samples is not None else None
        samples = None if self.spec.samples is None else _count(count)
        if count is not None:
            details["samples"] = count
        if value is None:
            if self.metric is not None and self.metric.stat in COUNTS and samples:
                details["notes"].append(
                    f"{self.metric.name} had no datapoint while {samples} samples were counted: "
                    "CloudWatch publishes counts such as ALB 5xx only when non-zero, so it is 0"
                )
                value = 0.0
            else:
                raise self._no_value(samples)
        details["value"] = value
        return Measurement(value=float(value), at=now, samples=samples, details=details)

    def _ratio(self, num: float | None, den: float | None, now: float,
               details: dict[str, Any]) -> Measurement:
        assert self.metric is not None and self.per is not None
        if not den:
            got = "no datapoint" if den is None else "a sum of 0"
            raise NoData(
                f"no traffic: {self.per.text()} has {got} between {details['window']['start']} "
                f"and {details['window']['end']} (nothing to divide {self.metric.name} by)",
                hint="wait for traffic on the new environment, or check the metrics' dimensions",
            )
        if den < 0:
            raise ProviderError(f"{self.per.text()} summed to {den:g}, a negative count",
                                hint="`per` must be a count of requests, e.g. RequestCount with stat Sum")
        if num is None:
            details["notes"].append(
                f"{self.metric.name} had no datapoint while {self.per.name} counted {den:g}: "
                "CloudWatch publishes counts such as ALB 5xx only when non-zero, so it is 0"
            )
            num = 0.0
        details.update(numerator=num, denominator=den)
        return Measurement(value=num / den, at=now, samples=_count(den), details=details)

    def _no_value(self, samples: int | None) -> NoData:
        if self.metric is None:
            return NoData(
                f"the expression {self.spec.expression!r} has no datapoint in the window",
                hint="CloudWatch leaves out a datapoint when a metric in the expression has none "
                "(ALB counts are not published when 0): wrap such metrics in FILL(id, 0)",
            )
        why = "" if samples is None else f" ({samples} samples counted)"
        return NoData(
            f"{self.metric.text()} has no datapoint in the last {self.spec.window:g}s{why}",
            hint="wait for traffic, or check the namespace, name and every dimension "
            "(aws cloudwatch list-metrics --namespace ... --metric-name ...)",
        )

    def _fetch(self, start: datetime, end: datetime, deadline: float) -> dict[str, list[float]]:
        return fetch_metric_data(self.api, self.queries(), start, end, deadline)

    def _stat_of(self, qid: str) -> str | None:
        if qid == self.VALUE:
            return self.metric.stat if self.metric is not None else None
        if qid == self.PER:
            return self.per.stat if self.per is not None else None
        if qid == self.SAMPLES:
            return self.samples.stat if self.samples is not None else None
        m = self.spec.metrics.get(qid)
        return m.stat if m is not None else None

    def _combine(self, qid: str, results: dict[str, list[float]]) -> float | None:
        """One number from a query's datapoints (one, when CloudWatch buckets the
        window as asked); None when there is none."""
        got = results.get(qid, [])
        if not got:
            return None
        stat = self._stat_of(qid)
        if stat in COUNTS:
            return math.fsum(got)
        if stat == "Minimum":
            return min(got)
        if stat == "Maximum":
            return max(got)
        if len(got) == 1:
            return got[0]
        raise ProviderError(
            f"GetMetricData on {self.api.where}: {len(got)} datapoints for query {qid}, "
            f"asked for one period spanning the {self.spec.window:g}s window "
            f"({stat or 'an expression'}: several values cannot be combined into one)",
            hint="report this to shiftover; meanwhile a Sum, Minimum or Maximum statistic works",
        )


def _count(x: float | None) -> int:
    return 0 if x is None or x <= 0 else round(x)


# --- the alarms gate -------------------------------------------------------------


class CloudWatchAlarmsProvider:
    """Reads the states of a :class:`CloudWatchAlarmsGate`'s alarms (DescribeAlarms)."""

    Spec: ClassVar[type[CloudWatchAlarmsGate]] = CloudWatchAlarmsGate

    def __init__(self, spec: CloudWatchAlarmsGate) -> None:
        self.spec = spec
        self.api = CloudWatchApi(spec.region, spec.profile, spec.timeout)

    @classmethod
    def from_spec(cls, spec: CloudWatchAlarmsGate) -> CloudWatchAlarmsProvider:
        return cls(spec)

    def describe(self) -> str:
        if self.spec.alarm_names is not None:
            return f"cloudwatch alarms {', '.join(self.spec.alarm_names)}"
        return f"cloudwatch alarms {self.spec.alarm_name_prefix}*"

    def _pages(self, deadline: float, **selector: Any) -> Iterator[dict[str, Any]]:
        token: str | None = None
        for _ in range(_MAX_PAGES):
            kwargs: dict[str, Any] = {
                "AlarmTypes": ["MetricAlarm", "CompositeAlarm"], "MaxRecords": 100, **selector}
            if token:
                kwargs["NextToken"] = token
            reply = self.api.call("describe_alarms", "DescribeAlarms", deadline, **kwargs)
            for key, kind in (("MetricAlarms", "metric"), ("CompositeAlarms", "composite")):
                listed = reply.get(key, [])
                if not isinstance(listed, list):
                    raise self.api.malformed("DescribeAlarms", f"{key} is not a list")
                for alarm in listed:
                    if not isinstance(alarm, dict) or not isinstance(alarm.get("AlarmName"), str) \
                            or alarm.get("StateValue") not in ALARM_STATES:
                        raise self.api.malformed(
                            "DescribeAlarms", f"an alarm without a name or a known state: {alarm!r:.200}")
                    yield {**alarm, "_kind": kind}
            next_token = reply.get("NextToken")
            if not next_token:
                return
            if next_token == token:
                raise self.api.malformed("DescribeAlarms", "the same NextToken twice")
            token = str(next_token)
        raise self.api.malformed("DescribeAlarms", f"more than {_MAX_PAGES} pages of alarms")

    def _alarms(self, deadline: float) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        names = self.spec.alarm_names
        if names is None:
            prefix = self.spec.alarm_name_prefix
            for alarm in self._pages(deadline, AlarmNamePrefix=prefix):
                found[alarm["AlarmName"]] = alarm
            if not found:
                raise ProviderError(
                    f"no alarms match prefix {prefix!r} on {self.api.where} "
                    f"(region {self.api.region_name()}): a gate that watches nothing cannot pass",
                    hint=f"check the prefix and region: aws cloudwatch describe-alarms "
                    f"--alarm-name-prefix '{prefix}' --alarm-types MetricAlarm CompositeAlarm",
                )
            return found
        unique = list(dict.fromkeys(names))
        for i in range(0, len(unique), 100):  # AlarmNames takes at most 100
            for alarm in self._pages(deadline, AlarmNames=unique[i:i + 100]):
                if alarm["AlarmName"] in unique:
                    found[alarm["AlarmName"]] = alarm
        missing = [n for n in unique if n not in found]
        if missing:
            raise ProviderError(
                f"no such alarm{'s' if len(missing) > 1 else ''} on {self.api.where} "
                f"(region {self.api.region_name()}): {', '.join(missing)}",
                hint="check the names (they are case-sensitive) and the region: aws cloudwatch "
                "describe-alarms --alarm-types MetricAlarm CompositeAlarm --query "
                "'[MetricAlarms,CompositeAlarms][].AlarmName'",
            )
        return found

    def measure(self, *, now: float) -> Measurement:
        deadline = time.monotonic() + self.spec.timeout
        alarms = self._alarms(deadline)
        firing: list[dict[str, Any]] = []
        no_data: list[str] = []
        ok = 0
        for name, alarm in sorted(alarms.items()):
            state = alarm["StateValue"]
            if state == "ALARM":
                entry: dict[str, Any] = {
                    "alertname": name,
                    "kind": alarm["_kind"],
                    "reason": alarm.get("StateReason"),
                    "since": _iso(alarm.get("StateUpdatedTimestamp")),
                }
                if alarm.get("MetricName"):
                    entry["metric"] = f"{alarm.get('Namespace')} {alarm['MetricName']}"
                firing.append(entry)
            elif state == "INSUFFICIENT_DATA":
                no_data.append(name)
            else:
                ok += 1
        selector = ({"alarm_names": list(self.spec.alarm_names)} if self.spec.alarm_names is not None
                    else {"alarm_name_prefix": self.spec.alarm_name_prefix})
        return Measurement(
            value=float(len(firing)),
            at=now,
            samples=len(alarms),
            details={"source": "cloudwatch", "region": self.api.region_name(), **selector,
                     "firing": firing, "no_data": no_data, "ok": ok},
        )


# --- a compare gate's counts ---------------------------------------------------------


def count_span(since: float, now: float, period: int = RESOLUTION) -> tuple[int, int]:
    """``[start, end)`` in epoch seconds, whole periods: ``since`` rounded *up* (the
    period the step started in also holds the step before's traffic) and ``now``
    rounded up (the current period's datapoints so far count)."""
    return (math.ceil(since / period) * period, math.ceil(now / period) * period)


class CloudWatchEnvMetrics(SpecModel):
    """One environment's requests and errors. ``errors`` takes the namespace and the
    dimensions of ``requests`` where it has none."""

    requests: CloudWatchMetric = Field(description=(
        "its requests, e.g. {namespace: AWS/ApplicationELB, name: RequestCount, "
        "dimensions: {LoadBalancer: app/web/50dc6c495c0c9188, TargetGroup: targetgroup/eks-web/73e2d6bc24d8a067}}"))
    errors: CloudWatchMetric = Field(description=(
        "its failed requests, a subset of `requests`, e.g. {name: HTTPCode_Target_5XX_Count}"))

    def errors_metric(self) -> CloudWatchMetric:
        return self.errors.model_copy(update={
            "namespace": self.errors.namespace or self.requests.namespace,
            "dimensions": self.requests.dimensions if self.errors.dimensions is None
            else self.errors.dimensions,
        })


class CloudWatchCountsSpec(SpecModel):
    """A ``compare`` gate's counts from CloudWatch: for each environment, the sums of
    a requests metric and an errors metric (Sum statistic, one-minute periods) since
    the step started, e.g. an ALB's ``RequestCount`` and ``HTTPCode_Target_5XX_Count``
    of the old and the new target group."""

    type: Literal["cloudwatch"]
    old: CloudWatchEnvMetrics
    new: CloudWatchEnvMetrics
    region: str | None = Field(default=None, min_length=1, description=_REGION)
    profile: str | None = Field(default=None, min_length=1, description=_PROFILE)
    timeout: Timeout = Field(default=10.0, description=_TIMEOUT)

    @model_validator(mode="after")
    def _counts(self) -> CloudWatchCountsSpec:
        for env in ("old", "new"):
            metrics: CloudWatchEnvMetrics = getattr(self, env)
            if metrics.requests.namespace is None:
                raise rule("the requests metric needs a namespace, e.g. AWS/ApplicationELB",
                           (env, "requests", "namespace"))
            for what, m in (("requests", metrics.requests), ("errors", metrics.errors_metric())):
                if m.stat != "Sum":
                    raise rule(f"counts are sums over the step: the statistic must be Sum, not "
                               f"{m.stat} (leave stat out)", (env, what, "stat"))
                _check_alb_spelling(m, (env, what, "name"),
                                    "the errors of this environment would read 0 for ever"
                                    if what == "errors" else "it would count nothing")
            if metrics.errors_metric() == metrics.requests:
                raise rule(f"{env}'s errors and requests are the same metric: errors must count "
                           "the failed requests only, e.g. HTTPCode_Target_5XX_Count beside "
                           "RequestCount", (env, "errors"))
        if self.old.requests == self.new.requests:
            raise rule("old and new count the same requests metric: a comparison needs each "
                       "environment's own (its target group's dimensions)", ("new", "requests"))
        return self


_ENVS = ("old", "new")


class CloudWatchCounts:
    """Requests and errors of each environment from CloudWatch (the
    :class:`~shiftover.providers.base.CountSource` of ``compare`` gates).

    ``counts(since, now)`` is one GetMetricData request: the ``Sum`` of each of the
    four metrics per 60 s period over ``[start, end)``, whole periods
    (:func:`count_span`), added up. ``since`` and ``now`` are the engine's clock,
    epoch seconds (the wall clock in a run; CloudWatch's timestamps are too).

    What CloudWatch's minute granularity and late data mean here:

    - The minute the step started in is not counted: it also holds the traffic
      of the step before (another split). So the step's first whole minute is the
      first one counted; up to 60 s of the step's start are never counted.
    - The minute in progress is counted as far as CloudWatch has it: an ALB
      publishes a minute's counts about a minute after it ends, and CloudWatch
      takes late datapoints (a custom metric's can arrive long after). So the
      counts trail the traffic by one to a few minutes, and a check may see a
      minute's requests before its errors: counts only ever grow as late points
      arrive (never down), so the comparison's evidence lags, it is not lost. A
      sequential test that is checked again as the points arrive is not misled
      by that: it reads more evidence, later.
    - A marked start (``since == now``), or a span within one minute, has no whole
      period: all zeros. CloudWatch is asked all the same (the minute before, its
      values unused), so a source that cannot work fails from the first check.

    A requests metric without any datapoint in the span is ``NoData`` (no traffic
    yet, or dimensions that match nothing: CloudWatch cannot tell them apart). An
    errors metric without a datapoint while its requests were counted is 0 errors
    (an ALB publishes its 5xx counts only when they are not 0). Sums that are not
    whole numbers (not counts), and more errors than requests, are
    ``ProviderError``: the errors metric must count a subset of the requests
    metric's requests.
    """

    Spec: ClassVar[type[CloudWatchCountsSpec]] = CloudWatchCountsSpec
    PERIOD: ClassVar[int] = RESOLUTION

    def __init__(self, spec: CloudWatchCountsSpec) -> None:
        self.spec = spec
        self.api = CloudWatchApi(spec.region, spec.profile, spec.timeout)
        self.metrics: dict[str, CloudWatchMetric] = {}
        for env in _ENVS:
            m: CloudWatchEnvMetrics = getattr(spec, env)
            self.metrics[f"{env}_requests"] = m.requests
            self.metrics[f"{env}_errors"] = m.errors_metric()

    @classmethod
    def from_spec(cls, spec: CloudWatchCountsSpec) -> CloudWatchCounts:
        return cls(spec)

    def describe(self) -> str:
        return ("cloudwatch sums: " + "; ".join(
            f"{env} {self.metrics[env + '_errors'].name} of {self.metrics[env + '_requests'].text()}"
            for env in _ENVS))

    def queries(self) -> list[dict[str, Any]]:
        return [m.query(qid, self.PERIOD) for qid, m in self.metrics.items()]

    def counts(self, *, since: float, now: float) -> EnvCounts:
        deadline = time.monotonic() + self.spec.timeout
        start, end = count_span(since, now, self.PERIOD)
        if end <= start:  # no whole period yet: ask anyway, so that errors show at once
            fetch_metric_data(self.api, self.queries(), _utc(start - self.PERIOD), _utc(start),
                              deadline)
            return EnvCounts(0, 0, 0, 0)
        results = fetch_metric_data(self.api, self.queries(), _utc(start), _utc(end), deadline)
        span = f"between {_utc(start).isoformat()} and {_utc(end).isoformat()}"
        silent = [self.metrics[f"{env}_requests"].text() for env in _ENVS
                  if not results.get(f"{env}_requests")]
        if silent:
            raise NoData(
                f"no datapoint {span} for {' nor '.join(silent)}: no requests counted yet",
                hint="CloudWatch publishes an ALB's counts about a minute after the minute ends; "
                     "if it lasts, check the namespace, name and every dimension (aws cloudwatch "
                     "list-metrics --namespace ... --metric-name ...)",
            )
        sums: dict[str, int] = {}
        for qid, m in self.metrics.items():
            sums[qid] = whole_count(
                math.fsum(results.get(qid, [])), f"{m.text()} {span}",
                "both metrics of an environment must be counts (a Count metric such as "
                "RequestCount or HTTPCode_Target_5XX_Count, statistic Sum), not rates or averages")
        return env_counts(
            sums, span=span,
            name=lambda q: (self.metrics[q].name if q.endswith("_errors")
                            else self.metrics[q].text()),
            hint="the errors metric must count a subset of the requests metric's requests: "
                 "the same load balancer and target group (dimensions) for both, e.g. "
                 "HTTPCode_Target_5XX_Count beside RequestCount")


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


__all__ = [
    "CloudWatchAlarmsGate",
    "CloudWatchAlarmsProvider",
    "CloudWatchCounts",
    "CloudWatchCountsSpec",
    "CloudWatchEnvMetrics",
    "CloudWatchGate",
    "CloudWatchMetric",
    "CloudWatchProvider",
    "count_span",
    "window_bounds",
]
