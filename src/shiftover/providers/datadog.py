"""Datadog as a source of evidence: metric queries and monitor states.

The migration this tool was built for watched Datadog: APM error ratios per
service and the team's monitors. Two gate types read it through the official
``datadog-api-client`` (imported inside functions: loading a plan imports every
backend module, and most plans never talk to Datadog).

``datadog`` (a threshold gate) runs one metrics query (``GET /api/v1/query``)
over the ``window`` ending at the engine's ``now`` and reduces the points of
the one series it returns to one number:

==============================  =================================================
Datadog answers                  provider returns
==============================  =================================================
one series                       ``Measurement(value=reduce(points))``
no series, or only null points   ``NoData`` (no traffic yet, a tag that matches
                                 nothing, a metric not yet arrived)
several series                   ``ProviderError``: the query must aggregate
                                 (``sum:...{...}`` without ``by {...}``)
400 / ``status: error``          ``ProviderError`` quoting Datadog's message
==============================  =================================================

``reduce`` is ``avg`` by default, the same "on average over the last 5
minutes" a Datadog monitor evaluates by default: it uses every point of the
window, so one noisy interval does not decide a step. ``last`` reads only the
newest point, which Datadog often shows partial (metrics arrive with a delay
of a minute or so); ``max`` catches a spike; ``sum`` adds counts
(``.as_count()``); ``min`` is for floors (throughput must not drop). The
reduction is over *time*, within one series: several series mean the query
did not say how to combine them, and guessing (max? sum?) could pass a
broken environment, so that is an error whose hint shows the aggregation.
``samples_query`` (e.g. ``sum:trace.rack.request.hits{...}.as_count()``) is
summed over the same window to give ``min_samples`` its count; a samples query
without series counts 0.

``datadog_monitors`` (an alerts gate) reads the monitors selected by ``tags``
(the monitors' own tags, Datadog's ``monitor_tags`` filter: every tag must be
on the monitor), ``names`` (exact names) and ``ids``. Names and ids are looked
up within the tags when both are given; every name and id must be found, and
tags alone must match at least one monitor: a gate that watches nothing is a
configuration error, never a pass. Each monitor's ``overall_state``:

- ``Alert``: firing (the gate FAILs).
- ``Warn``: firing when ``warn_fails`` (the default: a warning during a
  cutover is a reason to stop), else passing, listed in ``details["warn"]``.
- ``No Data``: no data (the gate holds, INCONCLUSIVE).
- ``Skipped``, ``Ignored``, ``Unknown``: also no data. Datadog did not
  evaluate the monitor, or cannot say; that is not "normal", and not a
  failure of the new environment either.
- ``OK``: passing.
- any other state: ``ProviderError`` (shiftover does not guess what it means).

A downtime silences a monitor's notifications, not its state: a muted monitor
in Alert still fails the gate. The gate watches the service, not the pager.

A ``compare`` gate's ``source: {type: datadog}`` sums, for each environment, the
points of a requests query and an errors query since the step started, per
whole minute (:class:`DatadogCounts`).

Credentials and endpoint come from the environment only, never from the plan:
``DD_API_KEY``, ``DD_APP_KEY`` (or ``DD_APPLICATION_KEY``), and ``DD_SITE``
(``datadoghq.com`` by default; ``datadoghq.eu``, ``us5.datadoghq.com``, ...).
``DD_HOST`` (or ``DATADOG_HOST``, the names Datadog's Terraform provider and
Pulumi use for the same thing) overrides the whole API base URL, e.g.
``https://api.datadoghq.eu`` or a local double ``http://127.0.0.1:8126``; it is
how the tests reach :class:`shiftover.demo.datadog.DatadogDouble`. The keys are
read at each measurement and held nowhere else: not in the provider (its repr),
the plan, the journal or any message. Error texts are built from status codes
and Datadog's ``errors`` list, never from the client's exception string (it
prints response headers and bodies), and every text is scrubbed of both keys.

Time: the gate's ``timeout`` bounds the whole measurement (both queries, a
403 diagnosis, a rate-limit wait): each request gets what is left of it, and
the client's own retries are off (urllib3 would otherwise retry a timed-out
read three times). 403 asks ``GET /api/v1/validate`` (API key only) to say
which key is wrong: the API key, or the application key (wrong, revoked, or
missing the ``timeseries_query`` / ``monitors_read`` permission).

Rate limits: Datadog answers 429 with ``X-RateLimit-Limit``, ``-Period``,
``-Remaining``, ``-Reset`` (seconds until the limit resets) and ``-Name``,
sometimes ``Retry-After``. The provider waits the longer of the two (at least
half a second: "resets in 0 s" must not become a burst of retries) and retries
once, only if that wait and a request still fit in the gate's timeout;
otherwise it raises a ``ProviderError`` saying when the limit resets. It never
sleeps past the timeout, so a rate limit holds the step (INCONCLUSIVE, an
error) instead of stalling the run loop, and a rollback never waits on it.
"""

from __future__ import annotations

import email.utils
import importlib
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from shiftover.errors import NoData, ProviderError
from shiftover.providers.base import env_counts, whole_count
from shiftover.providers.http import redact_url
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

Reduce = Literal["avg", "last", "sum", "max", "min"]
DEFAULT_SITE = "datadoghq.com"
_MAX_TEXT = 300
# a retry after a rate-limit wait needs at least this much of the timeout left
_RETRY_HEADROOM = 0.5
# below this, a request is not worth starting: the gate has timed out
_MIN_REQUEST = 0.05
# the least a 429 is waited for, whatever its headers say (X-RateLimit-Reset: 0)
_MIN_RATE_WAIT = 0.5
_STATES = ("OK", "Alert", "Warn", "No Data", "Skipped", "Ignored", "Unknown")
_KEYS_HINT = (
    "export DD_API_KEY=<API key> DD_APP_KEY=<application key> (and DD_SITE, e.g. datadoghq.eu, "
    "if the org is not on datadoghq.com); shiftover reads Datadog keys from the environment only"
)


