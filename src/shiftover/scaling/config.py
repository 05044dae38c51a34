"""``scaling.yaml``: what the simulator needs to know about the service and cluster.

This is a boundary, so it is pydantic (like the plan file) with errors that
name ``file:line:col`` and the field path. Everything past the boundary is
plain frozen dataclasses: :func:`sim_params` turns a validated config into
:class:`SimParams` (integers in millicores, MiB and seconds, cheap to copy for
a sweep) and :func:`web_hpa_spec` / :func:`worker_hpa_spec` into the HPA specs
that :mod:`shiftover.scaling.hpa` runs.

Field names follow the user's words (``capacity_rps`` is what a load test
measures: requests per second one pod serves within the latency SLO). The
HPA's ``behavior`` block is the one exception: it is copied verbatim from an
``autoscaling/v2`` HorizontalPodAutoscaler, so it keeps Kubernetes' camelCase
(``scaleDown.stabilizationWindowSeconds``) and can be pasted in and out.

A measured capacity overrides the file's: :func:`read_capacity_from` reads
``web.capacity_rps`` and ``slo`` from a ``shiftover load --json`` document
(the same keys, so the two agree by construction) and :func:`with_capacity`
puts them in a copy of the config (``shiftover scale ... --capacity-from``).

Defaults are the Kubernetes / Cluster Autoscaler / Datadog Cluster Agent
defaults: HPA sync 15 s and tolerance 0.1; CA scan 10 s, scale-down below 0.5
utilization after 10 min unneeded and not within 10 min of a scale-up; Datadog
external metrics refreshed every 30 s.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from shiftover.errors import BadInput, PlanError
from shiftover.spec import parse_duration

if TYPE_CHECKING:
    from shiftover.scaling.hpa import Behavior, ControllerConstants, HPASpec, ScalingRules
    from shiftover.scaling.manifests import WorkloadScaling

# --- quantities --------------------------------------------------------------

_CPU = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m?)\s*$")
_MEM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|k|K|M|G|T)?\s*$")
_MEM_UNIT = {
    None: 1,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
}


def parse_cpu(value: Any) -> int:
    """Kubernetes CPU quantity to millicores: ``500m`` -> 500, ``2`` -> 2000, ``0.25`` -> 250."""
    if isinstance(value, bool):
        raise ValueError("cpu must be a quantity like 500m or 2")
    if isinstance(value, int | float):
        text = repr(float(value)) if isinstance(value, float) else str(value)
    else:
        text = str(value)
    m = _CPU.match(text)
    if not m:
        raise ValueError(f"{value!r} is not a CPU quantity: use millicores (500m) or cores (2, 0.5)")
    number = float(m.group(1))
    milli = number if m.group(2) else number * 1000
    return math.ceil(milli - 1e-9)


def parse_memory(value: Any) -> int:
    """Kubernetes memory quantity to MiB (rounded up): ``512Mi`` -> 512, ``1Gi`` -> 1024, ``1G`` -> 954."""
    if isinstance(value, bool):
        raise ValueError("memory must be a quantity like 512Mi or 2Gi")
    m = _MEM.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a memory quantity: use e.g. 512Mi, 2Gi or 1G")
    return math.ceil(float(m.group(1)) * _MEM_UNIT[m.group(2)] / 2**20 - 1e-9)


def _whole_seconds(value: Any) -> int:
    seconds = parse_duration(value)
    if seconds != int(seconds):
        raise ValueError(f"{value!r}: the simulator works in whole seconds; round it (e.g. 45s)")
    return int(seconds)


Cpu = Annotated[int, BeforeValidator(parse_cpu)]
Memory = Annotated[int, BeforeValidator(parse_memory)]
Seconds = Annotated[int, BeforeValidator(_whole_seconds)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Resources(_Model):
    """Requests of a pod, or allocatable of a node: ``cpu`` (500m, 2) and ``memory`` (512Mi, 2Gi)."""

    cpu: Cpu = Field(ge=0)
    memory: Memory = Field(ge=0)


# --- HPA ---------------------------------------------------------------------


class PolicyModel(_Model):
    type: Literal["Pods", "Percent"]
    value: int = Field(gt=0)
    period_seconds: int = Field(alias="periodSeconds", gt=0, le=1800)


class RulesModel(_Model):
    stabilization_window_seconds: int | None = Field(
        default=None, alias="stabilizationWindowSeconds", ge=0, le=3600
    )
    select_policy: Literal["Max", "Min", "Disabled"] = Field(default="Max", alias="selectPolicy")
    policies: list[PolicyModel] = Field(default_factory=list)


class BehaviorModel(_Model):
    """The HPA's ``spec.behavior``, in Kubernetes' own spelling."""

    scale_up: RulesModel | None = Field(default=None, alias="scaleUp")
    scale_down: RulesModel | None = Field(default=None, alias="scaleDown")


class HPAModel(_Model):
    """One HPA on one External metric with an ``AverageValue`` target."""

    min_replicas: int = Field(ge=1)
    max_replicas: int = Field(ge=1)
    metric: str = Field(min_length=1, description="the Datadog metric name the HPA reads (External)")
    target_per_pod: float = Field(gt=0, description="AverageValue target: metric value per pod")
    query: str | None = Field(
        default=None,
        min_length=1,
        description="the Datadog query behind the metric, for `scale manifests` (default: sum:<metric>{*})",
    )
    behavior: BehaviorModel | None = None

    @model_validator(mode="after")
    def _bounds(self) -> HPAModel:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})"
            )
        return self


class WebModel(_Model):
    deployment: str = Field(default="web", min_length=1, description="the Deployment (and HPA) name")
    capacity_rps: float = Field(gt=0, description="requests/s one pod serves within the latency SLO")
    startup: Seconds = Field(default=30, description="from scheduled to Ready (image pull, boot, readiness probe)")
    requests: Resources
    hpa: HPAModel
    initial_replicas: int | None = Field(default=None, ge=1)


class WorkerModel(_Model):
    deployment: str = Field(default="worker", min_length=1, description="the Deployment (and HPA) name")
    jobs_per_second: float = Field(gt=0, description="jobs/s one worker pod processes")
    startup: Seconds = 30
    requests: Resources
    hpa: HPAModel
    initial_replicas: int | None = Field(default=None, ge=1)
    jobs_per_request: float | None = Field(
        default=None, ge=0, description="jobs enqueued per web request, when the trace has no jobs column"
    )


class MetricsModel(_Model):
    """The external-metrics pipeline (Datadog Cluster Agent by default)."""

    refresh: Seconds = Field(default=30, gt=0, description="how often the cluster agent re-queries")
    rollup: Seconds = Field(default=30, gt=0, description="rollup bucket the query averages over")
    lag: Seconds = Field(default=30, ge=0, description="ingestion delay before a bucket is queryable")


class OverprovisioningModel(_Model):
    """Low-priority placeholder ("pause") pods that keep spare room; preempted by real pods."""

    pods: int = Field(default=0, ge=0)
    requests: Resources | None = Field(default=None, description="defaults to the web pod's requests")


class ClusterModel(_Model):
    node: Resources = Field(description="allocatable of one node")
    daemonsets: Resources = Field(default_factory=lambda: Resources(cpu=0, memory=0))
    min_nodes: int = Field(default=1, ge=0)
    max_nodes: int = Field(default=100, ge=1)
    initial_nodes: int | None = Field(default=None, ge=0)
    provisioning: Seconds = Field(default=90, ge=0, description="from scale-up decision to node Ready")
    scan_interval: Seconds = Field(default=10, gt=0)
    scale_down_utilization_threshold: float = Field(default=0.5, gt=0, le=1)
    scale_down_unneeded_time: Seconds = Field(default=600, ge=0)
    scale_down_delay_after_add: Seconds = Field(default=600, ge=0)
    overprovisioning: OverprovisioningModel = Field(default_factory=OverprovisioningModel)

    @model_validator(mode="after")
    def _bounds(self) -> ClusterModel:
        if self.max_nodes < self.min_nodes:
            raise ValueError(f"max_nodes ({self.max_nodes}) is below min_nodes ({self.min_nodes})")
        return self


class SLOModel(_Model):
    latency: float = Field(default=0.3, gt=0, description="the latency SLO capacity_rps was measured at (s)")
    objective: float = Field(
        default=0.99, gt=0, le=1, description="share of a minute's requests that must be within SLO"
    )

    @model_validator(mode="before")
    @classmethod
    def _latency_duration(cls, data: Any) -> Any:
        if isinstance(data, dict) and "latency" in data:
            data = {**data, "latency": parse_duration(data["latency"])}
        return data


class ControllerModel(_Model):
    """kube-controller-manager flags that change HPA arithmetic."""

    tolerance: float = Field(default=0.1, ge=0, lt=1)
    sync_period: Seconds = Field(default=15, gt=0)
    downscale_stabilization: Seconds = Field(default=300, ge=0)


class ScalingConfig(_Model):
    web: WebModel
    worker: WorkerModel | None = None
    metrics: MetricsModel = Field(default_factory=MetricsModel)
    cluster: ClusterModel
    slo: SLOModel = Field(default_factory=SLOModel)
    controller: ControllerModel = Field(default_factory=ControllerModel)

    @model_validator(mode="after")
    def _pods_fit_nodes(self) -> ScalingConfig:
        node, ds = self.cluster.node, self.cluster.daemonsets
        room_cpu, room_mem = node.cpu - ds.cpu, node.memory - ds.memory
        pods = [("web", self.web.requests)]
        if self.worker is not None:
            pods.append(("worker", self.worker.requests))
        if self.cluster.overprovisioning.requests is not None:
            pods.append(("cluster.overprovisioning", self.cluster.overprovisioning.requests))
        for name, req in pods:
            if req.cpu > room_cpu or req.memory > room_mem:
                raise ValueError(
                    f"a {name} pod ({req.cpu}m cpu, {req.memory}Mi memory) does not fit on an empty node "
                    f"({room_cpu}m cpu, {room_mem}Mi memory after daemonsets): raise cluster.node or lower the requests"
                )
            if req.cpu == 0 and req.memory == 0:
                raise ValueError(f"{name}.requests are all zero: set cpu and memory requests as the deployment does")
        return self


# --- loading -----------------------------------------------------------------


def load_config(path: str | Path) -> ScalingConfig:
    """Read and validate ``scaling.yaml``; errors are :class:`PlanError` with file:line:col."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(
            f"cannot read config {p}: {exc.strerror or exc}",
            hint="pass --config with the path of a scaling.yaml (see examples/scaling.yaml)",
        ) from None
    try:
        doc = YAML(typ="rt").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise PlanError(
            f"not valid YAML: {getattr(exc, 'problem', None) or exc}",
            file=str(p),
            line=mark.line + 1 if mark is not None else None,
            column=mark.column + 1 if mark is not None else None,
        ) from None
    if not isinstance(doc, dict):
        raise PlanError("the config must be a mapping with web: and cluster: sections", file=str(p), line=1)
    try:
        return ScalingConfig.model_validate(_plain(doc))
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        line, col = _locate(doc, loc)
        field = ".".join(str(x) for x in loc) or None
        more = len(exc.errors()) - 1
        msg = err["msg"].removeprefix("Value error, ")
        if more:
            msg += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise PlanError(msg, file=str(p), line=line, column=col, field=field) from None


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _locate(doc: Any, loc: tuple[Any, ...]) -> tuple[int | None, int | None]:
    """The deepest line:col (1-based) along a pydantic error path in a ruamel document."""
    line: int | None = None
    col: int | None = None
    node = doc
    for key in loc:
        lc = getattr(node, "lc", None)
        try:
            if isinstance(node, dict) and key in node:
                if lc is not None:
                    ln, cl = lc.value(key) if not isinstance(node[key], dict | list) else lc.key(key)
                    line, col = ln + 1, cl + 1
                node = node[key]
            elif isinstance(node, list) and isinstance(key, int) and key < len(node):
                if lc is not None:
                    ln, cl = lc.item(key)
                    line, col = ln + 1, cl + 1
                node = node[key]
            else:
                break
        except (KeyError, IndexError, TypeError):
            break
    if line is None and hasattr(doc, "lc"):
        line, col = 1, 1
    return line, col


