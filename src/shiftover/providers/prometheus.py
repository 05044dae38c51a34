"""Prometheus as a source of evidence: instant PromQL queries and firing alerts.

``PrometheusProvider`` runs one instant query (``GET /api/v1/query``) and
expects one number back. What a cutover gate meets in practice, and what this
module makes of it:

==========================  ===================================================
Prometheus answers           provider returns
==========================  ===================================================
scalar, or one series        ``Measurement(value=...)``; ``+Inf`` is a value
empty vector                 ``NoData`` (the metric is absent: no traffic yet,
                             a typo in a label, a target not scraped)
``NaN``                      ``NoData`` (0/0: a ratio over a window with no
                             requests; not a pass, not a failure)
several series               ``ProviderError``: the query must aggregate
                             (``sum``/``max``) so one threshold applies
a range vector or a string   ``ProviderError``: the query must yield a number
``status: error``            ``ProviderError`` quoting Prometheus's message
HTTP error / refused / slow  ``ProviderError`` saying where and what to check
==========================  ===================================================

Flagger treats an empty result and NaN the same way ("no values found"); here
both are ``NoData`` too, because the engine's rule is that no data never passes.
Everything that means the gate cannot work as written (unreachable, a parse
error, several series, a wrong shape) is a ``ProviderError``, never ``NoData``:
``shiftover validate`` fails on those and accepts "no data yet".

Whose clock: the query carries no ``time=``, so Prometheus evaluates it at its
own "now", the instant its scrapes are stamped with. Sending our clock instead
judged the past when it was behind (10 s of skew: a ``[1m]`` window missed the
last 10 s, the failure, and passed) and an empty future when it was ahead. The
evaluation timestamp Prometheus returns is in ``details["evaluated_at"]``, and
``details["clock_skew_seconds"]`` is our ``now`` minus it (positive: our clock
is ahead; it includes the request's round trip), so a journal shows both. The
``samples_query`` is evaluated at that same timestamp, so the value and its
sample count describe one instant. ``Measurement.at`` stays the engine's
``now``: the journal orders events by one clock.

``PrometheusAlertsProvider`` counts firing alerts whose labels include all of
the gate's ``labels``. The ``url`` may point at Prometheus *or* Alertmanager;
the provider finds out on first use and remembers:

1. ``GET {url}/api/v1/alerts``: Prometheus answers ``{"data": {"alerts": [...]}}``
   with each alert's ``state`` (``pending``/``firing``); only ``firing`` counts.
2. Otherwise ``GET {url}/api/v2/alerts?active=true&silenced=false&inhibited=false``
   with one ``filter`` matcher per label: Alertmanager answers a list. Every
   alert it returns is firing (resolved ones are not listed); silenced and
   inhibited ones are left out on purpose: an operator who silenced an alert
   has said it is not part of the normal state. (Alertmanager 0.25 still
   serves a deprecated ``/api/v1/alerts`` whose ``data`` is a list; that shape
   is what tells it apart from Prometheus.)

An alert entry without a ``labels`` object is a ``ProviderError``, not skipped:
a malformed list could be hiding the alert that fires. An empty list is a
measurement (0 firing), not ``NoData``: "no alerts" is exactly what the gate
asks about.

``PrometheusLatency`` is the source of ``compare_latency`` gates' figures: one
instant query per environment (a ``histogram_quantile`` over about one plan
interval), under the instant queries' rules above, except that no traffic on
one side is that side's ``None``; see :class:`PrometheusLatencySpec`.

``PrometheusCounts`` is the source of ``compare`` gates' counts: each
environment's requests and errors over a step, exact, from the raw samples of
counter series (not ``increase()``, which extrapolates to non-integers); see
:class:`PrometheusCountsSpec` for what to select and :func:`counter_increase`
for the arithmetic of resets.

Credentials in a URL (``http://user:pass@host``) are used for basic auth and
never appear in messages or details.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, field_validator, model_validator

from shiftover.errors import NoData, ProviderError
from shiftover.providers.http import client, redact_url, scrub_userinfo
from shiftover.spec import (
    FiniteFloat,
    GateSpecBase,
    MinSamples,
    SpecModel,
    Timeout,
    Url,
    check_threshold,
    rule,
)
from shiftover.types import EnvCounts, Measurement

_MAX_TEXT = 500


class PrometheusGate(GateSpecBase):
    """An instant PromQL query that returns a scalar or a single-series vector."""

    type: Literal["prometheus"]
    url: Url
    query: str = Field(min_length=1)
    max: FiniteFloat | None = None
    min: FiniteFloat | None = None
    samples_query: str | None = Field(
        default=None, description="optional PromQL giving the sample size (e.g. request count)"
    )
    min_samples: MinSamples = 0
    timeout: Timeout = 5.0

    @model_validator(mode="after")
    def _needs_threshold(self) -> PrometheusGate:
        check_threshold(self)
        if self.min_samples and not self.samples_query:
            raise rule(
                f"min_samples {self.min_samples} needs a samples_query to count the samples: "
                "without one this gate could never pass",
                ("min_samples",),
            )
        return self


class PrometheusAlertsGate(GateSpecBase):
    """FAIL while any alert matching all ``labels`` is firing."""

    JUDGE: ClassVar[str] = "alerts"

    type: Literal["prometheus_alerts"]
    url: Url
    labels: dict[str, str] = Field(default_factory=dict)
    timeout: Timeout = 5.0


def _shown(query: str, limit: int | None = None) -> str:
    """A query as messages quote it: one line (a multi-line query's newlines and
    indentation collapse to single spaces), cut at ``limit`` characters for the
    messages journalled at every check."""
    text = " ".join(query.split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return repr(text)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."


def _endpoint(base: str, path: str) -> str:
    return base.rstrip("/") + path


@dataclass(frozen=True)
class _Reply:
    status: int
    body: Any  # decoded JSON, or None when the body is not JSON
    text: str  # a short, scrubbed excerpt of a non-JSON body


class _Api:
    """GET JSON from one base URL; every transport failure becomes a ProviderError."""

    def __init__(
        self, url: str, timeout: float, transport: httpx.BaseTransport | None, what: str
    ) -> None:
        self.url = url
        self.shown = redact_url(url)
        self.timeout = timeout
        self.transport = transport
        self.what = what

    def get(self, path: str, params: Any) -> _Reply:
        where = _endpoint(self.shown, path)
        try:
            with client(self.timeout, self.transport) as http:
                response = http.get(_endpoint(self.url, path), params=params)
        except httpx.TimeoutException as exc:
            raise ProviderError(
                f"{self.what} at {where} did not answer within {self.timeout:g}s ({type(exc).__name__})",
                hint="check that it is up and not overloaded, or raise the gate's timeout",
            ) from None
        except httpx.HTTPError as exc:
            reason = scrub_userinfo(str(exc), self.url) or type(exc).__name__
            raise ProviderError(
                f"cannot reach {self.what} at {where}: {reason}",
                hint="check the gate's url (scheme, host, port) and that the server is running",
            ) from None
        except (httpx.InvalidURL, ValueError) as exc:
            raise ProviderError(
                f"cannot request {where}: {scrub_userinfo(str(exc), self.url)}",
                hint="check the gate's url, e.g. http://127.0.0.1:9090",
            ) from None
        try:
            body: Any = response.json()
        except ValueError:
            return _Reply(
                response.status_code, None, _short(scrub_userinfo(response.text, self.url))
            )
        return _Reply(response.status_code, body, "")


# --- instant queries ---------------------------------------------------------


def _number(raw: Any, query: str, where: str, *,
            hint: str = "this looks like a proxy or a server that is not Prometheus: check the gate's url") -> float:
    try:
        return float(raw)
    except (TypeError, ValueError, OverflowError):
        raise ProviderError(
            f"Prometheus at {where} returned {raw!r} for {_shown(query)}, which is not a number", hint=hint,
        ) from None


@dataclass(frozen=True)
class _Result:
    value: float
    labels: dict[str, str]
    result_type: str
    evaluated_at: float  # Prometheus's timestamp of the evaluation
    warnings: tuple[str, ...] = ()


def _timestamp(raw: Any, query: str, where: str) -> float:
    try:
        ts = float(raw)
    except (TypeError, ValueError, OverflowError):
        ts = math.nan
    if not math.isfinite(ts):
        raise ProviderError(
            f"Prometheus at {where} returned {raw!r} as the evaluation time of {_shown(query)}, not a timestamp",
            hint="this looks like a proxy or a server that is not Prometheus: check the gate's url",
        )
    return ts


def _query_data(
    api: _Api, query: str, params: dict[str, str], *, bad_data_hint: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``GET /api/v1/query`` with ``params``: the answer's body and its ``data``, or a
    ProviderError saying what went wrong (a rejected query, an HTTP error, not
    Prometheus)."""
    where = _endpoint(api.shown, "/api/v1/query")
    reply = api.get("/api/v1/query", params)
    status, body = reply.status, reply.body
    if isinstance(body, dict) and body.get("status") == "error":
        kind = body.get("errorType", "error")
        message = scrub_userinfo(str(body.get("error", "")), api.url)
        hint = (
            (bad_data_hint or "fix the PromQL; try it in the Prometheus UI (Graph tab) first")
            if kind == "bad_data"
            else "Prometheus could not run the query: make it cheaper, or check Prometheus's health"
        )
        raise ProviderError(
            f"Prometheus at {where} rejected {_shown(query)} ({kind}): {message}", hint=hint
        )
    if status != 200 or not isinstance(body, dict):
        raise ProviderError(
            f"Prometheus at {where} answered HTTP {status} to {_shown(query)}, not a query result: {reply.text or '(empty body)'}",
            hint="check that the gate's url is Prometheus's base URL (e.g. http://host:9090, without /api/v1)",
        )
    data = body.get("data")
    if body.get("status") != "success" or not isinstance(data, dict):
        raise ProviderError(
            f"Prometheus at {where} sent an answer without data to {_shown(query)}",
            hint="check that the gate's url is a Prometheus-compatible API",
        )
    return body, data