# --- plan models -----------------------------------------------------------------------


def _tag_list(value: Any) -> Any:
    """``"service:accounting env:production"`` (or comma-separated) -> a list of tags."""
    if isinstance(value, str):
        return [t for t in value.replace(",", " ").split() if t]
    return value


def _check_tag(tag: str) -> str:
    if not tag or any(c.isspace() for c in tag) or "," in tag:
        raise rule(f"{tag!r} is not a Datadog tag: write key:value without spaces or commas, "
                   "e.g. service:accounting")
    return tag


_TAGS_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}],
    "description": "tags as a list, or one string separated by spaces or commas",
}
Tag = Annotated[str, BeforeValidator(lambda v: v.strip() if isinstance(v, str) else v),
                AfterValidator(_check_tag)]


class DatadogGate(GateSpecBase):
    """A Datadog metrics query over a window, reduced to one number held to min/max."""

    type: Literal["datadog"]
    query: str = Field(min_length=1, description="a Datadog metrics query returning one series, "
                       "e.g. sum:trace.rack.request.errors{service:web}.as_count() / "
                       "sum:trace.rack.request.hits{service:web}.as_count()")
    window: Annotated[Duration, Field(ge=1)] = Field(
        default=300.0, description="how far back from now the query looks (default 5m)")
    reduce: Reduce = Field(default="avg", description="how the window's points become one "
                           "value: avg (default), last, sum, max or min")
    max: FiniteFloat | None = None
    min: FiniteFloat | None = None
    samples_query: str | None = Field(
        default=None, min_length=1,
        description="optional query whose points, summed over the window, are the sample size")
    min_samples: MinSamples = 0
    timeout: Timeout = 10.0

    @field_validator("query", "samples_query")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise rule("the query is blank: write a Datadog metrics query, e.g. "
                       "sum:trace.rack.request.errors{service:web}.as_count()")
        return value

    @model_validator(mode="after")
    def _needs_threshold(self) -> DatadogGate:
        check_threshold(self)
        if self.min_samples and not self.samples_query:
            raise rule(
                f"min_samples {self.min_samples} needs a samples_query to count the samples "
                "(e.g. sum:trace.rack.request.hits{service:web}.as_count()): without one this "
                "gate could never pass",
                ("min_samples",),
            )
        return self


class DatadogMonitorsGate(GateSpecBase):
    """FAIL while a selected Datadog monitor is in Alert (or Warn, see ``warn_fails``)."""

    JUDGE: ClassVar[str] = "alerts"

    type: Literal["datadog_monitors"]
    tags: Annotated[list[Tag], BeforeValidator(_tag_list), WithJsonSchema(_TAGS_SCHEMA)] = Field(
        default_factory=list,
        description="monitor tags that must all be on a monitor, e.g. [service:accounting, env:production]")
    names: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="exact monitor names")
    ids: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list, description="monitor ids")
    warn_fails: bool = Field(default=True, description="a monitor in Warn fails the gate (default)"
                             " or passes (false)")
    timeout: Timeout = 10.0

    @model_validator(mode="after")
    def _selects_something(self) -> DatadogMonitorsGate:
        if not (self.tags or self.names or self.ids):
            raise ValueError("a datadog_monitors gate must select monitors: set tags, names or ids "
                             "(e.g. tags: [service:accounting, env:production])")
        return self


# --- credentials and endpoint ----------------------------------------------------------


def _keys() -> tuple[str, str]:
    api_key = os.environ.get("DD_API_KEY", "").strip()
    app_key = (os.environ.get("DD_APP_KEY") or os.environ.get("DD_APPLICATION_KEY") or "").strip()
    missing = [name for name, key in (("DD_API_KEY", api_key), ("DD_APP_KEY", app_key)) if not key]
    if missing:
        raise ProviderError(f"Datadog needs {' and '.join(missing)} in the environment, and "
                            f"{'it is' if len(missing) == 1 else 'they are'} not set",
                            hint=_KEYS_HINT)
    return api_key, app_key


def api_base_url() -> tuple[str, str]:
    """(the API's base URL, the setting it came from, e.g. ``DD_SITE=datadoghq.eu``), per
    ``DD_HOST`` / ``DATADOG_HOST`` / ``DD_SITE``."""
    for name in ("DD_HOST", "DATADOG_HOST"):
        host = os.environ.get(name, "").strip()
        if host:
            parts = urlsplit(host)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
                raise ProviderError(
                    f"{name}={redact_url(host)!r} is not the base URL of Datadog's API",
                    hint=f"set {name} to a URL with scheme and host and no path, e.g. "
                         "https://api.datadoghq.eu, or unset it and set DD_SITE instead")
            return host.rstrip("/"), f"{name}={redact_url(host)}"
    site = os.environ.get("DD_SITE", "").strip()
    setting = f"DD_SITE={site}" if site else f"DD_SITE (unset: {DEFAULT_SITE})"
    site = site or DEFAULT_SITE
    if "://" in site or "/" in site or any(c.isspace() for c in site) or site.startswith(("app.", "api.")):
        raise ProviderError(
            f"DD_SITE={site!r} is not a Datadog site",
            hint="DD_SITE is the site's domain as Datadog's docs list it: datadoghq.com, "
                 "us3.datadoghq.com, us5.datadoghq.com, datadoghq.eu, ap1.datadoghq.com, "
                 "ddog-gov.com (no scheme, no app./api. prefix)")
    return f"https://api.{site}", setting