# --- a measured capacity: shiftover load --json ------------------------------

LOAD_HINT = (
    "run shiftover load ... --pods N --json > load.json (N: the pods behind the target "
    "during the test) so capacity per pod is known"
)


@dataclass(frozen=True)
class MeasuredCapacity:
    """What ``--capacity-from`` takes from a ``shiftover load --json`` document."""

    path: Path
    capacity_rps: float  # web.capacity_rps: requests/s one pod served within the SLO
    slo_latency: float | None  # slo.latency, seconds
    slo_objective: float | None  # slo.objective
    notes: tuple[str, ...] = ()  # caveats worth a line on stderr (stopped early, knee at the top)


def _positive(doc: dict[str, Any], section: str, key: str, path: Path, *, at_most: float | None = None) -> float | None:
    block = doc.get(section)
    if block is None or key not in block:
        return None
    value = block[key]
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if ok and at_most is not None:
        ok = value <= at_most
    if not ok:
        limit = f" up to {at_most:g}" if at_most is not None else ""
        raise BadInput(
            f"--capacity-from {path}: {section}.{key} must be a number above 0{limit}, not {value!r}",
            hint=LOAD_HINT,
        )
    return float(value)


def read_capacity_from(path: str | Path) -> MeasuredCapacity:
    """Read ``web.capacity_rps`` (and ``slo.latency`` / ``slo.objective``) from a load document.

    Errors are :class:`BadInput` saying which of these it is: the file is
    missing or unreadable, not JSON, not a ``shiftover.load/v1`` document, or
    has no ``web.capacity_rps`` (no step passed, or ``--pods`` was not given).
    """
    import json

    from shiftover.loadtest.results import DOCUMENT_KIND

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot read --capacity-from {p}: {exc.strerror or exc}", hint=LOAD_HINT) from None
    except UnicodeDecodeError:
        raise BadInput(f"--capacity-from {p} is not JSON (not UTF-8 text)", hint=LOAD_HINT) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"--capacity-from {p} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", hint=LOAD_HINT
        ) from None
    kind = doc.get("kind") if isinstance(doc, dict) else None
    if kind != DOCUMENT_KIND:
        what = f"its kind is {kind!r}" if kind is not None else "it has no \"kind\""
        raise BadInput(
            f"--capacity-from {p} is not a shiftover load document ({what}, not {DOCUMENT_KIND!r})",
            hint=LOAD_HINT,
        )
    if not isinstance(doc.get("web"), dict | None) or not isinstance(doc.get("slo"), dict | None):
        raise BadInput(f"--capacity-from {p}: web and slo must be objects", hint=LOAD_HINT)
    capacity = _positive(doc, "web", "capacity_rps", p)
    if capacity is None:
        if doc.get("knee") is None:
            why = "no step passed its SLO and error criteria, so there is no knee to take a capacity from"
            hint = "run shiftover load again from a lower --rate, or with a looser --slo-p99 / --max-errors"
        else:
            why = "the test ran without --pods, so the capacity per pod is not known"
            hint = LOAD_HINT
        raise BadInput(f"--capacity-from {p} has no web.capacity_rps: {why}", hint=hint)
    notes = []
    if doc.get("knee") is not None and doc.get("first_failure") is None:
        notes.append(
            "every step of that load test passed: the capacity is at least this, the true one may be higher"
        )
    if doc.get("stopped_early"):
        notes.append("that load test was stopped early")
    return MeasuredCapacity(
        path=p,
        capacity_rps=capacity,
        slo_latency=_positive(doc, "slo", "latency", p),
        slo_objective=_positive(doc, "slo", "objective", p, at_most=1.0),
        notes=tuple(notes),
    )


