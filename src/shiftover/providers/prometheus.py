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

Credentials in a URL (``http://user:pass@host``) are used for basic auth and
never appear in messages or details.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, model_validator

from shiftover.errors import NoData, ProviderError
from shiftover.providers.http import client, redact_url, scrub_userinfo
from shiftover.spec import (
    FiniteFloat,
    GateSpecBase,
    MinSamples,
    Timeout,
    Url,
    check_threshold,
    rule,
)
from shiftover.types import Measurement

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


def _number(raw: Any, query: str, where: str) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError, OverflowError):
        raise ProviderError(
            f"Prometheus at {where} returned {raw!r} for {query!r}, which is not a number",
            hint="this looks like a proxy or a server that is not Prometheus: check the gate's url",
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
            f"Prometheus at {where} returned {raw!r} as the evaluation time of {query!r}, not a timestamp",
            hint="this looks like a proxy or a server that is not Prometheus: check the gate's url",
        )
    return ts


def _instant_query(api: _Api, query: str, at: float | None = None) -> _Result:
    """Run ``query`` at Prometheus's own "now" (or at ``at``, a timestamp Prometheus
    gave); return its single number (NaN is returned, not raised)."""
    where = _endpoint(api.shown, "/api/v1/query")
    # timeout as float seconds: Prometheus refuses fractional durations like "0.5s"
    params = {"query": query, "timeout": f"{api.timeout:g}"}
    if at is not None:
        params["time"] = f"{at:.3f}"
    reply = api.get("/api/v1/query", params)
    status, body = reply.status, reply.body
    if isinstance(body, dict) and body.get("status") == "error":
        kind = body.get("errorType", "error")
        message = scrub_userinfo(str(body.get("error", "")), api.url)
        hint = (
            "fix the PromQL; try it in the Prometheus UI (Graph tab) first"
            if kind == "bad_data"
            else "Prometheus could not run the query: make it cheaper, or check Prometheus's health"
        )
        raise ProviderError(
            f"Prometheus at {where} rejected {query!r} ({kind}): {message}", hint=hint
        )
    if status != 200 or not isinstance(body, dict):
        raise ProviderError(
            f"Prometheus at {where} answered HTTP {status} to {query!r}, not a query result: {reply.text or '(empty body)'}",
            hint="check that the gate's url is Prometheus's base URL (e.g. http://host:9090, without /api/v1)",
        )
    data = body.get("data")
    if body.get("status") != "success" or not isinstance(data, dict):
        raise ProviderError(
            f"Prometheus at {where} sent an answer without data to {query!r}",
            hint="check that the gate's url is a Prometheus-compatible API",
        )
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
                f"query returned no series: {query!r} at {where}",
                hint="the metric may not exist yet (no traffic, target not scraped) or a label is misspelt",
            )
        if len(result) > 1:
            shown = "; ".join(
                _labels_text(s.get("metric", {})) for s in result[:5] if isinstance(s, dict)
            )
            more = f" and {len(result) - 5} more" if len(result) > 5 else ""
            raise ProviderError(
                f"query {query!r} at {where} returned {len(result)} series ({shown}{more}); a gate needs one number",
                hint="aggregate to one series, e.g. sum(...) or max(...), or add label matchers",
            )
        series = result[0]
        if (
            not isinstance(series, dict)
            or not isinstance(series.get("value"), list)
            or len(series["value"]) != 2
        ):
            raise ProviderError(
                f"Prometheus at {where} sent a malformed vector for {query!r}",
                hint="check that the gate's url is a Prometheus-compatible API",
            )
        labels = _labels_of(series.get("metric"))
        value = _number(series["value"][1], query, where)
        return _Result(value, labels, "vector", _timestamp(series["value"][0], query, where), warnings)
    if result_type == "matrix":
        raise ProviderError(
            f"query {query!r} returns a range vector, not a number",
            hint="wrap the range in a function, e.g. sum(rate(x[5m])) instead of x[5m]",
        )
    raise ProviderError(
        f"query {query!r} at {where} returned a {result_type!s}, not a number",
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
                f"query returned NaN (no traffic in the window?): {self.query!r}",
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


__all__ = ["PrometheusAlertsProvider", "PrometheusProvider"]