# --- one measurement's session ----------------------------------------------------------


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."


def _sdk(module: str, name: str) -> Any:
    """``datadog_api_client.<module>.<name>``, imported on first use (see the docstring)."""
    try:
        return getattr(importlib.import_module(f"datadog_api_client.{module}"), name)
    except ImportError:
        raise ProviderError(
            "the Datadog gates need the datadog-api-client package, and it is not installed",
            hint="pip install datadog-api-client (it is one of shiftover's dependencies: "
                 "reinstall shiftover to get it)",
        ) from None


def _plain(value: Any) -> Any:
    """The client's models as plain JSON-like data."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


def _seconds(raw: str | None) -> float | None:
    """Seconds from a Retry-After (seconds or an HTTP date) or X-RateLimit-Reset value."""
    if raw is None:
        return None
    try:
        seconds = float(raw.strip())
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


@dataclass(frozen=True)
class _RateLimit:
    wait: float | None  # seconds until it resets, when Datadog said
    limit: str | None
    period: str | None
    name: str | None

    @classmethod
    def of(cls, headers: Mapping[str, str] | None) -> _RateLimit:
        waits = [w for w in (_seconds(_header(headers, "Retry-After")),
                             _seconds(_header(headers, "X-RateLimit-Reset"))) if w is not None]
        return cls(max(waits) if waits else None, _header(headers, "X-RateLimit-Limit"),
                   _header(headers, "X-RateLimit-Period"), _header(headers, "X-RateLimit-Name"))

    def text(self) -> str:
        if not (self.limit and self.period):
            return ""
        return f", limit {self.limit} requests per {self.period} s" + (
            f" for {self.name!r}" if self.name else "")


class _Session:
    """The API client for one measurement, its deadline, and the error wording."""

    def __init__(self, timeout: float, sleep: Callable[[float], None], permission: str) -> None:
        api_key, app_key = _keys()
        self.base, self.source = api_base_url()
        self.shown = redact_url(self.base)
        self.secrets = tuple(k for k in (api_key, app_key) if k)
        self.timeout = timeout
        self.sleep = sleep
        self.permission = permission
        self.deadline = time.monotonic() + timeout
        # retry_policy=False: no urllib3 retries behind our back (see the docstring)
        self.config = _sdk("configuration", "Configuration")(
            host=self.base, retry_policy=False,
            api_key={"apiKeyAuth": api_key, "appKeyAuth": app_key})
        self.client = _sdk("api_client", "ApiClient")(self.config)

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def short(self, text: str) -> str:
        """Scrubbed, then cut: cutting first could leave a key's prefix unmatched."""
        return _short(self.scrub(text))

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def call(self, what: str, fn: Callable[[Any], Any], *,
             not_found: tuple[str, str] | None = None) -> Any:
        """``fn(api_client)`` as plain data; every failure a ProviderError."""
        from datadog_api_client.exceptions import ApiException, OpenApiException
        from urllib3.exceptions import HTTPError as Urllib3Error
        from urllib3.exceptions import NewConnectionError
        from urllib3.exceptions import TimeoutError as Urllib3Timeout

        waited: float | None = None  # the one rate-limit wait, once it was taken
        while True:
            left = self.remaining()
            if left < _MIN_REQUEST:
                raise self._timed_out(what, waited)
            self.config.request_timeout = left
            try:
                return _plain(fn(self.client))
            except ApiException as exc:
                status = int(exc.status or 0)
                if status == 429:
                    limit = _RateLimit.of(exc.headers)
                    # "resets in 0 s" is still a wait: never a burst of retries
                    wait = max(limit.wait if limit.wait is not None else 1.0, _MIN_RATE_WAIT)
                    if waited is None and wait + _RETRY_HEADROOM <= self.remaining():
                        self.sleep(wait)
                        waited = wait
                        continue
                    raise self._rate_limited(what, limit, waited) from None
                if status == 404 and not_found is not None:
                    raise ProviderError(self.scrub(not_found[0]), hint=not_found[1]) from None
                raise self._http_error(what, status, exc) from None
            except Urllib3Timeout as exc:
                # urllib3 files a refused connection under timeouts too
                if not isinstance(exc, NewConnectionError):
                    raise self._timed_out(what, waited) from None
                raise self._unreachable(what, exc) from None
            except (Urllib3Error, OSError) as exc:
                raise self._unreachable(what, exc) from None
            except (OpenApiException, TypeError, ValueError, KeyError, AttributeError,
                    IndexError) as exc:
                raise self.malformed(what, f"{type(exc).__name__}: {exc}") from None

    def _unreachable(self, what: str, exc: BaseException) -> ProviderError:
        return ProviderError(
            f"cannot reach Datadog at {self.shown} for {what}: {self._reason(exc)}",
            hint=f"check the network, and {self.source}",
        )

    def _reason(self, exc: BaseException) -> str:
        from urllib3.exceptions import NewConnectionError, ProtocolError

        if isinstance(exc, ProtocolError) and len(exc.args) > 1:
            return f"the connection was closed without an answer ({type(exc.args[1]).__name__})"
        text = str(exc) or type(exc).__name__
        if isinstance(exc, NewConnectionError):  # "HTTPConnection(host=..., port=...): why"
            text = text.split("): ", 1)[-1]
        return self.short(text)

    def malformed(self, what: str, detail: str) -> ProviderError:
        return ProviderError(
            f"Datadog at {self.shown} answered {what} with a body that is not Datadog's "
            f"documented shape ({self.short(detail)})",
            hint=f"this looks like a proxy or a server that is not Datadog's API: check "
                 f"{self.source} (DD_HOST, when set, is the API's base URL, e.g. "
                 "https://api.datadoghq.eu)",
        )

    def _timed_out(self, what: str, waited: float | None) -> ProviderError:
        after = f" (after waiting {waited:g} s for a rate limit)" if waited is not None else ""
        return ProviderError(
            f"Datadog at {self.shown} did not answer {what} within the gate's timeout of "
            f"{self.timeout:g}s{after}",
            hint="Datadog may be slow or unreachable from here (check status.datadoghq.com and "
                 "the network); if it is only slow, raise the gate's timeout",
        )

    def _rate_limited(self, what: str, limit: _RateLimit, waited: float | None) -> ProviderError:
        resets = (f"the limit resets in {limit.wait:g} s" if limit.wait is not None
                  else "Datadog did not say when the limit resets")
        if waited is not None:
            head = f"Datadog at {self.shown} still rate-limited {what} after waiting {waited:g} s"
        else:
            head = (f"Datadog at {self.shown} rate-limited {what} (HTTP 429{limit.text()}): {resets}"
                    + (f", beyond this gate's timeout of {self.timeout:g}s" if limit.wait else ""))
        return ProviderError(
            head,
            hint="the gate is checked again at the next interval; if this repeats, check less often "
                 "(the plan's interval), or ask Datadog support to raise the limit (every tool using "
                 "the org's keys shares it)",
        )

    def _errors_text(self, exc: Any) -> str:
        body = getattr(exc, "body", None)
        if isinstance(body, dict) and isinstance(body.get("errors"), list):
            text = "; ".join(str(e) for e in body["errors"])
        elif isinstance(body, str | bytes):
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        else:
            text = ""
        return self.short(text) or str(getattr(exc, "reason", "") or "")

    def _http_error(self, what: str, status: int, exc: Any) -> ProviderError:
        errors = self._errors_text(exc)
        said = f": {errors}" if errors else ""
        if status in (401, 403):
            return self._forbidden(what, status)
        if status == 400:
            return ProviderError(
                f"Datadog at {self.shown} rejected {what} (HTTP 400){said}",
                hint="fix the gate's query or selection; try the query in Datadog's Metrics "
                     "Explorer or a notebook first",
            )
        if status == 0:  # the client's wording for a TLS failure
            return ProviderError(
                f"cannot reach Datadog at {self.shown} for {what}: TLS error",
                hint=f"check {self.source} and the machine's CA certificates",
            )
        if status == 404:
            return ProviderError(
                f"Datadog at {self.shown} answered HTTP 404 to {what}{said}",
                hint=f"check {self.source}: it must name Datadog's API (DD_SITE=datadoghq.eu, or "
                     "DD_HOST=https://api.datadoghq.eu, without /api)",
            )
        if status >= 500:
            return ProviderError(
                f"Datadog at {self.shown} failed to answer {what} (HTTP {status}){said}",
                hint="Datadog (or a proxy in front of it) is failing; check status.datadoghq.com. "
                     "The gate is checked again at the next interval",
            )
        return ProviderError(
            f"Datadog at {self.shown} answered HTTP {status} to {what}{said}",
            hint=f"check {self.source} and the gate's settings",
        )

    def _forbidden(self, what: str, status: int) -> ProviderError:
        """Which key Datadog refused: ask /api/v1/validate (API key only) if time allows."""
        from datadog_api_client.exceptions import ApiException

        api_key_valid: bool | None = None
        left = self.remaining()
        if left >= _MIN_REQUEST * 4:
            self.config.request_timeout = left
            try:
                validate = _sdk("v1.api.authentication_api", "AuthenticationApi")(self.client)
                answer = _plain(validate.validate())
                api_key_valid = bool(isinstance(answer, dict) and answer.get("valid"))
            except ApiException as exc:
                if exc.status in (401, 403):
                    api_key_valid = False
            except Exception:  # the diagnosis is a nicety: the 403 is the error
                api_key_valid = None
        where = f"Datadog at {self.shown} refused {what} (HTTP {status})"
        if api_key_valid is False:
            return ProviderError(
                f"{where}: the API key (DD_API_KEY) is not valid there",
                hint=f"check DD_API_KEY, and that its org is on this site ({self.source}): a key of "
                     "datadoghq.com is refused on datadoghq.eu",
            )
        if api_key_valid:
            return ProviderError(
                f"{where}: the API key is valid, so the application key (DD_APP_KEY) is wrong, "
                f"revoked, or lacks the {self.permission!r} permission",
                hint=f"create an application key in the same org (Organization Settings > "
                     f"Application Keys) with {self.permission} in its scopes, or unscoped",
            )
        return ProviderError(
            f"{where}: DD_API_KEY or DD_APP_KEY is wrong, or the application key lacks the "
            f"{self.permission!r} permission",
            hint=f"check both keys and their org's site ({self.source}); "
                 "curl -H 'DD-API-KEY: ...' https://api.<site>/api/v1/validate checks the API key",
        )