def with_capacity(cfg: ScalingConfig, measured: MeasuredCapacity) -> tuple[ScalingConfig, list[str]]:
    """``cfg`` with the measured values in place of its own, and one line per value taken
    (``web.capacity_rps 174 (scaling.yaml: 50)``)."""
    taken = [f"web.capacity_rps {measured.capacity_rps:g} req/s (config: {cfg.web.capacity_rps:g})"]
    slo: dict[str, float] = {}
    if measured.slo_latency is not None:
        slo["latency"] = measured.slo_latency
        taken.append(f"slo.latency {measured.slo_latency:g} s (config: {cfg.slo.latency:g})")
    if measured.slo_objective is not None:
        slo["objective"] = measured.slo_objective
        taken.append(f"slo.objective {measured.slo_objective:g} (config: {cfg.slo.objective:g})")
    new = cfg.model_copy(
        update={
            "web": cfg.web.model_copy(update={"capacity_rps": measured.capacity_rps}),
            "slo": cfg.slo.model_copy(update=slo),
        }
    )
    return new, taken


# --- from config to the simulator's values -----------------------------------


@dataclass(frozen=True)
class SimParams:
    """Everything the simulation loop reads, as integers (millicores, MiB, seconds)."""

    web_capacity_rps: float
    web_startup: int
    web_cpu: int
    web_mem: int
    web_initial: int | None
    worker_enabled: bool
    worker_rate: float
    worker_startup: int
    worker_cpu: int
    worker_mem: int
    worker_initial: int | None
    jobs_per_request: float | None
    node_cpu: int
    node_mem: int
    ds_cpu: int
    ds_mem: int
    min_nodes: int
    max_nodes: int
    initial_nodes: int | None
    provisioning: int
    scan_interval: int
    scale_down_threshold: float
    scale_down_unneeded: int
    scale_down_delay_after_add: int
    pause_pods: int
    pause_cpu: int
    pause_mem: int
    refresh: int
    rollup: int
    lag: int
    sync_period: int
    slo_objective: float