def _instant_query(
    api: _Api, query: str, at: float | None = None, *, several_hint: str | None = None
) -> _Result:
    """Run ``query`` at Prometheus's own "now" (or at ``at``, a timestamp Prometheus
    gave); return its single number (NaN is returned, not raised)."""
    where = _endpoint(api.shown, "/api/v1/query")
    # timeout as float seconds: Prometheus refuses fractional durations like "0.5s"
    params = {"query": query, "timeout": f"{api.timeout:g}"}
    if at is not None:
        params["time"] = f"{at:.3f}"
    body, data = _query_data(api, query, params)
    raw_warnings = body.get("warnings")
    warnings = tuple(str(w) for w in raw_warnings) if isinstance(raw_warnings, list) else ()
    result_type = data.get("resultType")
    result = data.get("result")
    if result_type == "scalar" and isinstance(result, list) and len(result) == 2:
        return _Result(
            _number(result[1], query, where), {}, "scalar", _timestamp(result[0], query, where), warnings
        )
    if result_type == "vector" and isinstance(result, list):
        if not result:
            raise NoData(
                f"query returned no series: {_shown(query, 120)} at {where}",
                hint="the metric may not exist yet (no traffic, target not scraped) or a label is misspelt",
            )
        if len(result) > 1:
            shown = "; ".join(
                _labels_text(s.get("metric", {})) for s in result[:5] if isinstance(s, dict)
            )
            more = f" and {len(result) - 5} more" if len(result) > 5 else ""
            raise ProviderError(
                f"query {_shown(query)} at {where} returned {len(result)} series ({shown}{more}); a gate needs one number",
                hint=several_hint
                or "aggregate to one series, e.g. sum(...) or max(...), or add label matchers",
            )
        series = result[0]
        if (
            not isinstance(series, dict)
            or not isinstance(series.get("value"), list)
            or len(series["value"]) != 2
        ):
            raise ProviderError(
                f"Prometheus at {where} sent a malformed vector for {_shown(query)}",
                hint="check that the gate's url is a Prometheus-compatible API",
            )
        labels = _labels_of(series.get("metric"))
        value = _number(series["value"][1], query, where)
        return _Result(value, labels, "vector", _timestamp(series["value"][0], query, where), warnings)
    if result_type == "matrix":
        raise ProviderError(
            f"query {_shown(query)} returns a range vector, not a number",
            hint="wrap the range in a function, e.g. sum(rate(x[5m])) instead of x[5m]",
        )
    raise ProviderError(
        f"query {_shown(query)} at {where} returned a {result_type!s}, not a number",
        hint="a gate's query must return a scalar or a single-series vector",
    )