# --- metrics queries ------------------------------------------------------------------


def _reduce(how: Reduce, values: Sequence[float]) -> float:
    if how == "last":
        return values[-1]
    if how == "sum":
        return math.fsum(values)
    if how == "max":
        return max(values)
    if how == "min":
        return min(values)
    return math.fsum(values) / len(values)


@dataclass(frozen=True)
class _Series:
    values: tuple[float, ...]  # non-null points, oldest first
    points: int  # all points, nulls included
    scope: str
    expression: str
    interval: Any
    last_at: float | None  # seconds
    # (seconds, value) of the non-null points, oldest first
    stamped: tuple[tuple[float, float], ...] = ()


def _query(dd: _Session, query: str, start: int, end: int) -> list[_Series]:
    metrics = _sdk("v1.api.metrics_api", "MetricsApi")
    what = f"the metrics query {query!r}"
    body = dd.call(what, lambda c: metrics(c).query_metrics(_from=start, to=end, query=query))
    if not isinstance(body, dict):
        raise dd.malformed(what, f"a {type(body).__name__}, not an object")
    if body.get("status") == "error" or body.get("error"):
        raise ProviderError(
            f"Datadog at {dd.shown} could not run {what}: {dd.short(str(body.get('error') or ''))}",
            hint="fix the query; try it in Datadog's Metrics Explorer or a notebook first",
        )
    raw = body.get("series")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise dd.malformed(what, "series is not a list")
    out = []
    for s in raw:
        if not isinstance(s, dict) or not isinstance(s.get("pointlist", []), list):
            raise dd.malformed(what, "a series without a pointlist")
        values: list[float] = []
        stamped: list[tuple[float, float]] = []
        last_at: float | None = None
        pointlist = s.get("pointlist") or []
        for point in pointlist:
            if not isinstance(point, list | tuple) or len(point) < 2:
                raise dd.malformed(what, f"a point that is not [timestamp, value]: {point!r}")
            ts, value = point[0], point[1]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue  # a null point: no data in that interval
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or isinstance(ts, bool) or not isinstance(ts, int | float):
                raise dd.malformed(what, f"a point that is not numbers: {point!r}")
            values.append(float(value))
            last_at = float(ts) / 1000.0
            stamped.append((last_at, float(value)))
        out.append(_Series(tuple(values), len(pointlist), str(s.get("scope", "")),
                           str(s.get("expression", "")), s.get("interval"), last_at,
                           tuple(stamped)))
    return out