def sim_params(cfg: ScalingConfig) -> SimParams:
    w, k, c, m = cfg.web, cfg.worker, cfg.cluster, cfg.metrics
    pause = c.overprovisioning.requests or w.requests
    return SimParams(
        web_capacity_rps=w.capacity_rps,
        web_startup=w.startup,
        web_cpu=w.requests.cpu,
        web_mem=w.requests.memory,
        web_initial=w.initial_replicas,
        worker_enabled=k is not None,
        worker_rate=k.jobs_per_second if k else 1.0,
        worker_startup=k.startup if k else 0,
        worker_cpu=k.requests.cpu if k else 0,
        worker_mem=k.requests.memory if k else 0,
        worker_initial=k.initial_replicas if k else None,
        jobs_per_request=k.jobs_per_request if k else None,
        node_cpu=c.node.cpu,
        node_mem=c.node.memory,
        ds_cpu=c.daemonsets.cpu,
        ds_mem=c.daemonsets.memory,
        min_nodes=c.min_nodes,
        max_nodes=c.max_nodes,
        initial_nodes=c.initial_nodes,
        provisioning=c.provisioning,
        scan_interval=c.scan_interval,
        scale_down_threshold=c.scale_down_utilization_threshold,
        scale_down_unneeded=c.scale_down_unneeded_time,
        scale_down_delay_after_add=c.scale_down_delay_after_add,
        pause_pods=c.overprovisioning.pods,
        pause_cpu=pause.cpu,
        pause_mem=pause.memory,
        refresh=m.refresh,
        rollup=m.rollup,
        lag=m.lag,
        sync_period=cfg.controller.sync_period,
        slo_objective=cfg.slo.objective,
    )


