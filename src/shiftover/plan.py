"""The user's plan file: what to shift, in which steps, and what "normal" means.

Models are pydantic v2 (the plan is the one boundary where pydantic is used).
Loading (YAML with file:line:col errors, ${ENV} interpolation) lives below the
models; ``load_plan(path)`` is the entry point.

Durations accept ``500ms``, ``90s``, ``5m``, ``1h`` (or a bare number of seconds)
and are held as float seconds.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """'500ms' -> 0.5, '90s' -> 90, '5m' -> 300, '1h' -> 3600; numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration must be like 500ms, 90s, 5m or 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNIT[m.group(2)]
    raise ValueError(f"{value!r} is not a duration: use a number with ms, s, m or h, e.g. 500ms, 90s, 5m, 1h")


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- routers -----------------------------------------------------------------


class HAProxyRouterSpec(_Model):
    """HAProxy runtime API: two servers in one backend, absolute weights 0-256."""

    type: Literal["haproxy"]
    socket: str = Field(description="Runtime API: a unix socket path, or host:port / tcp://host:port")
    backend: str
    old: str = Field(description="HAProxy server name of the old environment")
    new: str = Field(description="HAProxy server name of the new environment")
    timeout: Duration = 2.0


RouterSpec = Annotated[HAProxyRouterSpec, Field(discriminator="type")]


# --- gates (the normal state) ------------------------------------------------


class _GateBase(_Model):
    name: str = Field(min_length=1)
    min_samples: int = Field(default=0, ge=0, description="fewer samples than this is INCONCLUSIVE")


class PrometheusGate(_GateBase):
    """An instant PromQL query that returns a scalar or a single-series vector."""

    type: Literal["prometheus"]
    url: str
    query: str = Field(min_length=1)
    max: float | None = None
    min: float | None = None
    samples_query: str | None = Field(
        default=None, description="optional PromQL giving the sample size (e.g. request count)"
    )
    timeout: Duration = 5.0

    @model_validator(mode="after")
    def _needs_threshold(self) -> PrometheusGate:
        if self.max is None and self.min is None:
            raise ValueError("a prometheus gate needs a threshold: set max, min, or both")
        return self


class PrometheusAlertsGate(_GateBase):
    """FAIL while any alert matching all ``labels`` is firing."""

    type: Literal["prometheus_alerts"]
    url: str
    labels: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = 5.0


class HttpGate(_GateBase):
    """An HTTP probe: status, optional body substring. A connection error is FAIL."""

    type: Literal["http"]
    url: str
    expect_status: int = Field(default=200, ge=100, le=599)
    body_contains: str | None = None
    method: Literal["GET", "HEAD", "POST"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = 2.0


class HAProxyStatsGate(_GateBase):
    """Per-server counters read straight from HAProxy (no Prometheus needed).

    ``metric: error_ratio`` is 5xx responses / responses over the last interval.
    """

    type: Literal["haproxy_stats"]
    socket: str
    backend: str
    server: str
    metric: Literal["error_ratio"] = "error_ratio"
    max: float = Field(ge=0)
    timeout: Duration = 2.0


GateSpec = Annotated[
    PrometheusGate | PrometheusAlertsGate | HttpGate | HAProxyStatsGate,
    Field(discriminator="type"),
]

ROUTER_TYPES = ("haproxy",)
GATE_TYPES = ("prometheus", "prometheus_alerts", "http", "haproxy_stats")


# --- the plan ----------------------------------------------------------------


class Plan(_Model):
    service: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    router: RouterSpec
    steps: list[float] = Field(min_length=1, description="percent of traffic on the new environment")
    bake: Duration = Field(description="each step must stay normal this long")
    interval: Duration = Field(default=15.0, description="how often the normal state is checked")
    normal_state: list[GateSpec] = Field(min_length=1)
    failure_limit: int = Field(default=2, ge=1, description="consecutive failed checks before on_failure")
    on_failure: Literal["rollback", "pause"] = "rollback"
    approvals: list[float] = Field(default_factory=list, description="steps that wait for `shiftover approve`")

    @field_validator("steps")
    @classmethod
    def _steps_shape(cls, steps: list[float]) -> list[float]:
        for s in steps:
            if s <= 0 or s > 100:
                raise ValueError(f"step {s:g} is outside 0-100: steps are percent of traffic on the new environment, each > 0 and <= 100")
        for a, b in zip(steps, steps[1:], strict=False):
            if b <= a:
                raise ValueError(f"steps must be strictly increasing: {b:g} comes after {a:g}")
        if steps[-1] != 100:
            raise ValueError(f"steps must end at 100 (the last is {steps[-1]:g}): add 100 to finish the cutover")
        return steps

    @field_validator("interval")
    @classmethod
    def _interval_positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("interval must be greater than 0, e.g. 15s")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> Plan:
        unknown = [a for a in self.approvals if a not in self.steps]
        if unknown:
            raise ValueError(
                f"approvals name steps that are not in steps: {', '.join(f'{a:g}' for a in unknown)}"
            )
        names = [g.name for g in self.normal_state]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"gate names must be unique: {', '.join(dupes)} appears more than once")
        return self