def _one_series(dd: _Session, query: str, series: list[_Series]) -> _Series:
    if len(series) > 1:
        shown = "; ".join(s.scope or s.expression or "?" for s in series[:5])
        more = f" and {len(series) - 5} more" if len(series) > 5 else ""
        raise ProviderError(
            f"Datadog query {query!r} returned {len(series)} series ({dd.scrub(shown)}{more}); "
            "a gate needs one",
            hint="aggregate them into one: drop the 'by {...}' grouping and let the space "
                 "aggregator combine them, e.g. sum:trace.rack.request.errors{service:web,env:prod}"
                 ".as_count() (reduce combines the points of one series over time, not series)",
        )
    return series[0]


@dataclass
class DatadogProvider:
    """One Datadog metrics query over a window, reduced to one number (see the module docstring)."""

    Spec: ClassVar[type[DatadogGate]] = DatadogGate
    query: str
    window: float = 300.0
    reduce: Reduce = "avg"
    samples_query: str | None = None
    timeout: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    @classmethod
    def from_spec(cls, spec: DatadogGate) -> DatadogProvider:
        return cls(query=spec.query, window=spec.window, reduce=spec.reduce,
                   samples_query=spec.samples_query, timeout=spec.timeout)

    def describe(self) -> str:
        return f"datadog {self.query} ({self.reduce} over {self.window:g}s)"

    def measure(self, *, now: float) -> Measurement:
        end = int(now)
        start = int(now - self.window)
        with _Session(self.timeout, self.sleep, "timeseries_query") as dd:
            series = _query(dd, self.query, start, end)
            if not series:
                raise NoData(
                    f"Datadog query returned no series over the last {self.window:g}s: {self.query!r}",
                    hint="no traffic yet, a tag that matches nothing, or a metric that has not "
                         "arrived (Datadog metrics lag a minute or so); check it in the Metrics Explorer",
                )
            main = _one_series(dd, self.query, series)
            if not main.values:
                raise NoData(
                    f"Datadog query returned only null points over the last {self.window:g}s: "
                    f"{self.query!r}",
                    hint="a ratio over intervals without requests is null; the gate stays "
                         "inconclusive until traffic flows",
                )
            value = _reduce(self.reduce, main.values)
            details: dict[str, Any] = {
                "query": self.query,
                "reduce": self.reduce,
                "window_seconds": self.window,
                "from": start,
                "to": end,
                "points": len(main.values),
                "null_points": main.points - len(main.values),
                "scope": main.scope,
                "interval": main.interval,
                "last_point_at": main.last_at,
                "api": dd.shown,
            }
            samples: int | None = None
            if self.samples_query:
                samples = self._samples(dd, start, end, details)
        return Measurement(value=value, at=now, samples=samples, details=details)

    def _samples(self, dd: _Session, start: int, end: int, details: dict[str, Any]) -> int:
        assert self.samples_query is not None
        details["samples_query"] = self.samples_query
        series = _query(dd, self.samples_query, start, end)
        if not series or not _one_series(dd, self.samples_query, series).values:
            details["samples_note"] = "samples_query returned no points: counted as 0"
            return 0
        total = math.fsum(series[0].values)
        if not math.isfinite(total) or total < 0:
            raise ProviderError(
                f"samples_query {self.samples_query!r} summed to {total:g}; a sample count must "
                "be a finite number >= 0",
                hint="use a count, e.g. sum:trace.rack.request.hits{service:web}.as_count()",
            )
        return round(total)


# --- a compare gate's counts ------------------------------------------------------------

# the counts source sums each query's points per minute (see DatadogCounts)
COUNT_ROLLUP = 60
# the most minutes one counts query spans: Datadog returns at most 1,500 points per
# series and past that coarsens the rollup, whatever .rollup() asks
COUNT_MAX_MINUTES = 1400
# how many of the newest minutes every check reads again, their late points included
COUNT_SETTLE_MINUTES = 10