def _labels_of(metric: Any) -> dict[str, str]:
    if not isinstance(metric, dict):
        return {}
    return {str(k): str(v) for k, v in metric.items()}


def _labels_text(labels: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}={v!s}" for k, v in sorted(labels.items())) + "}"


@dataclass
class PrometheusProvider:
    """An instant PromQL query that yields one number (see the module docstring)."""

    Spec: ClassVar[type[PrometheusGate]] = PrometheusGate
    url: str
    query: str
    samples_query: str | None = None
    timeout: float = 5.0
    transport: httpx.BaseTransport | None = field(default=None, repr=False)

    @classmethod
    def from_spec(
        cls, spec: PrometheusGate, *, transport: httpx.BaseTransport | None = None
    ) -> PrometheusProvider:
        return cls(
            url=spec.url,
            query=spec.query,
            samples_query=spec.samples_query,
            timeout=spec.timeout,
            transport=transport,
        )

    def describe(self) -> str:
        return f"prometheus {redact_url(self.url)}: {self.query}"

    def measure(self, *, now: float) -> Measurement:
        api = _Api(self.url, self.timeout, self.transport, "Prometheus")
        main = _instant_query(api, self.query)  # at Prometheus's own now: see the docstring
        if math.isnan(main.value):
            raise NoData(
                f"query returned NaN (no traffic in the window?): {_shown(self.query, 120)}",
                hint="a ratio over a window without requests is 0/0; the gate stays inconclusive until traffic flows",
            )
        details: dict[str, Any] = {
            "query": self.query,
            "labels": main.labels,
            "result_type": main.result_type,
            "evaluated_at": main.evaluated_at,
            "clock_skew_seconds": round(now - main.evaluated_at, 3),
        }
        warnings = list(main.warnings)
        samples: int | None = None
        if self.samples_query:
            samples = self._samples(api, main.evaluated_at, details)
        if warnings:
            details["warnings"] = warnings
        return Measurement(value=main.value, at=now, samples=samples, details=details)

    def _samples(self, api: _Api, at: float, details: dict[str, Any]) -> int:
        assert self.samples_query is not None
        details["samples_query"] = self.samples_query
        try:
            result = _instant_query(api, self.samples_query, at)
        except NoData:
            details["samples_note"] = "samples_query returned no series: counted as 0"
            return 0
        if math.isnan(result.value):
            details["samples_note"] = "samples_query returned NaN: counted as 0"
            return 0
        if math.isinf(result.value) or result.value < 0:
            raise ProviderError(
                f"samples_query {self.samples_query!r} returned {result.value:g}; a sample count must be a finite number >= 0",
                hint="use a count, e.g. sum(increase(http_requests_total[5m]))",
            )
        # increase() extrapolates, so counts come back as 99.7: round to the nearest
        return round(result.value)


# --- alerts ------------------------------------------------------------------

Source = Literal["prometheus", "alertmanager"]