def _rules(model: RulesModel | None) -> ScalingRules | None:
    from shiftover.scaling.hpa import ScalingPolicy, ScalingRules

    if model is None:
        return None
    return ScalingRules(
        stabilization_window_seconds=model.stabilization_window_seconds,
        select_policy=model.select_policy,
        policies=tuple(ScalingPolicy(type=p.type, value=p.value, period_seconds=p.period_seconds) for p in model.policies),
    )


def _behavior(model: BehaviorModel | None) -> Behavior | None:
    from shiftover.scaling.hpa import Behavior

    if model is None:
        return None
    return Behavior(scale_up=_rules(model.scale_up), scale_down=_rules(model.scale_down))


def hpa_spec(model: HPAModel) -> HPASpec:
    """The HPA for one deployment: External metric, AverageValue target."""
    from shiftover.scaling.hpa import HPASpec, MetricSpec, MetricTarget

    return HPASpec(
        min_replicas=model.min_replicas,
        max_replicas=model.max_replicas,
        metrics=(MetricSpec(source="External", name=model.metric, target=MetricTarget(type="AverageValue", value=model.target_per_pod)),),
        behavior=_behavior(model.behavior),
    )


def web_hpa_spec(cfg: ScalingConfig) -> HPASpec:
    return hpa_spec(cfg.web.hpa)


def worker_hpa_spec(cfg: ScalingConfig) -> HPASpec | None:
    return hpa_spec(cfg.worker.hpa) if cfg.worker is not None else None


def workloads(cfg: ScalingConfig) -> tuple[WorkloadScaling, WorkloadScaling | None]:
    """Web and worker as :mod:`shiftover.scaling.manifests` renders them."""
    from shiftover.scaling.manifests import WorkloadScaling

    def one(deployment: str, model: HPAModel) -> WorkloadScaling:
        return WorkloadScaling(
            name=deployment,
            deployment=deployment,
            hpa=hpa_spec(model),
            datadog_query=model.query or f"sum:{model.metric}{{*}}",
            metric_name=f"{deployment}-{_dns_label(model.metric)}",
        )

    web = one(cfg.web.deployment, cfg.web.hpa)
    worker = one(cfg.worker.deployment, cfg.worker.hpa) if cfg.worker is not None else None
    return web, worker


def _dns_label(text: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return label[:40].strip("-") or "metric"


def controller_constants(cfg: ScalingConfig) -> ControllerConstants:
    from shiftover.scaling.hpa import ControllerConstants

    return ControllerConstants(
        tolerance=cfg.controller.tolerance,
        downscale_stabilization_seconds=float(cfg.controller.downscale_stabilization),
        sync_period_seconds=float(cfg.controller.sync_period),
    )