def rolled_up(query: str) -> str:
    """A counts query as it is sent: its points summed per whole minute."""
    return f"{query}.rollup(sum, {COUNT_ROLLUP})"


def _outside_braces(query: str) -> str:
    out, depth = [], 0
    for c in query:
        depth += c == "{"
        if not depth:
            out.append(c)
        depth -= c == "}" and depth > 0
    return "".join(out)


def _count_query(query: str) -> str:
    query = query.strip()
    if not query:
        raise rule("the query is blank: write a Datadog metrics query that counts, e.g. "
                   "sum:trace.rack.request.hits{service:web,env:prod}.as_count()")
    if ".rollup(" in query:
        raise rule("leave .rollup() out: the source sums the query's points per minute itself "
                   f"(it sends the query with .rollup(sum, {COUNT_ROLLUP}) appended)")
    bare = _outside_braces(query)
    if any(op in bare for op in ("+", "*", "/", " - ")):
        raise rule("one metric query, without arithmetic: the source sums its points itself "
                   "(a ratio is what the compare gate computes from the counts)")
    return query


CountQuery = Annotated[str, AfterValidator(_count_query)]


class DatadogEnvQueries(SpecModel):
    """One environment's requests and errors, as Datadog metrics queries that count."""

    requests: CountQuery = Field(description=(
        "its requests, e.g. sum:trace.rack.request.hits{service:web,env:ec2}.as_count()"))
    errors: CountQuery = Field(description=(
        "its failed requests, a subset of `requests`, e.g. "
        "sum:trace.rack.request.errors{service:web,env:ec2}.as_count()"))


class DatadogCountsSpec(SpecModel):
    """A ``compare`` gate's counts from Datadog: for each environment, the points of a
    requests query and an errors query summed since the step started (keys and
    site from the environment, as for the ``datadog`` gate)."""

    type: Literal["datadog"]
    old: DatadogEnvQueries
    new: DatadogEnvQueries
    timeout: Timeout = Field(default=10.0, description="for all four queries of one check")

    @model_validator(mode="after")
    def _distinct(self) -> DatadogCountsSpec:
        for env in ("old", "new"):
            q: DatadogEnvQueries = getattr(self, env)
            if q.errors == q.requests:
                raise rule(f"{env}'s errors and requests are the same query: errors must count "
                           "the failed requests only", (env, "errors"))
        if self.old.requests == self.new.requests:
            raise rule("old and new count the same requests query: a comparison needs each "
                       "environment's own (e.g. env:ec2 and env:eks in the tags)", ("new", "requests"))
        return self


_ENVS = ("old", "new")