def _matcher(name: str, value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{name}="{escaped}"'


def _matches(labels: Mapping[str, Any], wanted: Mapping[str, str]) -> bool:
    return all(str(labels.get(k)) == v and k in labels for k, v in wanted.items())


@dataclass
class PrometheusAlertsProvider:
    """How many alerts matching ``labels`` are firing, from Prometheus or Alertmanager."""

    Spec: ClassVar[type[PrometheusAlertsGate]] = PrometheusAlertsGate
    url: str
    labels: dict[str, str]
    timeout: float = 5.0
    transport: httpx.BaseTransport | None = field(default=None, repr=False)
    source: Source | None = None  # found on first use unless given

    @classmethod
    def from_spec(
        cls, spec: PrometheusAlertsGate, *, transport: httpx.BaseTransport | None = None
    ) -> PrometheusAlertsProvider:
        return cls(
            url=spec.url, labels=dict(spec.labels), timeout=spec.timeout, transport=transport
        )

    def describe(self) -> str:
        return f"alerts {redact_url(self.url)} matching {_labels_text(self.labels)}"

    def measure(self, *, now: float) -> Measurement:
        api = _Api(self.url, self.timeout, self.transport, "Prometheus/Alertmanager")
        if self.source == "alertmanager":
            return self._from_alertmanager(api, now)
        if self.source == "prometheus":
            alerts = self._prometheus_alerts(api)
            if alerts is None:
                raise self._not_an_alerts_api(api, "/api/v1/alerts")
            return self._count_prometheus(api, alerts, now)
        alerts = self._prometheus_alerts(api)
        if alerts is not None:
            self.source = "prometheus"
            return self._count_prometheus(api, alerts, now)
        measurement = self._from_alertmanager(api, now)
        self.source = "alertmanager"
        return measurement

    def _prometheus_alerts(self, api: _Api) -> list[Any] | None:
        """Prometheus's alert list, or None when the URL does not look like Prometheus."""
        reply = api.get("/api/v1/alerts", None)
        body = reply.body
        if reply.status == 200 and isinstance(body, dict) and body.get("status") == "success":
            data = body.get("data")
            if isinstance(data, dict) and isinstance(data.get("alerts"), list):
                return list(data["alerts"])
        return None

    def _malformed(self, api: _Api, path: str, alert: Any) -> ProviderError:
        return ProviderError(
            f"{_endpoint(api.shown, path)} listed an alert without labels: {_short(repr(alert))}",
            hint="check that the gate's url is Prometheus (or Alertmanager) itself, not a proxy rewriting its answers",
        )

    def _count_prometheus(self, api: _Api, alerts: list[Any], now: float) -> Measurement:
        firing: list[dict[str, Any]] = []
        pending = 0
        for alert in alerts:
            # a malformed entry could be the firing alert: never skip it silently
            if not isinstance(alert, dict) or not isinstance(alert.get("labels"), dict):
                raise self._malformed(api, "/api/v1/alerts", alert)
            labels = _labels_of(alert.get("labels"))
            if not _matches(labels, self.labels):
                continue
            if alert.get("state") == "firing":
                firing.append(
                    {
                        "alertname": labels.get("alertname"),
                        "labels": labels,
                        "activeAt": alert.get("activeAt"),
                    }
                )
            elif alert.get("state") == "pending":
                pending += 1
        return Measurement(
            value=float(len(firing)),
            at=now,
            samples=len(alerts),
            details={
                "source": "prometheus",
                "labels": dict(self.labels),
                "firing": firing,
                "pending": pending,
            },
        )

    def _from_alertmanager(self, api: _Api, now: float) -> Measurement:
        params: list[tuple[str, str]] = [
            ("active", "true"),
            ("silenced", "false"),
            ("inhibited", "false"),
        ]
        params += [("filter", _matcher(k, v)) for k, v in sorted(self.labels.items())]
        reply = api.get("/api/v2/alerts", params)
        status, body = reply.status, reply.body
        if status == 400:
            raise ProviderError(
                f"Alertmanager at {_endpoint(api.shown, '/api/v2/alerts')} refused the label matchers "
                f"{_labels_text(self.labels)}: {reply.text or body!s}",
                hint="label names must be valid Prometheus label names ([a-zA-Z_][a-zA-Z0-9_]*)",
            )
        if status != 200 or not isinstance(body, list):
            raise self._not_an_alerts_api(api, "/api/v1/alerts and /api/v2/alerts", status)
        firing: list[dict[str, Any]] = []
        for alert in body:
            if not isinstance(alert, dict) or not isinstance(alert.get("labels"), dict):
                raise self._malformed(api, "/api/v2/alerts", alert)
            labels = _labels_of(alert.get("labels"))
            if _matches(labels, self.labels):  # the server filtered already; belt and braces
                firing.append(
                    {
                        "alertname": labels.get("alertname"),
                        "labels": labels,
                        "activeAt": alert.get("startsAt"),
                    }
                )
        return Measurement(
            value=float(len(firing)),
            at=now,
            samples=len(body),
            details={
                "source": "alertmanager",
                "labels": dict(self.labels),
                "firing": firing,
                "pending": 0,
            },
        )

    def _not_an_alerts_api(self, api: _Api, paths: str, status: int | None = None) -> ProviderError:
        got = f" (last answer: HTTP {status})" if status is not None else ""
        return ProviderError(
            f"{api.shown} answered neither as Prometheus nor as Alertmanager on {paths}{got}",
            hint="set the gate's url to the base URL of Prometheus (http://host:9090) or Alertmanager (http://host:9093)",
        )


# --- counts for compare gates --------------------------------------------------

# how far before a step's start a counter's last sample is looked for: Prometheus's
# own lookback (a series without a sample in 5 minutes is stale); also how far back
# each later query re-reads before the previous one (samples that became visible late)
COUNT_LOOKBACK = 300
# the longest gap between two checks one query covers (beyond: see PrometheusCounts)
COUNT_MAX_GAP = 3600
_COUNTER_HINT = (
    'use a counter selector such as http_requests_total{env="new"}, not rate()/sum()/increase() '
    "or a range: shiftover appends the range [Ns] and reads the counter's raw samples itself"
)
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NOT_PLAIN = re.compile(r"[()\[\]@]")


_SELECTOR = re.compile(r"^\s*([A-Za-z_:][A-Za-z0-9_:]*)?\s*(?:\{(.*)\})?\s*$", re.S)


def _matchers(selector: str) -> tuple[str | None, frozenset[str]] | None:
    """A plain selector's metric name and its label matchers (whitespace removed), or
    None when it does not parse as one."""
    m = _SELECTOR.match(selector)
    if m is None:
        return None
    name, body = m.group(1), m.group(2) or ""
    parts, depth, current = [], "", []
    for ch in body:  # split on commas outside quotes
        if depth:
            current.append(ch)
            if ch == depth:
                depth = ""
        elif ch in "\"'`":
            depth = ch
            current.append(ch)
        elif ch == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    cleaned = {re.sub(r"\s*(=~|!~|!=|=)\s*", r"\1", p.strip(), count=1)
               for p in parts if p.strip()}
    return name, frozenset(cleaned)


class PrometheusEnvSelectors(SpecModel):
    """One environment's counters: series selectors, each summed over its series."""

    requests: str = Field(min_length=1, description=(
        'a counter selector of the environment\'s requests, e.g. http_requests_total{env="new"}'))
    errors: str = Field(min_length=1, description=(
        "a counter selector of the failed ones, a subset of requests' series, e.g. "
        'http_requests_total{env="new",code=~"5.."}'))

    @field_validator("requests", "errors")
    @classmethod
    def _plain_selector(cls, value: str) -> str:
        if not _plain(value):
            raise rule(f"{value!r} is not a plain series selector: {_COUNTER_HINT}")
        return value

    @model_validator(mode="after")
    def _errors_refine_requests(self) -> PrometheusEnvSelectors:
        # the errors of a metric whose 5xx series do not exist yet read as 0: a typo in a
        # label of the errors selector would make new look perfect. With the same metric,
        # errors must keep every matcher of requests (and add its own).
        requests, errors = _matchers(self.requests), _matchers(self.errors)
        if requests is None or errors is None or requests[0] != errors[0]:
            return self
        missing = sorted(requests[1] - errors[1])
        if missing:
            raise rule(f"errors {self.errors!r} does not keep requests' matchers "
                       f"{', '.join(missing)}: the errors must be a subset of the requests' "
                       "series (add them, then the errors' own, e.g. code=~\"5..\")",
                       ("errors",))
        if requests[1] == errors[1]:
            raise rule(f"errors {self.errors!r} selects the same series as requests: add the "
                       'matcher of the failed ones, e.g. code=~"5.."', ("errors",))
        return self


class PrometheusCountsSpec(SpecModel):
    """A ``compare`` gate's counts from Prometheus counters: each environment's
    requests and errors, as selectors of raw counter series (no ``rate()``, no
    ``sum()``, no range: the source reads the samples and sums the series itself).

    ::

        source:
          type: prometheus
          url: http://prometheus:9090
          old:
            requests: 'http_requests_total{service="web",env="old"}'
            errors: 'http_requests_total{service="web",env="old",code=~"5.."}'
          new:
            requests: 'http_requests_total{service="web",env="new"}'
            errors: 'http_requests_total{service="web",env="new",code=~"5.."}'
          timeout: 5s

    Prometheus sees what the exporters count. Counted by the application, a new
    environment that is dead (refusing connections) or out of rotation serves
    nothing and counts nothing: it shows up as no requests on new, never as
    errors. Count what the *proxy* saw instead, so that refused and timed-out
    attempts are errors of new. With HAProxy's built-in exporter (one selector
    can name several metrics with ``__name__``; series without a ``code`` label
    match ``code=~"5xx|"``)::

          new:
            requests: '{__name__=~"haproxy_server_(http_responses|connection_errors|response_errors|retry_warnings|redispatch_warnings)_total",proxy="web",server="eks"}'
            errors: '{__name__=~"haproxy_server_(http_responses|connection_errors|response_errors|retry_warnings|redispatch_warnings)_total",proxy="web",server="eks",code=~"5xx|"}'

    (the same with ``server="ec2"`` for old): attempts and failed attempts, as the
    ``haproxy_stats`` gate counts them. A server HAProxy's health check took out
    gets no attempts at all, so even these count nothing for it: the
    ``haproxy_stats`` source counts that case, and the plan's other gate (which a
    ``compare`` gate always needs) judges it."""

    type: Literal["prometheus"]
    url: Url = Field(description="Prometheus's base URL; user:password@ in it is sent as basic auth")
    old: PrometheusEnvSelectors
    new: PrometheusEnvSelectors
    timeout: Timeout = 5.0

    @model_validator(mode="after")
    def _two_environments(self) -> PrometheusCountsSpec:
        if " ".join(self.old.requests.split()) == " ".join(self.new.requests.split()):
            raise rule(f"old and new both count requests with {self.old.requests!r}: a "
                       "comparison needs each environment's own series", ("new", "requests"))
        return self


def counter_increase(samples: Sequence[tuple[float, int]], since: float) -> int:
    """How much one counter series grew after ``since``, from its raw samples
    (time-ordered): the last sample at or before ``since`` is the baseline (none:
    the series was born later, a new pod, and counts from 0); every later sample
    adds its rise over the one before, and a drop is a reset, after which the
    counter counted its whole new value (Prometheus's own rule). Exact, unlike
    ``increase()``, which extrapolates to the window's edges."""
    counter = _Counter()
    counter.add(samples, since)
    return counter.total


def _plain(selector: str) -> bool:
    return not _NOT_PLAIN.search(_QUOTED.sub('""', selector))


@dataclass
class _Counter:
    """One counter series' state within a step: its last sample read (``at`` is
    -inf and ``value`` 0 before the first one: a series born during the step counts
    from 0) and its increase after ``since`` so far (:func:`counter_increase`'s rule,
    applied sample by sample: a check adds only the samples it had not read)."""

    at: float = -math.inf
    value: int = 0
    total: int = 0

    def add(self, samples: Sequence[tuple[float, int]], since: float) -> None:
        for at, value in samples:
            if at <= self.at:  # read by an earlier query (the ranges overlap)
                continue
            if at > since:
                self.total += value - self.value if value >= self.value else value
            self.at, self.value = at, value


# a series' identity within one selector: its label set
_SeriesKey = tuple[tuple[str, str], ...]


@dataclass
class PrometheusCounts:
    """Each environment's requests and errors over ``(since, now]`` from Prometheus
    counters (the :class:`~shiftover.providers.base.CountSource` of ``compare``
    gates; see :class:`PrometheusCountsSpec` for what to select).

    Every selector is read as ``selector[Ns]`` evaluated at ``now``: the raw
    samples of every matching series, which :func:`counter_increase`'s rule turns
    into exact counts with resets absorbed; the series are summed. The counting is
    incremental, so that a long step (an approval awaited overnight, a paused run)
    costs each check no more than a short one: the source keeps, per selector and
    per series (its label set), the last sample it read and the series' increase
    so far, and each check asks only for what is new.

    - The first check of a step (a new ``since``) reads ``now - since`` plus
      :data:`COUNT_LOOKBACK` seconds, whole: the samples before ``since`` are the
      baselines. That range is short: a ``compare`` gate marks a step's start with
      ``since == now`` (:class:`~shiftover.providers.compare.CompareProvider`).
    - Every later check reads the seconds since the previous check's ``now`` plus
      :data:`COUNT_LOOKBACK` (samples a slow scrape made visible late, or a
      Prometheus clock behind ours), skips each series' samples up to the last one
      already read, applies the reset rule from that sample on, and adds. The
      result is what one query over the whole step would give (the tests check it
      on scripted histories), and it never goes down: every check only adds.
    - A series that appears later counts from 0 (a new pod); one that vanishes
      keeps what it counted (a pod gone).
    - The gap covered is at most :data:`COUNT_MAX_GAP` seconds (plus the lookback).
      A longer one happens only when this process stalled for longer than that
      within a step (a restarted run starts the step over, with a new source):
      the samples before the capped range are then not read, so a reset or a
      series born and gone in the unread part is missed (the counts come out
      lower, never higher, and still never go down); each series' increase across
      the gap is still counted, from its last sample read to its first one after.
    - A check that fails (any query) changes nothing: the next one reads from the
      last check that succeeded.

    ``now`` and ``since`` are the engine's clock: a Prometheus clock off by a few
    seconds shifts the window of both environments alike (the newest samples are
    counted a little later, or a few seconds of the step before are counted too),
    which leaves the comparison fair. Each environment's errors are read before
    its requests, so a scrape that lands between the two queries can add
    requests, never errors without their requests. A reset that a scrape never saw
    (a counter restarted and back above its old value before the next scrape)
    cannot be told from the samples: keep the scrape interval well below the time
    that takes. Samples ingested out of order (a series' sample older than one
    already read, which Prometheus refuses unless out-of-order ingestion is on)
    are skipped.

    No series for an environment's requests in the step so far is ``NoData``
    (nothing served yet, or a label that matches nothing); no series for its
    errors is 0 (client libraries create the ``code="500"`` series at the first
    error)."""

    Spec: ClassVar[type[PrometheusCountsSpec]] = PrometheusCountsSpec
    url: str
    old: PrometheusEnvSelectors
    new: PrometheusEnvSelectors
    timeout: float = 5.0
    transport: httpx.BaseTransport | None = field(default=None, repr=False)
    # the step counted so far: its since, the previous check's now, and per
    # (environment, "requests"|"errors") the state of each series read
    _since: float | None = field(default=None, init=False, repr=False)
    _last_now: float | None = field(default=None, init=False, repr=False)
    _series: dict[tuple[str, str], dict[_SeriesKey, _Counter]] = field(
        default_factory=dict, init=False, repr=False)

    @classmethod
    def from_spec(
        cls, spec: PrometheusCountsSpec, *, transport: httpx.BaseTransport | None = None
    ) -> PrometheusCounts:
        return cls(url=spec.url, old=spec.old, new=spec.new, timeout=spec.timeout,
                   transport=transport)

    def describe(self) -> str:
        return (f"prometheus {redact_url(self.url)}: {self.old.requests} (old) vs "
                f"{self.new.requests} (new)")

    def _span(self, since: float, now: float) -> int:
        """The range, in whole seconds, of this check's queries (see the class doc)."""
        if self._since != since or self._last_now is None:  # a new step: from its start
            return math.ceil(max(now - since, 0.0)) + COUNT_LOOKBACK
        gap = min(max(now - self._last_now, 0.0), COUNT_MAX_GAP)
        return math.ceil(gap) + COUNT_LOOKBACK

    def counts(self, *, since: float, now: float) -> EnvCounts:
        envs = {"old": self.old, "new": self.new}  # plain selectors: the spec's rule
        api = _Api(self.url, self.timeout, self.transport, "Prometheus")
        span = self._span(since, now)
        read: dict[tuple[str, str], dict[_SeriesKey, list[tuple[float, int]]]] = {}
        for env, sel in envs.items():
            for what in ("errors", "requests"):
                read[env, what] = self._read(api, getattr(sel, what), now, span)
        # every query answered: only now does the step's state move on
        if self._since != since or self._last_now is None:
            self._series = {}
        self._since, self._last_now = since, now
        for key, samples_of in read.items():
            counters = self._series.setdefault(key, {})
            for labels, samples in samples_of.items():
                counters.setdefault(labels, _Counter()).add(samples, since)
        totals: dict[str, tuple[int, int]] = {}
        empty: list[str] = []
        for env, sel in envs.items():
            errors = sum(c.total for c in self._series[env, "errors"].values())
            requests = sum(c.total for c in self._series[env, "requests"].values())
            if not self._series[env, "requests"]:
                empty.append(sel.requests)
            elif errors > requests:
                raise ProviderError(
                    f"the {env} environment counted {errors} errors but only {requests} requests "
                    f"({sel.errors!r} against {sel.requests!r})",
                    hint="the errors selector must select a subset of the requests selector's "
                         "series (the same labels plus one for the failure, e.g. code=~\"5..\")")
            totals[env] = (requests, errors)
        if empty:  # only after every query ran: a broken selector is an error, not no data
            raise NoData(
                f"no series matches {' nor '.join(repr(s) for s in empty)} at {redact_url(self.url)}",
                hint="no requests counted yet (no traffic, target not scraped) or a label is misspelt")
        return EnvCounts(totals["old"][0], totals["old"][1], totals["new"][0], totals["new"][1])

    def _read(self, api: _Api, selector: str, now: float,
              span: int) -> dict[_SeriesKey, list[tuple[float, int]]]:
        """The samples of each series of ``selector[span s]`` at ``now``, by label set."""
        query = f"{selector}[{span}s]"
        where = _endpoint(api.shown, "/api/v1/query")
        params = {"query": query, "time": f"{now:.3f}", "timeout": f"{api.timeout:g}"}
        _, data = _query_data(api, query, params, bad_data_hint=_COUNTER_HINT
                              + "; try the selector alone in the Prometheus UI")
        result = data.get("result")
        if data.get("resultType") != "matrix" or not isinstance(result, list):
            raise ProviderError(
                f"Prometheus at {where} returned a {data.get('resultType')!s} for {_shown(query)}, "
                "not the samples of a range", hint=_COUNTER_HINT)
        out: dict[_SeriesKey, list[tuple[float, int]]] = {}
        for series in result:
            values = series.get("values") if isinstance(series, dict) else None
            if not isinstance(values, list):
                raise ProviderError(
                    f"Prometheus at {where} sent a series without samples for {_shown(query)}",
                    hint="select counters (float samples), not native histograms; check that "
                         "the url is a Prometheus-compatible API")
            labels = _labels_of(series.get("metric"))
            shown = _labels_text(labels)
            samples = [self._sample(point, selector, shown, where) for point in values]
            out.setdefault(tuple(sorted(labels.items())), []).extend(samples)
        return out

    @staticmethod
    def _sample(point: Any, selector: str, labels: str, where: str) -> tuple[float, int]:
        if not isinstance(point, list) or len(point) != 2:
            raise ProviderError(f"Prometheus at {where} sent a malformed sample for {selector!r}",
                                hint="check that the url is a Prometheus-compatible API")
        at = _timestamp(point[0], selector, where)
        value = _number(point[1], selector, where)
        if not math.isfinite(value) or value < 0 or value != math.floor(value):
            raise ProviderError(
                f"series {labels} of {selector!r} has the value {point[1]}, which is not a count "
                "of requests", hint=_COUNTER_HINT + "; a counter of requests only holds whole "
                "numbers (not _sum, not a gauge)")
        return at, int(value)


# --- latency for compare_latency gates ---------------------------------------------

_LATENCY_HINT = (
    "each query must give one latency in seconds, e.g. histogram_quantile(0.95, sum by (le) "
    '(rate(http_request_duration_seconds_bucket{env="new"}[15s])))'
)


class PrometheusLatencySpec(SpecModel):
    """A ``compare_latency`` gate's figures from Prometheus: one instant PromQL
    query per environment, each returning a scalar or exactly one series, in
    seconds (the rules of the ``prometheus`` gate's ``query``)::

        source:
          type: prometheus
          url: http://prometheus:9090
          old: 'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{env="old"}[15s])))'
          new: 'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{env="new"}[15s])))'
          timeout: 5s

    The range (``[15s]``) should be about one ``interval`` of the plan: each check
    then reads a figure of its own interval, and successive figures share as
    little as possible (the test assumes independent figures). Keep it at least a
    few scrape intervals long, or ``rate()`` has too few samples to work with.
    ``sum by (le)`` folds every pod's buckets into one histogram; a histogram in
    milliseconds needs ``/ 1000``. No traffic on one side in the range (no
    series, or ``NaN``: ``histogram_quantile`` of zero rates) is no figure for
    that side; a query that returns several series, a negative or infinite
    value (a quantile outside 0..1) is an error."""

    type: Literal["prometheus"]
    url: Url = Field(description="Prometheus's base URL; user:password@ in it is sent as basic auth")
    old: str = Field(min_length=1, description="PromQL giving the old environment's latency in seconds")
    new: str = Field(min_length=1, description="PromQL giving the new environment's latency in seconds")
    timeout: Timeout = 5.0

    @model_validator(mode="after")
    def _two_environments(self) -> PrometheusLatencySpec:
        if " ".join(self.old.split()) == " ".join(self.new.split()):
            raise rule(f"old and new both measure {self.old!r}: a comparison needs each "
                       "environment's own series", ("new",))
        return self


@dataclass
class PrometheusLatency:
    """Each environment's latency, in seconds, from one instant query each (the
    :class:`~shiftover.providers.compare_latency.LatencySource` of
    ``compare_latency`` gates; see :class:`PrometheusLatencySpec`).

    Whose clock: as ``PrometheusProvider``, the old query carries no ``time=``,
    so Prometheus evaluates it at its own "now", the instant its scrapes are
    stamped with; the new query is evaluated at the timestamp Prometheus gave the
    old one, so both figures cover the same range. The engine's ``now`` is not
    sent: a figure is a range that ends "now" (unlike the counts of a step, which
    start at a ``since`` of the engine's), and our clock running ahead of
    Prometheus's would reach into a future without samples (an empty ``[15s]``
    range read as no traffic), behind it would judge the past. When old has no
    figure (no timestamp to share), new is evaluated at Prometheus's now too."""

    Spec: ClassVar[type[PrometheusLatencySpec]] = PrometheusLatencySpec
    url: str = field(repr=False)  # may hold a password: describe() shows it redacted
    old: str
    new: str
    timeout: float = 5.0
    transport: httpx.BaseTransport | None = field(default=None, repr=False)

    @classmethod
    def from_spec(
        cls, spec: PrometheusLatencySpec, *, transport: httpx.BaseTransport | None = None
    ) -> PrometheusLatency:
        return cls(url=spec.url, old=spec.old, new=spec.new, timeout=spec.timeout,
                   transport=transport)

    def describe(self) -> str:
        return f"prometheus {redact_url(self.url)}: {self.old} (old) vs {self.new} (new)"

    def latency(self, *, now: float) -> tuple[float | None, float | None]:
        api = _Api(self.url, self.timeout, self.transport, "Prometheus")
        old, at = self._figure(api, "old", self.old, None)
        new, _ = self._figure(api, "new", self.new, at)
        if old is None and new is None:
            raise NoData(
                f"neither environment has a latency at {redact_url(self.url)}: {self.old!r} and "
                f"{self.new!r} returned no series or NaN",
                hint="no traffic in the queries' range yet (or a target not scraped, or a "
                     "misspelt label)")
        return old, new

    def _figure(self, api: _Api, env: str, query: str,
                at: float | None) -> tuple[float | None, float | None]:
        """The environment's latency (None: no series, or NaN) and the timestamp
        Prometheus evaluated it at (None when it returned no series)."""
        try:
            result = _instant_query(
                api, query, at,
                several_hint="aggregate the query to one series: histogram_quantile(0.95, "
                             "sum by (le) (rate(..._bucket{...}[15s]))) sums every pod's "
                             "buckets; or add label matchers")
        except NoData:
            return None, at
        if math.isnan(result.value):
            return None, result.evaluated_at
        if math.isinf(result.value) or result.value < 0:
            raise ProviderError(
                f"the {env} environment's latency query {_shown(query)} returned {result.value:g}; "
                "a latency must be a finite number of seconds >= 0",
                hint=_LATENCY_HINT + " (histogram_quantile returns +Inf/-Inf for a quantile "
                     "outside 0..1)")
        return result.value, result.evaluated_at


__all__ = ["PrometheusAlertsProvider", "PrometheusCounts", "PrometheusCountsSpec",
           "PrometheusLatency", "PrometheusLatencySpec", "PrometheusProvider",
           "counter_increase"]