@dataclass
class DatadogCounts:
    """Requests and errors of each environment from Datadog (the
    :class:`~shiftover.providers.base.CountSource` of ``compare`` gates).

    ``counts(since, now)`` sums each of the four queries' points, sent with
    ``.rollup(sum, 60)`` appended (``GET /api/v1/query``), over the step's whole
    minutes ``[start, end)``: ``since`` rounded up and ``now`` rounded up to whole
    minutes (epoch seconds: the engine's clock, the wall clock in a run).
    Rounding ``since`` up leaves out the minute the step started in (it also holds
    the step before's traffic, at another split).

    The counts never go down, however long the step:

    - Every minute is its own bucket. Datadog returns at most 1,500 points per
      series and, for a longer span, coarsens the rollup whatever ``.rollup()``
      asks (past about 25 hours at one minute): the buckets would then move and
      the sum of the step could shrink. So no query spans more than
      :data:`COUNT_MAX_MINUTES` minutes; a longer span is read in consecutive
      chunks of whole minutes, each minute in exactly one of them.
    - The counting is incremental: the source keeps, for the step (its
      ``since``), the sum of the minutes it has settled and asks only for the
      minutes after them, so a check costs four queries of a few minutes however
      long the step has run (a long gap since the last check, a few more).
      Datadog's points arrive late (a minute or so; the minute in progress is
      partial), so the newest :data:`COUNT_SETTLE_MINUTES` minutes before ``end``
      stay unsettled: every check reads them again and each minute's value is
      replaced by the new one, or kept when the new one is smaller (a late point
      only adds to a minute; a smaller one is an answer still missing points).
      A minute older than that is settled, with what had arrived: a point later
      still is not counted. A query that fails changes nothing but the chunks
      read whole before it (all four queries).

    So the counts trail the traffic and grow as points arrive; a check sees less
    evidence, never wrong evidence. A marked start (``since == now``) or a span
    within one minute has no whole minute: all zeros, though Datadog is still
    asked (the minute before, its points unused) so that bad keys or a query
    Datadog rejects fail from the first check. A new ``since`` starts over.

    A requests query without a series (or with only null points) in the step so
    far is ``NoData``; an errors query without one, while requests were counted,
    is 0 errors (APM publishes no error points while nothing fails: check the
    errors query's spelling in Datadog, a typo there would read as no errors).
    Several series, a sum that is not a whole number (a rate, not
    ``.as_count()``), and more errors than requests are ``ProviderError``: the
    errors query must count a subset of the requests query's requests.
    """

    Spec: ClassVar[type[DatadogCountsSpec]] = DatadogCountsSpec
    queries: dict[str, str]  # old_requests, old_errors, new_requests, new_errors
    timeout: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    # the step counted so far: its since; the minutes before _settled_to (from the
    # step's first) summed per query, and whether any had a point; the newer minutes'
    # values per query (minute's epoch seconds -> the largest value read)
    _since: float | None = field(default=None, init=False, repr=False)
    _settled_to: int = field(default=0, init=False, repr=False)
    _settled: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _settled_seen: dict[str, bool] = field(default_factory=dict, init=False, repr=False)
    _recent: dict[str, dict[float, float]] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def from_spec(cls, spec: DatadogCountsSpec) -> DatadogCounts:
        return cls(queries={f"{env}_{what}": getattr(getattr(spec, env), what)
                            for env in _ENVS for what in ("requests", "errors")},
                   timeout=spec.timeout)

    def describe(self) -> str:
        return "datadog sums: " + "; ".join(
            f"{env} {self.queries[env + '_errors']} of {self.queries[env + '_requests']}"
            for env in _ENVS)

    def counts(self, *, since: float, now: float) -> EnvCounts:
        start = math.ceil(since / COUNT_ROLLUP) * COUNT_ROLLUP
        end = math.ceil(now / COUNT_ROLLUP) * COUNT_ROLLUP
        span = (f"from {datetime.fromtimestamp(start, UTC).isoformat()} "
                f"to {datetime.fromtimestamp(end, UTC).isoformat()}")
        if self._since != since:  # a new step: start over
            self._since, self._settled_to = since, start
            self._settled = dict.fromkeys(self.queries, 0.0)
            self._settled_seen = dict.fromkeys(self.queries, False)
            self._recent = {qid: {} for qid in self.queries}
        with _Session(self.timeout, self.sleep, "timeseries_query") as dd:
            if end <= start:  # no whole minute yet: ask anyway, so that errors show at once
                for query in self.queries.values():
                    _query(dd, rolled_up(query), start - COUNT_ROLLUP, start)
                return EnvCounts(0, 0, 0, 0)
            settle_before = end - COUNT_SETTLE_MINUTES * COUNT_ROLLUP
            first = self._settled_to
            while first < end:  # chunks of whole minutes, each within Datadog's points
                last = min(first + COUNT_MAX_MINUTES * COUNT_ROLLUP, end)
                read = {qid: self._points(dd, query, first, last)
                        for qid, query in self.queries.items()}
                self._merge(read, min(last, settle_before))
                first = last
        silent = [self.queries[f"{env}_requests"] for env in _ENVS
                  if not (self._settled_seen[f"{env}_requests"] or self._recent[f"{env}_requests"])]
        if silent:
            raise NoData(
                f"Datadog has no points {span} for {' nor '.join(map(repr, silent))}: "
                "no requests counted yet",
                hint="Datadog metrics arrive a minute or so late; if it lasts, check the query's "
                     "metric and tags in the Metrics Explorer",
            )
        counts: dict[str, int] = {}
        for qid in self.queries:
            total = math.fsum([self._settled[qid], *self._recent[qid].values()])
            counts[qid] = whole_count(
                total, f"Datadog query {self.queries[qid]!r} {span}",
                "both queries of an environment must count requests: a count metric with "
                ".as_count() (e.g. sum:trace.rack.request.hits{...}.as_count()), not a rate, "
                "an average or a gauge")
        return env_counts(
            counts, span=span,
            name=lambda q: (f"the errors query {self.queries[q]!r}" if q.endswith("_errors")
                            else repr(self.queries[q])),
            hint="the errors query must count a subset of the requests query's requests: "
                 "the same service and environment tags for both, e.g. "
                 "trace.rack.request.errors beside trace.rack.request.hits")

    def _merge(self, read: Mapping[str, Sequence[tuple[float, float]]], settle_to: int) -> None:
        """Take one chunk's points (every query's): each minute's value replaced by the
        larger of the two reads; then the minutes before ``settle_to`` settled."""
        for qid, points in read.items():
            recent = self._recent[qid]
            for at, value in points:
                recent[at] = max(recent.get(at, value), value)
        if settle_to <= self._settled_to:
            return
        for qid, recent in self._recent.items():
            done = [at for at in recent if at < settle_to]
            if done:
                self._settled[qid] = math.fsum([self._settled[qid], *(recent[at] for at in done)])
                self._settled_seen[qid] = True
                for at in done:
                    del recent[at]
        self._settled_to = settle_to

    @staticmethod
    def _points(dd: _Session, query: str, start: int, end: int) -> list[tuple[float, float]]:
        """The query's points in ``[start, end)`` (a span of at most COUNT_MAX_MINUTES)."""
        series = _query(dd, rolled_up(query), start, end)
        if not series:
            return []
        return [(t, v) for t, v in _one_series(dd, query, series).stamped if start <= t < end]


# --- monitors ------------------------------------------------------------------------


def _has_tags(monitor: Mapping[str, Any], tags: Iterable[str]) -> bool:
    own = {str(t).lower() for t in monitor.get("tags") or []}
    return all(t.lower() in own for t in tags)


@dataclass
class DatadogMonitorsProvider:
    """The states of the Datadog monitors a gate selects (see the module docstring)."""

    Spec: ClassVar[type[DatadogMonitorsGate]] = DatadogMonitorsGate
    tags: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    ids: tuple[int, ...] = ()
    warn_fails: bool = True
    timeout: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    @classmethod
    def from_spec(cls, spec: DatadogMonitorsGate) -> DatadogMonitorsProvider:
        return cls(tags=tuple(spec.tags), names=tuple(spec.names), ids=tuple(spec.ids),
                   warn_fails=spec.warn_fails, timeout=spec.timeout)

    def selection(self) -> str:
        parts = []
        if self.tags:
            parts.append("tags " + ",".join(self.tags))
        if self.names:
            parts.append("names " + ", ".join(repr(n) for n in self.names))
        if self.ids:
            parts.append("ids " + ", ".join(str(i) for i in self.ids))
        return "; ".join(parts)

    def describe(self) -> str:
        return f"datadog monitors ({self.selection()})"

    def measure(self, *, now: float) -> Measurement:
        with _Session(self.timeout, self.sleep, "monitors_read") as dd:
            monitors = self._select(dd)
            firing: list[dict[str, Any]] = []
            no_data: list[str] = []
            warn: list[str] = []
            watched: list[dict[str, Any]] = []
            for m in monitors:
                state = m["overall_state"]
                entry = {"alertname": m["name"], "id": m["id"], "state": state,
                         "tags": list(m.get("tags") or [])}
                watched.append({"id": m["id"], "name": m["name"], "state": state})
                if state == "Alert" or (state == "Warn" and self.warn_fails):
                    firing.append(entry)
                elif state == "Warn":
                    warn.append(m["name"])
                elif state == "No Data":
                    no_data.append(m["name"])
                elif state in ("Skipped", "Ignored", "Unknown"):
                    no_data.append(f"{m['name']} ({state})")
            details: dict[str, Any] = {
                "selection": self.selection(),
                "firing": firing,
                "no_data": no_data,
                "warn": warn,
                "warn_fails": self.warn_fails,
                "monitors": watched,
                "api": dd.shown,
            }
        return Measurement(value=float(len(firing)), at=now, samples=len(monitors), details=details)

    def _select(self, dd: _Session) -> list[dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        tags_text = ",".join(self.tags)
        for ident in self.ids:
            m = self._get(dd, ident)
            if not _has_tags(m, self.tags):
                raise ProviderError(
                    f"Datadog monitor {ident} ({m['name']!r}) does not carry the tags {tags_text} "
                    "this gate selects by",
                    hint="remove the id from the gate, or fix its tags (a gate's ids and names are "
                         "looked up within its tags)",
                )
            found[ident] = m
        for name in self.names:
            listed = self._list(dd, f"the monitors named {name!r}", name=name)
            exact = [m for m in listed if m["name"] == name and _has_tags(m, self.tags)]
            if not exact:
                near = sorted({m["name"] for m in listed})[:5]
                within = f" with the tags {tags_text}" if self.tags else ""
                raise ProviderError(
                    f"no Datadog monitor is named {name!r}{within} at {dd.shown}",
                    hint=(f"names are exact; close matches: {', '.join(repr(n) for n in near)}"
                          if near else "check the name in Datadog's Manage Monitors page, or select "
                          "by tags") + "; a gate that watches nothing would never fail",
                )
            found.update((m["id"], m) for m in exact)
        if not self.ids and not self.names:
            listed = self._list(dd, f"the monitors tagged {tags_text}")
            matching = [m for m in listed if _has_tags(m, self.tags)]
            if not matching:
                raise ProviderError(
                    f"no Datadog monitor carries all the tags {tags_text} at {dd.shown}",
                    hint="check the monitors' tags in Datadog (Manage Monitors, filter by tag); a "
                         "gate that watches nothing would never fail",
                )
            found.update((m["id"], m) for m in matching)
        return [found[k] for k in sorted(found)]

    def _list(self, dd: _Session, what: str, **filters: str) -> list[dict[str, Any]]:
        monitors = _sdk("v1.api.monitors_api", "MonitorsApi")
        if self.tags:
            filters["monitor_tags"] = ",".join(self.tags)
        body = dd.call(what, lambda c: monitors(c).list_monitors(**filters))
        if not isinstance(body, list):
            raise dd.malformed(what, f"a {type(body).__name__}, not a list of monitors")
        return [self._checked(dd, what, m) for m in body]

    def _get(self, dd: _Session, ident: int) -> dict[str, Any]:
        monitors = _sdk("v1.api.monitors_api", "MonitorsApi")
        what = f"monitor {ident}"
        body = dd.call(what, lambda c: monitors(c).get_monitor(ident), not_found=(
            f"Datadog monitor {ident} does not exist at {dd.shown}",
            "check the id in the monitor's URL in Datadog (…/monitors/<id>), or select by tags; "
            "a gate that watches nothing would never fail",
        ))
        return self._checked(dd, what, body)

    @staticmethod
    def _checked(dd: _Session, what: str, m: Any) -> dict[str, Any]:
        """A monitor with the fields the gate reads, or a ProviderError: a malformed entry
        could be the monitor that is in Alert, so it is never skipped."""
        if not isinstance(m, dict) or isinstance(m.get("id"), bool) \
                or not isinstance(m.get("id"), int) or not isinstance(m.get("name"), str):
            raise dd.malformed(what, f"a monitor without an id and a name: {m!r}")
        tags = m.get("tags")
        if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
            raise dd.malformed(what, f"monitor {m['id']} has tags that are not a list of strings")
        state = m.get("overall_state")
        if state not in _STATES:
            raise ProviderError(
                f"Datadog monitor {m['id']} ({dd.scrub(m['name'])!r}) is in a state shiftover does "
                f"not know: {dd.short(str(state))!r}",
                hint=f"known states: {', '.join(_STATES)}; remove the monitor from the gate's "
                     "selection, or upgrade shiftover",
            )
        return m


__all__ = [
    "COUNT_MAX_MINUTES",
    "COUNT_ROLLUP",
    "COUNT_SETTLE_MINUTES",
    "DEFAULT_SITE",
    "DatadogCounts",
    "DatadogCountsSpec",
    "DatadogEnvQueries",
    "DatadogGate",
    "DatadogMonitorsGate",
    "DatadogMonitorsProvider",
    "DatadogProvider",
    "api_base_url",
    "rolled_up",
]
