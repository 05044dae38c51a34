"""One HorizontalPodAutoscaler sync, with the controller's own arithmetic.

Why a transcription and not a model: the question this package answers ("will
the new environment keep up?") depends on details that a smooth model gets
wrong by whole pods: the controller works in milli-units and integer division,
skips a change inside the tolerance band, counts unready pods as 0 % only on a
scale-up, keeps the *highest* recommendation of the last five minutes before it
scales down, and limits a scale-up by the replicas at the start of each policy
period, read back from its own past scale events. So this module follows
kube-controller-manager's ``pkg/controller/podautoscaler`` (``horizontal.go`` and
``replica_calculator.go``, Kubernetes 1.33+) function by function; the names in
the comments are the controller's.

Two entry points:

- :func:`sync` takes every input of one sync as values (spec, current replicas,
  per-pod samples, external/object metric values, past recommendations and
  scale events with their *ages*) and returns the desired replicas plus the
  updated history. Nothing is hidden: a test can state a case exactly as the
  controller would see it.
- :class:`HPAController` is the simulator's fast path for External and Pods
  metrics: it keeps its own history by timestamp and allocates no dataclass per
  call. It shares the limit and policy code with :func:`sync`; its
  stabilisation windows are sliding maxima/minima (a property test checks that
  the two agree).

Where the controller reads the clock, this module takes ``now`` (the fast path)
or puts "now" at 0 and past events at ``-age`` (``sync``); the comparisons are
the controller's (``Before``/``After`` are strict), so a recommendation exactly
``window`` seconds old is still counted without ``behavior`` and no longer
counted with it, as in the controller.

The first sync's seed (``recordInitialRecommendation``: the current replicas) is
stamped when the reconcile starts, strictly before the cutoff that
``stabilizeRecommendation`` takes later in the same sync. So with no behavior and
a 0 s window the seed never counts (with a behavior, ``After`` is strict and a 0 s
window drops it too). In later syncs the seed carries the first sync's "now", like
that sync's own recommendation, and counts up to ``window`` seconds. This is a
choice: the controller's seed is some milliseconds older than its own
recommendation, so at exactly ``window`` seconds it would already be dropped if the
syncs came exactly ``sync_period`` apart; they do not (the queue re-adds an HPA a
sync period after its sync ends), and sub-second timing is not modelled.

Deliberate limits (documented in the README's API section): ``currentReplicas == 0``
means scaling is disabled (the ``HPAScaleToZero`` alpha gate is off), so
``minReplicas`` must be >= 1; ContainerResource metrics and metric label
selectors are not modelled; per-direction tolerances come from
:class:`ControllerConstants` (the controller reads them from
``behavior.scaleUp/scaleDown.tolerance``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from shiftover.errors import BadInput

MAX_INT32 = 2**31 - 1
MIN_INT32 = -(2**31)

MetricSource = Literal["Resource", "Pods", "Object", "External"]
TargetType = Literal["Utilization", "AverageValue", "Value"]
SelectPolicy = Literal["Max", "Min", "Disabled"]
PolicyType = Literal["Pods", "Percent"]
PodPhase = Literal["Running", "Pending", "Failed", "Succeeded"]


# --- values ------------------------------------------------------------------


@dataclass(frozen=True)
class ScalingPolicy:
    type: PolicyType
    value: int
    period_seconds: int


# The API server's defaults for behavior.scaleUp/scaleDown (GenerateHPAScaleUpRules,
# GenerateHPAScaleDownRules in pkg/apis/autoscaling/v2/defaults.go).
DEFAULT_SCALE_UP_POLICIES = (ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15))
DEFAULT_SCALE_DOWN_POLICIES = (ScalingPolicy("Percent", 100, 15),)


@dataclass(frozen=True)
class ControllerConstants:
    """kube-controller-manager's HPA flags and package variables, with their defaults."""

    tolerance: float = 0.1  # --horizontal-pod-autoscaler-tolerance
    scale_up_tolerance: float | None = None  # behavior.scaleUp.tolerance; None -> tolerance
    scale_down_tolerance: float | None = None  # behavior.scaleDown.tolerance; None -> tolerance
    scale_up_limit_factor: float = 2.0  # scaleUpLimitFactor (horizontal.go)
    scale_up_limit_minimum: int = 4  # scaleUpLimitMinimum (horizontal.go)
    # --horizontal-pod-autoscaler-downscale-stabilization
    downscale_stabilization_seconds: float = 300.0
    # --horizontal-pod-autoscaler-cpu-initialization-period
    cpu_initialization_period_seconds: float = 300.0
    # --horizontal-pod-autoscaler-initial-readiness-delay
    initial_readiness_delay_seconds: float = 30.0
    sync_period_seconds: float = 15.0  # --horizontal-pod-autoscaler-sync-period
    # The API server's defaults for an unset field of behavior.scaleUp/scaleDown
    # (pkg/apis/autoscaling/v2/defaults.go); they apply only to an HPA with a
    # behavior. Kept last so that positional construction is unchanged.
    upscale_stabilization_seconds: float = 0.0  # scaleUpStabilizationSeconds
    # scaleUpLimitMinimumPods / scaleUpLimitPercent per scaleUpPeriod (selectPolicy Max)
    upscale_policies: tuple[ScalingPolicy, ...] = DEFAULT_SCALE_UP_POLICIES
    # scaleDownLimitPercent per scaleDownPeriod (selectPolicy Max)
    downscale_policies: tuple[ScalingPolicy, ...] = DEFAULT_SCALE_DOWN_POLICIES

    def __post_init__(self) -> None:
        for name in ("tolerance", "scale_up_tolerance", "scale_down_tolerance"):
            value = getattr(self, name)
            if value is not None and not (0.0 <= value and math.isfinite(value)):
                raise BadInput(
                    f"ControllerConstants.{name}={value!r} is invalid",
                    hint="a tolerance is a fraction >= 0, e.g. 0.1 for 10%",
                )
        for name in (
            "downscale_stabilization_seconds",
            "upscale_stabilization_seconds",
            "cpu_initialization_period_seconds",
            "initial_readiness_delay_seconds",
        ):
            if getattr(self, name) < 0:
                raise BadInput(
                    f"ControllerConstants.{name} cannot be negative", hint="use seconds >= 0"
                )
        for name in ("downscale_stabilization_seconds", "upscale_stabilization_seconds"):
            if not math.isfinite(getattr(self, name)):
                raise BadInput(
                    f"ControllerConstants.{name} must be finite",
                    hint="the window is int32 seconds",
                )
        for name in ("upscale_policies", "downscale_policies"):
            policies = tuple(getattr(self, name))
            object.__setattr__(self, name, policies)
            if not policies:
                raise BadInput(
                    f"ControllerConstants.{name} is empty",
                    hint="give at least one ScalingPolicy, as the API server's defaults do",
                )
            _check_policies(f"ControllerConstants.{name}", policies)
        if self.sync_period_seconds <= 0:
            raise BadInput(
                "ControllerConstants.sync_period_seconds must be > 0",
                hint="the controller default is 15",
            )

    @property
    def tolerances(self) -> tuple[float, float]:
        """(scale-down, scale-up) tolerance, as ``Tolerances`` in replica_calculator.go."""
        down = self.tolerance if self.scale_down_tolerance is None else self.scale_down_tolerance
        up = self.tolerance if self.scale_up_tolerance is None else self.scale_up_tolerance
        return down, up


@dataclass(frozen=True)
class MetricTarget:
    """``Utilization`` is a percent of the pods' requests (Resource only); the others are quantities."""

    type: TargetType
    value: float


@dataclass(frozen=True)
class MetricSpec:
    """One entry of ``spec.metrics``. ``name`` is the resource (``cpu``) or the metric name."""

    source: MetricSource
    name: str
    target: MetricTarget


@dataclass(frozen=True)
class ScalingRules:
    """``behavior.scaleUp``/``scaleDown``. None / () take the API server's defaults."""

    stabilization_window_seconds: int | None = None
    select_policy: SelectPolicy = "Max"
    policies: tuple[ScalingPolicy, ...] = ()


@dataclass(frozen=True)
class Behavior:
    """``spec.behavior``; a None side takes Kubernetes' defaults.

    scaleUp: 0 s window, Max of (4 pods / 15 s, 100 % / 15 s).
    scaleDown: the controller's downscale window (300 s), 100 % / 15 s.
    The windows and policies come from :class:`ControllerConstants`
    (``upscale_stabilization_seconds``, ``upscale_policies``,
    ``downscale_stabilization_seconds``, ``downscale_policies``).
    """

    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None


@dataclass(frozen=True)
class HPASpec:
    min_replicas: int
    max_replicas: int
    metrics: tuple[MetricSpec, ...]
    behavior: Behavior | None = None

    def __post_init__(self) -> None:
        validate_spec(self)


@dataclass(frozen=True)
class PodSample:
    """One pod as the controller sees it.

    ``ready_age_seconds`` is the age of the Ready condition's lastTransitionTime
    (when it last became Ready, or last became unready if it is not Ready now);
    None means the pod has no Ready condition yet. ``metrics`` are per-pod metric
    values in the metric's units (Resource: usage, e.g. cores for ``cpu``),
    ``requests`` the resource requests in the same units. ``metric_age_seconds``
    and ``metric_window_seconds`` are the resource metric sample's timestamp age
    and window (metrics-server reports a 15 s window by default); they only matter
    for CPU during the initialization period.
    """

    ready: bool
    age_seconds: float
    ready_age_seconds: float | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    requests: Mapping[str, float] = field(default_factory=dict)
    phase: PodPhase = "Running"
    deleting: bool = False
    metric_age_seconds: float = 0.0
    metric_window_seconds: float = 15.0


@dataclass(frozen=True)
class Recommendation:
    replicas: int
    age_seconds: float


@dataclass(frozen=True)
class ScaleEvent:
    """A past rescale. ``replica_change`` is +n up, -n down (its size is what counts)."""

    replica_change: int
    age_seconds: float


@dataclass(frozen=True)
class SyncInput:
    """Everything one sync reads. Ages are seconds before this sync.

    An empty ``recommendations`` is the HPA's first sync (the controller then
    records ``current_replicas`` now). Scale events are in the controller's list
    order (it overwrites the last outdated one): pass back the order
    :class:`SyncResult` gives.
    """

    spec: HPASpec
    current_replicas: int
    pods: tuple[PodSample, ...] = ()
    external_metrics: Mapping[str, Sequence[float]] = field(default_factory=dict)
    object_metrics: Mapping[str, float] = field(default_factory=dict)
    recommendations: tuple[Recommendation, ...] = ()
    scale_up_events: tuple[ScaleEvent, ...] = ()
    scale_down_events: tuple[ScaleEvent, ...] = ()


@dataclass(frozen=True)
class MetricStatus:
    """One entry of ``status.currentMetrics``, as computeStatusFor*Metric writes it.

    Quantities are in the metric's units (the controller's milli-quantities / 1000):

    - Resource Utilization: ``average_utilization`` (integer percent of the ready
      pods' requests) and ``average_value`` (their mean usage);
    - Resource and Pods AverageValue: ``average_value``, the ready pods' mean;
    - External/Object Value: ``value`` (External: the series summed);
    - External/Object AverageValue: ``average_value``, that total over
      ``status.replicas``, rounded up to 1m.

    Values are those of the first pass, before missing or unready pods are filled
    in. A metric that failed leaves the zero entry: ``source`` and ``name`` are ""
    and every value is None (the controller writes ``{type: ""}``).
    """

    source: MetricSource | Literal[""]
    name: str
    average_utilization: int | None = None
    average_value: float | None = None
    value: float | None = None


_FAILED_STATUS = MetricStatus("", "")


@dataclass(frozen=True)
class SyncResult:
    """What one sync decided.

    ``reason`` is the controller's condition reason that explains the number:
    a ScalingLimited reason when a limit applied (ScaleUpLimit, TooManyReplicas,
    TooFewReplicas, ScaleDownLimit), else the stabilisation reason when it applied
    (ScaleDownStabilized, ScaleUpStabilized), else DesiredWithinRange; or
    ScalingDisabled (current replicas 0), CurrentAboveMax / CurrentBelowMin (the
    controller's "Current number of replicas above Spec.MaxReplicas" paths),
    FailedComputeMetricsReplicas (no usable metric: nothing changes).
    ``able_to_scale`` is False when the controller took no decision (scaling
    disabled, or metrics failed). Histories have ages relative to this sync.
    ``current_metrics`` is what the controller writes to ``status.currentMetrics``:
    one :class:`MetricStatus` per spec metric, in order, whenever it computed them
    (also when they all failed); empty when it read no metric (ScalingDisabled,
    CurrentAboveMax, CurrentBelowMin).
    """

    desired_replicas: int
    metric_proposals: tuple[tuple[str, int], ...]
    recommendations: tuple[Recommendation, ...]
    reason: str
    able_to_scale: bool = True
    message: str = ""
    scale_up_events: tuple[ScaleEvent, ...] = ()
    scale_down_events: tuple[ScaleEvent, ...] = ()
    metric_errors: tuple[tuple[str, str], ...] = ()
    current_metrics: tuple[MetricStatus, ...] = ()

    def aged(self, seconds: float) -> SyncResult:
        """The same result with every history entry ``seconds`` older (for the next sync)."""
        return SyncResult(
            desired_replicas=self.desired_replicas,
            metric_proposals=self.metric_proposals,
            recommendations=tuple(
                Recommendation(r.replicas, r.age_seconds + seconds) for r in self.recommendations
            ),
            reason=self.reason,
            able_to_scale=self.able_to_scale,
            message=self.message,
            scale_up_events=tuple(
                ScaleEvent(e.replica_change, e.age_seconds + seconds) for e in self.scale_up_events
            ),
            scale_down_events=tuple(
                ScaleEvent(e.replica_change, e.age_seconds + seconds)
                for e in self.scale_down_events
            ),
            metric_errors=self.metric_errors,
            current_metrics=self.current_metrics,
        )


# --- validation ----------------------------------------------------------------


def validate_spec(spec: HPASpec) -> None:
    """Reject what the API server would reject (and what this module does not model)."""
    where = "HPASpec"
    if spec.min_replicas < 1:
        raise BadInput(
            f"{where}.min_replicas={spec.min_replicas}: must be >= 1",
            hint="minReplicas 0 needs the HPAScaleToZero alpha feature gate, which is not modelled",
        )
    if spec.max_replicas < spec.min_replicas:
        raise BadInput(
            f"{where}.max_replicas={spec.max_replicas} is below min_replicas={spec.min_replicas}",
            hint="set max_replicas >= min_replicas",
        )
    if not spec.metrics:
        raise BadInput(f"{where}.metrics is empty", hint="give at least one MetricSpec")
    for i, m in enumerate(spec.metrics):
        w = f"{where}.metrics[{i}] ({m.source} {m.name!r})"
        if m.source not in ("Resource", "Pods", "Object", "External"):
            raise BadInput(f"{w}: unknown source", hint="use Resource, Pods, Object or External")
        allowed: tuple[str, ...] = {
            "Resource": ("Utilization", "AverageValue"),
            "Pods": ("AverageValue",),
            "Object": ("Value", "AverageValue"),
            "External": ("Value", "AverageValue"),
        }[m.source]
        if m.target.type not in allowed:
            raise BadInput(
                f"{w}: target type {m.target.type} is not allowed",
                hint=f"use one of {', '.join(allowed)}",
            )
        if not (math.isfinite(m.target.value) and m.target.value > 0):
            raise BadInput(
                f"{w}: target value {m.target.value!r} must be > 0", hint="targets are positive"
            )
        if m.target.type == "Utilization" and m.target.value != int(m.target.value):
            raise BadInput(
                f"{w}: averageUtilization {m.target.value} must be a whole percent", hint="e.g. 70"
            )
        if m.target.type != "Utilization" and _milli(m.target.value) <= 0:
            raise BadInput(
                f"{w}: target {m.target.value!r} is below 1m",
                hint="quantities have milli resolution",
            )
    if spec.behavior is not None:
        for side, rules in (
            ("scale_up", spec.behavior.scale_up),
            ("scale_down", spec.behavior.scale_down),
        ):
            if rules is None:
                continue
            w = f"{where}.behavior.{side}"
            if rules.select_policy not in ("Max", "Min", "Disabled"):
                raise BadInput(
                    f"{w}.select_policy={rules.select_policy!r}", hint="use Max, Min or Disabled"
                )
            win = rules.stabilization_window_seconds
            if win is not None and not (0 <= win <= 3600):
                raise BadInput(f"{w}.stabilization_window_seconds={win}", hint="must be 0..3600")
            _check_policies(f"{w}.policies", rules.policies)


def _check_policies(where: str, policies: Sequence[ScalingPolicy]) -> None:
    """validateScalingPolicy, for each policy."""
    for j, p in enumerate(policies):
        if p.type not in ("Pods", "Percent"):
            raise BadInput(f"{where}[{j}].type={p.type!r}", hint="use Pods or Percent")
        if p.value <= 0:
            raise BadInput(f"{where}[{j}].value={p.value}", hint="must be > 0")
        if not (0 < p.period_seconds <= 1800):
            raise BadInput(
                f"{where}[{j}].period_seconds={p.period_seconds}",
                hint="must be 1..1800",
            )


# --- the controller's arithmetic -------------------------------------------------


def _milli(value: float) -> int:
    """resource.Quantity.MilliValue(): milli-units, rounded up (away from zero).

    A float like 0.1 is read as the decimal the user wrote (100m), not as its
    binary expansion: that is what a quantity in YAML would be.
    """
    x = value * 1000.0
    if x >= 0.0:
        f = math.floor(x)
        return f if x - f <= 1e-9 * (x if x > 1.0 else 1.0) else f + 1
    return -_milli(-value)


def _go_div(a: int, b: int) -> int:
    """Go's int64 division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _fdiv(a: float, b: float) -> float:
    """float64 division with Go's IEEE results for a zero divisor."""
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.inf if a > 0 else -math.inf
    return a / b


def _ceil_i32(x: float) -> int:
    if x > MAX_INT32:
        return MAX_INT32
    return math.ceil(x)


class _MetricError(Exception):
    """A metric the controller could not compute (it counts as an invalid metric)."""


def _plain_replicas(
    current: int,
    target: int,
    down: float,
    up: float,
    total: int,
    n_metrics: int,
    ready_count: int,
    n_unready: int,
    n_missing: int,
) -> int:
    """calcPlainMetricReplicas, on aggregates (substituted values are uniform per group)."""
    usage = _go_div(total, n_metrics)  # GetMetricUsageRatio
    ratio = usage / target
    scale_up_with_unready = n_unready > 0 and ratio > 1.0
    if not scale_up_with_unready and n_missing == 0:
        if (1.0 - down) <= ratio <= (1.0 + up):
            return current
        return _ceil_i32(ratio * ready_count)
    if n_missing > 0:
        if ratio < 1.0:  # scale-down: missing pods use exactly the target
            total += target * n_missing
            n_metrics += n_missing
        elif ratio > 1.0:  # scale-up: missing pods use 0
            n_metrics += n_missing
    if scale_up_with_unready:
        n_metrics += n_unready
    new_ratio = _go_div(total, n_metrics) / target
    if (
        (1.0 - down) <= new_ratio <= (1.0 + up)
        or (ratio < 1.0 < new_ratio)
        or (ratio > 1.0 > new_ratio)
    ):
        return current
    new_replicas = _ceil_i32(new_ratio * n_metrics)
    if (new_ratio < 1.0 and new_replicas > current) or (new_ratio > 1.0 and new_replicas < current):
        return current
    return new_replicas


def _usage_ratio_replicas(
    current: int, ratio: float, down: float, up: float, ready_pods: int | None
) -> int:
    """getUsageRatioReplicaCount (External/Object Value targets)."""
    if current != 0:
        if (1.0 - down) <= ratio <= (1.0 + up):
            return current
        if ready_pods is None:
            raise _MetricError(
                "unable to calculate ready pods: no pods returned by selector while calculating replica count"
            )
        return _ceil_i32(ratio * ready_pods)
    return _ceil_i32(ratio)


def _per_pod_replicas(status_replicas: int, usage: int, target: int, down: float, up: float) -> int:
    """GetExternalPerPodMetricReplicas / GetObjectPerPodMetricReplicas (AverageValue targets)."""
    ratio = _fdiv(float(usage), float(target) * float(status_replicas))
    if not ((1.0 - down) <= ratio <= (1.0 + up)):
        return _ceil_i32(usage / target)
    return status_replicas


# --- normalisation (shared by sync and HPAController) ------------------------------

_History = deque[tuple[float, int]]
_Events = list[
    tuple[float, int]
]  # (timestamp, pods added or removed), in the controller's list order


class _Normalizer:
    """normalizeDesiredReplicas / normalizeDesiredReplicasWithBehaviors and their helpers.

    Recommendations are deques of ``(timestamp, replicas)`` in time order;
    entries that can no longer count are dropped (the controller overwrites
    them instead, which gives the same answers). Scale events are lists kept
    and overwritten exactly as storeScaleEvent does (see :meth:`store_event`).
    """

    __slots__ = (
        "behavior",
        "down_longest",
        "down_policies",
        "down_select",
        "down_window",
        "factor",
        "max_replicas",
        "min_replicas",
        "minimum",
        "nb_window",
        "up_longest",
        "up_policies",
        "up_select",
        "up_window",
    )

    def __init__(self, spec: HPASpec, constants: ControllerConstants) -> None:
        self.min_replicas = spec.min_replicas
        self.max_replicas = spec.max_replicas
        self.factor = float(constants.scale_up_limit_factor)
        self.minimum = float(constants.scale_up_limit_minimum)
        self.nb_window = float(constants.downscale_stabilization_seconds)
        self.behavior = spec.behavior is not None
        up = _default_scale_up(spec.behavior.scale_up if spec.behavior else None, constants)
        down = _default_scale_down(spec.behavior.scale_down if spec.behavior else None, constants)
        assert (
            up.stabilization_window_seconds is not None
            and down.stabilization_window_seconds is not None
        )
        self.up_window = float(up.stabilization_window_seconds)
        self.down_window = float(down.stabilization_window_seconds)
        self.up_select = up.select_policy
        self.down_select = down.select_policy
        self.up_policies = tuple(
            (p.type == "Pods", p.value, float(p.period_seconds)) for p in up.policies
        )
        self.down_policies = tuple(
            (p.type == "Pods", p.value, float(p.period_seconds)) for p in down.policies
        )
        self.up_longest = max((p.period_seconds for p in up.policies), default=0)
        self.down_longest = max((p.period_seconds for p in down.policies), default=0)

    def normalize(
        self, now: float, current: int, pre: int, recs: _History, ups: _Events, downs: _Events
    ) -> tuple[int, str, str]:
        """Returns (desired, reason, message) and records the recommendation."""
        if not self.behavior:
            return self._normalize_plain(now, current, pre, recs)
        return self._normalize_behavior(now, current, pre, recs, ups, downs)

    def _normalize_plain(
        self, now: float, current: int, pre: int, recs: _History
    ) -> tuple[int, str, str]:
        # stabilizeRecommendation: max of the recommendations not Before(now - window)
        cutoff = now - self.nb_window
        while recs and recs[0][0] < cutoff:
            recs.popleft()
        stabilized = pre
        for _, v in recs:
            if v > stabilized:
                stabilized = v
        recs.append((now, pre))
        return self.apply_rules(current, pre, stabilized)

    def apply_rules(self, current: int, pre: int, stabilized: int) -> tuple[int, str, str]:
        """convertDesiredReplicasWithRules (no behavior) and the condition reasons."""
        scale_up_limit = int(max(self.factor * current, self.minimum))
        if self.max_replicas > scale_up_limit:
            maximum, limit_reason = scale_up_limit, "ScaleUpLimit"
            limit_msg = "the desired replica count is increasing faster than the maximum scale rate"
        else:
            maximum, limit_reason = self.max_replicas, "TooManyReplicas"
            limit_msg = "the desired replica count is more than the maximum replica count"
        if stabilized < self.min_replicas:
            return (
                self.min_replicas,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        if stabilized > maximum:
            return maximum, limit_reason, limit_msg
        if stabilized != pre:
            return (
                stabilized,
                "ScaleDownStabilized",
                "recent recommendations were higher than current one, applying the highest recent recommendation",
            )
        return stabilized, "DesiredWithinRange", "the desired count is within the acceptable range"

    def _normalize_behavior(
        self, now: float, current: int, pre: int, recs: _History, ups: _Events, downs: _Events
    ) -> tuple[int, str, str]:
        # stabilizeRecommendationWithBehaviors
        up_cut = now - self.up_window
        down_cut = now - self.down_window
        old_cut = up_cut if up_cut < down_cut else down_cut
        while recs and recs[0][0] < old_cut:
            recs.popleft()
        up_rec = pre
        down_rec = pre
        for t, v in recs:
            if t > up_cut and v < up_rec:
                up_rec = v
            if t > down_cut and v > down_rec:
                down_rec = v
        stabilized = current
        if stabilized < up_rec:
            stabilized = up_rec
        if stabilized > down_rec:
            stabilized = down_rec
        recs.append((now, pre))
        return self.apply_rate(now, current, pre, stabilized, ups, downs)

    def apply_rate(
        self, now: float, current: int, pre: int, stabilized: int, ups: _Events, downs: _Events
    ) -> tuple[int, str, str]:
        """convertDesiredReplicasWithBehaviorRate and the condition reasons."""
        if stabilized > current:
            limit = self._scale_up_limit(now, current, ups, downs)
            if limit < current:
                limit = current
            maximum = self.max_replicas
            if maximum > limit:
                maximum, reason = limit, "ScaleUpLimit"
                msg = "the desired replica count is increasing faster than the maximum scale rate"
            else:
                reason, msg = (
                    "TooManyReplicas",
                    "the desired replica count is more than the maximum replica count",
                )
            if stabilized > maximum:
                return maximum, reason, msg
        elif stabilized < current:
            limit = self._scale_down_limit(now, current, ups, downs)
            if limit > current:
                limit = current
            minimum = self.min_replicas
            if minimum < limit:
                minimum, reason = limit, "ScaleDownLimit"
                msg = "the desired replica count is decreasing faster than the maximum scale rate"
            else:
                reason, msg = (
                    "TooFewReplicas",
                    "the desired replica count is less than the minimum replica count",
                )
            if stabilized < minimum:
                return minimum, reason, msg
        if stabilized != pre:
            if pre >= current:
                return (
                    stabilized,
                    "ScaleUpStabilized",
                    "recent recommendations were lower than current one, applying the lowest recent recommendation",
                )
            return (
                stabilized,
                "ScaleDownStabilized",
                "recent recommendations were higher than current one, applying the highest recent recommendation",
            )
        return stabilized, "DesiredWithinRange", "the desired count is within the acceptable range"

    @staticmethod
    def _changed(cutoff: float, events: _Events) -> int:
        """getReplicasChangePerPeriod."""
        n = 0
        for t, c in events:
            if t > cutoff:
                n += c
        return n

    def _scale_up_limit(self, now: float, current: int, ups: _Events, downs: _Events) -> int:
        """calculateScaleUpLimitWithScalingRules."""
        if self.up_select == "Disabled":
            return current
        use_min = self.up_select == "Min"
        result = MAX_INT32 if use_min else MIN_INT32
        for is_pods, value, period in self.up_policies:
            cutoff = now - period
            start = current - self._changed(cutoff, ups) + self._changed(cutoff, downs)
            if is_pods:
                proposed = start + value
            else:
                proposed = math.ceil(float(start) * (1 + float(value) / 100))
            result = min(result, proposed) if use_min else max(result, proposed)
        return result

    def _scale_down_limit(self, now: float, current: int, ups: _Events, downs: _Events) -> int:
        """calculateScaleDownLimitWithBehaviors."""
        if self.down_select == "Disabled":
            return current
        use_min = self.down_select == "Min"  # the smallest change = the largest replica count
        result = MIN_INT32 if use_min else MAX_INT32
        for is_pods, value, period in self.down_policies:
            cutoff = now - period
            start = current - self._changed(cutoff, ups) + self._changed(cutoff, downs)
            if is_pods:
                proposed = start - value
            else:
                proposed = int(float(start) * (1 - float(value) / 100))
            result = max(result, proposed) if use_min else min(result, proposed)
        return result

    def store_event(
        self, now: float, current: int, desired: int, ups: _Events, downs: _Events
    ) -> None:
        """storeScaleEvent: only with a behavior; replaces the last outdated event, else appends.

        An event is outdated once it is older than the longest policy period of
        its own direction (markScaleEventsOutdated). It is kept until replaced,
        and it still counts in the other direction's limits while it lies within
        one of their periods: hence lists, not pruned queues.
        """
        if not self.behavior:
            return
        if desired > current:
            events, change, longest = ups, desired - current, self.up_longest
        else:
            events, change, longest = downs, current - desired, self.down_longest
        cutoff = now - longest
        for i in range(len(events) - 1, -1, -1):
            if events[i][0] < cutoff:
                events[i] = (now, change)
                return
        events.append((now, change))


def _default_scale_up(rules: ScalingRules | None, constants: ControllerConstants) -> ScalingRules:
    """GenerateHPAScaleUpRules: the unset fields take the API server's defaults.

    Defaults (from ``constants``): 0 s window, 4 pods/15 s and 100 %/15 s; an
    unset selectPolicy is Max (:class:`ScalingRules` defaults to it).
    """
    window = int(constants.upscale_stabilization_seconds)  # int32 seconds
    if rules is None:
        return ScalingRules(window, "Max", constants.upscale_policies)
    return ScalingRules(
        window
        if rules.stabilization_window_seconds is None
        else rules.stabilization_window_seconds,
        rules.select_policy,
        rules.policies or constants.upscale_policies,
    )


def _default_scale_down(rules: ScalingRules | None, constants: ControllerConstants) -> ScalingRules:
    """GenerateHPAScaleDownRules + maybeInitScaleDownStabilizationWindow (int32 seconds).

    Defaults (from ``constants``): the controller's downscale window (300 s),
    100 %/15 s; an unset selectPolicy is Max.
    """
    window = int(constants.downscale_stabilization_seconds)
    if rules is None:
        return ScalingRules(window, "Max", constants.downscale_policies)
    return ScalingRules(
        window
        if rules.stabilization_window_seconds is None
        else rules.stabilization_window_seconds,
        rules.select_policy,
        rules.policies or constants.downscale_policies,
    )


# --- sync(): every input as values ---------------------------------------------------


def _is_ignored(p: PodSample) -> bool:
    """groupPods' ignoredPods: being deleted, or Failed. A Succeeded pod is *not* ignored:
    it goes through the readiness and CPU rules like a Running one."""
    return p.deleting or p.phase == "Failed"


def _is_active(p: PodSample) -> bool:
    """Counted in scale.status.replicas (the ReplicaSet controller's FilterActivePods)."""
    return not (p.deleting or p.phase in ("Failed", "Succeeded"))


def _cpu_unready(p: PodSample, c: ControllerConstants) -> bool:
    """groupPods' CPU rule, with now = 0 and past instants at -age."""
    if p.ready_age_seconds is None:
        return True  # no Ready condition
    start = -p.age_seconds
    transition = -p.ready_age_seconds
    if start + c.cpu_initialization_period_seconds > 0.0:
        # within the initialisation period: unready, or no full metric window since the transition
        metric_ts = -p.metric_age_seconds
        return (not p.ready) or metric_ts < transition + p.metric_window_seconds
    # afterwards: ignore only a pod that is unready and has never been ready
    return (not p.ready) and start + c.initial_readiness_delay_seconds > transition


def _group_pods(
    pods: Sequence[PodSample], name: str, is_cpu: bool, c: ControllerConstants
) -> tuple[list[int], list[int], list[int]]:
    """groupPods: indices of (ready-with-metric, unready, missing) pods; ignored pods are left out."""
    ready: list[int] = []
    unready: list[int] = []
    missing: list[int] = []
    for i, p in enumerate(pods):
        if _is_ignored(p):
            continue
        if p.phase == "Pending":
            unready.append(i)
            continue
        if name not in p.metrics:
            missing.append(i)
            continue
        if is_cpu and _cpu_unready(p, c):
            unready.append(i)
            continue
        ready.append(i)
    return ready, unready, missing


def _ready_pods(pods: Sequence[PodSample]) -> int | None:
    """getReadyPodsCount: Running and Ready; None when the selector returns no pods."""
    if not pods:
        return None
    return sum(1 for p in pods if p.phase == "Running" and p.ready)


def _resource_replicas(
    inp: SyncInput, m: MetricSpec, c: ControllerConstants, down: float, up: float
) -> tuple[int, MetricStatus]:
    pods = inp.pods
    if not any(m.name in p.metrics for p in pods):
        raise _MetricError(
            f"unable to get metrics for resource {m.name}: no metrics returned from resource metrics API"
        )
    is_cpu = m.name == "cpu"
    ready, unready, missing = _group_pods(pods, m.name, is_cpu, c)
    if not ready:
        raise _MetricError("did not receive metrics for targeted pods (pods might be unready)")
    value = {i: _milli(pods[i].metrics[m.name]) for i in ready}
    current = inp.current_replicas
    if m.target.type == "AverageValue":
        # GetRawResourceReplicas -> calcPlainMetricReplicas: requests are never read
        total = sum(value.values())
        proposal = _plain_replicas(
            current,
            _milli(m.target.value),
            down,
            up,
            total,
            len(value),
            len(ready),
            len(unready),
            len(missing),
        )
        return proposal, MetricStatus(
            "Resource", m.name, average_value=_go_div(total, len(value)) / 1000.0
        )

    # GetResourceReplicas: calculateRequests covers every pod the selector returns
    for i, p in enumerate(pods):
        if m.name not in p.requests:
            raise _MetricError(f"missing request for {m.name} in pod #{i}")
    request = [_milli(p.requests[m.name]) for p in pods]
    target_util = int(m.target.value)

    def ratio_of(vals: Mapping[int, int]) -> float:
        # GetResourceUtilizationRatio: integer percent of the summed requests
        metrics_total = sum(vals.values())
        requests_total = sum(request[i] for i in vals)
        if requests_total == 0:
            raise _MetricError("no metrics returned matched known pods")
        return _go_div(metrics_total * 100, requests_total) / target_util

    ratio = ratio_of(value)
    # the status is the first pass's: utilization and mean usage of the ready pods
    total = sum(value.values())
    status = MetricStatus(
        "Resource",
        m.name,
        average_utilization=_go_div(total * 100, sum(request[i] for i in value)),
        average_value=_go_div(total, len(value)) / 1000.0,
    )
    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if (1.0 - down) <= ratio <= (1.0 + up):
            return current, status
        return _ceil_i32(ratio * len(ready)), status
    if missing:
        if ratio < 1.0:
            # scale-down: missing pods at 100 % of their request (or the target if above 100 %)
            fallback = max(100, target_util)
            for i in missing:
                value[i] = _go_div(request[i] * fallback, 100)
        elif ratio > 1.0:
            for i in missing:
                value[i] = 0
    if scale_up_with_unready:
        for i in unready:
            value[i] = 0
    new_ratio = ratio_of(value)
    if (
        (1.0 - down) <= new_ratio <= (1.0 + up)
        or (ratio < 1.0 < new_ratio)
        or (ratio > 1.0 > new_ratio)
    ):
        return current, status
    new_replicas = _ceil_i32(new_ratio * len(value))
    if (new_ratio < 1.0 and new_replicas > current) or (new_ratio > 1.0 and new_replicas < current):
        return current, status
    return new_replicas, status


def _pods_replicas(
    inp: SyncInput, m: MetricSpec, c: ControllerConstants, down: float, up: float
) -> tuple[int, MetricStatus]:
    pods = inp.pods
    if not any(m.name in p.metrics for p in pods):
        raise _MetricError(
            f"unable to get metric {m.name}: no metrics returned from custom metrics API"
        )
    ready, unready, missing = _group_pods(pods, m.name, False, c)
    if not ready:
        raise _MetricError("did not receive metrics for targeted pods (pods might be unready)")
    total = sum(_milli(pods[i].metrics[m.name]) for i in ready)
    proposal = _plain_replicas(
        inp.current_replicas,
        _milli(m.target.value),
        down,
        up,
        total,
        len(ready),
        len(ready),
        len(unready),
        len(missing),
    )
    return proposal, MetricStatus("Pods", m.name, average_value=_go_div(total, len(ready)) / 1000.0)


def _status_replicas(inp: SyncInput) -> int:
    """scale.status.replicas: active pods; with no pods given, the spec's replicas."""
    if not inp.pods:
        return inp.current_replicas
    return sum(1 for p in inp.pods if _is_active(p))


def _metric_replicas(
    inp: SyncInput, m: MetricSpec, c: ControllerConstants
) -> tuple[int, MetricStatus]:
    """computeStatusFor*Metric: the proposal and the metric's status entry."""
    down, up = c.tolerances
    if m.source == "Resource":
        return _resource_replicas(inp, m, c, down, up)
    if m.source == "Pods":
        return _pods_replicas(inp, m, c, down, up)
    if m.source == "External":
        series = inp.external_metrics.get(m.name)
        if not series:
            raise _MetricError(
                f"unable to get external metric {m.name}: no metrics returned from external metrics API"
            )
        usage = sum(_milli(v) for v in series)
    else:
        if m.name not in inp.object_metrics:
            raise _MetricError(f"unable to get metric {m.name}: no value given in object_metrics")
        usage = _milli(inp.object_metrics[m.name])
    target = _milli(m.target.value)
    if m.target.type == "AverageValue":
        status_replicas = _status_replicas(inp)
        proposal = _per_pod_replicas(status_replicas, usage, target, down, up)
        # int64(ceil(usage / status.replicas)); with 0 replicas Go converts Inf/NaN, which
        # is undefined: no value is given then
        average = math.ceil(usage / status_replicas) / 1000.0 if status_replicas else None
        return proposal, MetricStatus(m.source, m.name, average_value=average)
    proposal = _usage_ratio_replicas(
        inp.current_replicas, usage / target, down, up, _ready_pods(inp.pods)
    )
    return proposal, MetricStatus(m.source, m.name, value=usage / 1000.0)


def _check_input(inp: SyncInput) -> None:
    if inp.current_replicas < 0:
        raise BadInput(
            f"SyncInput.current_replicas={inp.current_replicas} is negative",
            hint="use the scale's spec.replicas",
        )
    histories: tuple[tuple[str, Sequence[Recommendation | ScaleEvent]], ...] = (
        ("recommendations", inp.recommendations),
        ("scale_up_events", inp.scale_up_events),
        ("scale_down_events", inp.scale_down_events),
    )
    for name, items in histories:
        for i, item in enumerate(items):
            age = item.age_seconds
            if not (age >= 0 and math.isfinite(age)):
                raise BadInput(
                    f"SyncInput.{name}[{i}].age_seconds={age!r}", hint="ages are seconds >= 0"
                )
    for name, series in inp.external_metrics.items():
        if any(not math.isfinite(v) for v in series):
            raise BadInput(f"external metric {name!r} has a non-finite value", hint="pass numbers")


def sync(inp: SyncInput, constants: ControllerConstants = ControllerConstants()) -> SyncResult:
    """One HPA sync (reconcileAutoscaler) on the given inputs; see the module docstring."""
    _check_input(inp)
    spec = inp.spec
    norm = _Normalizer(spec, constants)
    recs: _History = deque(sorted((-r.age_seconds, r.replicas) for r in inp.recommendations))
    ups: _Events = [(-e.age_seconds, abs(e.replica_change)) for e in inp.scale_up_events]
    downs: _Events = [(-e.age_seconds, abs(e.replica_change)) for e in inp.scale_down_events]
    current = inp.current_replicas
    first_sync = not recs
    if first_sync:
        recs.append((0.0, current))  # recordInitialRecommendation

    def result(
        desired: int,
        reason: str,
        message: str,
        *,
        able: bool = True,
        proposals: tuple[tuple[str, int], ...] = (),
        errors: tuple[tuple[str, str], ...] = (),
        statuses: tuple[MetricStatus, ...] = (),
    ) -> SyncResult:
        return SyncResult(
            desired_replicas=desired,
            metric_proposals=proposals,
            recommendations=tuple(Recommendation(v, 0.0 - t) for t, v in recs),
            reason=reason,
            able_to_scale=able,
            message=message,
            scale_up_events=tuple(ScaleEvent(n, 0.0 - t) for t, n in ups),
            scale_down_events=tuple(ScaleEvent(-n, 0.0 - t) for t, n in downs),
            metric_errors=errors,
            current_metrics=statuses,
        )

    if current == 0:
        return result(
            0,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
            able=False,
        )
    if current > spec.max_replicas or current < spec.min_replicas:
        desired = spec.max_replicas if current > spec.max_replicas else spec.min_replicas
        norm.store_event(0.0, current, desired, ups, downs)
        if current > spec.max_replicas:
            return result(
                desired, "CurrentAboveMax", "Current number of replicas above Spec.MaxReplicas"
            )
        return result(
            desired, "CurrentBelowMin", "Current number of replicas below Spec.MinReplicas"
        )

    # computeReplicasForMetrics: the largest valid proposal
    proposals: list[tuple[str, int]] = []
    errors: list[tuple[str, str]] = []
    statuses: list[MetricStatus] = []
    replicas = 0
    for m in spec.metrics:
        try:
            proposal, status = _metric_replicas(inp, m, constants)
        except _MetricError as exc:
            errors.append((m.name, str(exc)))
            statuses.append(_FAILED_STATUS)
            continue
        statuses.append(status)
        proposals.append((m.name, proposal))
        if replicas == 0 or proposal > replicas:
            replicas = proposal
    if len(errors) >= len(spec.metrics) or (errors and replicas < current):
        first = errors[0][1]
        return result(
            current,
            "FailedComputeMetricsReplicas",
            f"invalid metrics ({len(errors)} invalid out of {len(spec.metrics)}), first error is: {first}",
            able=False,
            proposals=tuple(proposals),
            errors=tuple(errors),
            statuses=tuple(statuses),
        )
    if first_sync and not norm.behavior and norm.nb_window <= 0:
        # the seed is stamped when the sync starts, so it is Before(now - 0 s): ignored,
        # and stabilizeRecommendation overwrites it with this sync's recommendation
        recs.popleft()
    desired, reason, message = norm.normalize(0.0, current, max(0, replicas), recs, ups, downs)
    if desired != current:
        norm.store_event(0.0, current, desired, ups, downs)
    return result(
        desired,
        reason,
        message,
        proposals=tuple(proposals),
        errors=tuple(errors),
        statuses=tuple(statuses),
    )


# --- the simulator's fast path ----------------------------------------------------------


class HPAController:
    """One HPA over time, for External and Pods (AverageValue) metrics.

    ``step(now, ...)`` is one sync at time ``now`` (seconds, increasing). The
    controller keeps recommendations and scale events by timestamp, as
    kube-controller-manager does in memory. Inputs:

    - ``current_replicas``: the scale's spec.replicas (also used as status.replicas
      and as the number of pods the selector returns);
    - ``ready_replicas``: pods Running and Ready;
    - ``external_values``: External metric name -> its value (already summed
      over series); a missing name is a failed metric;
    - ``pods_values``: Pods metric name -> the per-pod value on each Ready pod.
      The other ``current - ready`` pods count as Pending (not started), which
      the controller leaves out of the average and counts as 0 on a scale-up.

    ``last_reason`` holds the reason of the last step (see :class:`SyncResult`).

    Speed: the stabilisation windows are sliding-window maxima/minima kept in
    monotonic deques (O(1) amortised per step) instead of the controller's scan
    over every recommendation; the answers are the same.
    """

    def __init__(
        self, spec: HPASpec, constants: ControllerConstants = ControllerConstants()
    ) -> None:
        validate_spec(spec)
        # (kind, name, target in milli); kind 0 External Value, 1 External AverageValue, 2 Pods
        metrics: list[tuple[int, str, int]] = []
        for m in spec.metrics:
            if m.source == "External":
                metrics.append(
                    (0 if m.target.type == "Value" else 1, m.name, _milli(m.target.value))
                )
            elif m.source == "Pods":
                metrics.append((2, m.name, _milli(m.target.value)))
            else:
                raise BadInput(
                    f"HPAController supports External and Pods metrics, not {m.source} ({m.name!r})",
                    hint="use shiftover.scaling.hpa.sync() for Resource and Object metrics",
                )
        self.spec = spec
        self.constants = constants
        self._metrics = tuple(metrics)
        self._n_metrics = len(metrics)
        self._min = spec.min_replicas
        self._max = spec.max_replicas
        self._down, self._up = constants.tolerances
        self._norm = _Normalizer(spec, constants)
        self._behavior = self._norm.behavior
        # recommendations: max over the scale-down window, min over the scale-up window
        self._maxq: _History = deque()
        self._minq: _History = deque()
        self._ups: _Events = []
        self._downs: _Events = []
        self._started = False
        self.last_reason = ""
        # one External AverageValue metric (the simulator's HPAs): step_one takes its value
        self._one_target = metrics[0][2] if len(metrics) == 1 and metrics[0][0] == 1 else 0
        self.one_value = self._one_target > 0

    def _record(self, now: float, value: int) -> None:
        q = self._maxq
        while q and q[-1][1] <= value:
            q.pop()
        q.append((now, value))
        if self._behavior and self._norm.up_window > 0:
            q = self._minq
            while q and q[-1][1] >= value:
                q.pop()
            q.append((now, value))

    def step(
        self,
        now: float,
        current_replicas: int,
        ready_replicas: int,
        external_values: Mapping[str, float],
        pods_values: Mapping[str, float] | None = None,
    ) -> int:
        current = current_replicas
        if not self._started:
            # recordInitialRecommendation stamps the seed when the sync starts, before the
            # cutoff: with no behavior and a 0 s window it is Before(now - 0) and never counts
            if self._behavior or self._norm.nb_window > 0:
                self._record(now, current)
            self._started = True
        if current == 0:
            self.last_reason = "ScalingDisabled"
            return 0
        if current > self._max or current < self._min:
            desired = self._max if current > self._max else self._min
            self._norm.store_event(now, current, desired, self._ups, self._downs)
            self.last_reason = "CurrentAboveMax" if current > self._max else "CurrentBelowMin"
            return desired
        down, up = self._down, self._up
        replicas = 0
        invalid = 0
        for kind, name, target in self._metrics:
            if kind == 1:  # External AverageValue: GetExternalPerPodMetricReplicas
                value = external_values.get(name)
                if value is None:
                    invalid += 1
                    continue
                usage = _milli(value)
                ratio = usage / (target * current)
                if (1.0 - down) <= ratio <= (1.0 + up):
                    proposal = current
                else:
                    proposal = _ceil_i32(usage / target)
            elif kind == 0:  # External Value: getUsageRatioReplicaCount
                value = external_values.get(name)
                if value is None:
                    invalid += 1
                    continue
                ratio = _milli(value) / target
                if (1.0 - down) <= ratio <= (1.0 + up):
                    proposal = current
                else:
                    proposal = _ceil_i32(ratio * ready_replicas)
            else:  # Pods AverageValue: calcPlainMetricReplicas
                value = None if pods_values is None else pods_values.get(name)
                if value is None or ready_replicas <= 0:
                    invalid += 1
                    continue
                n_ready = ready_replicas if ready_replicas < current else current
                proposal = _plain_replicas(
                    current,
                    target,
                    down,
                    up,
                    _milli(value) * n_ready,
                    n_ready,
                    n_ready,
                    current - n_ready,
                    0,
                )
            if replicas == 0 or proposal > replicas:
                replicas = proposal
        if invalid and (invalid >= self._n_metrics or replicas < current):
            self.last_reason = "FailedComputeMetricsReplicas"
            return current
        return self._settle(now, current, replicas if replicas > 0 else 0)

    def step_one(self, now: float, current: int, value: float | None) -> int:
        """:meth:`step` for an HPA on one External AverageValue metric, given its value.

        The same arithmetic, inlined (``_milli``, the tolerance, ``_ceil_i32``):
        the simulator calls this twice per sync per configuration. ``value``
        None is a metric that could not be read.
        """
        target = self._one_target
        if not target:
            raise ValueError("step_one needs an HPA on exactly one External AverageValue metric")
        if not self._started:
            if self._behavior or self._norm.nb_window > 0:
                self._record(now, current)
            self._started = True
        if current == 0 or current > self._max or current < self._min or value is None:
            return self.step(now, current, current, {} if value is None else {self._metrics[0][1]: value})
        x = value * 1000.0  # _milli
        if x >= 0.0:
            usage = math.floor(x)
            if x - usage > 1e-9 * (x if x > 1.0 else 1.0):
                usage += 1
        else:
            usage = _milli(value)
        ratio = usage / (target * current)
        if (1.0 - self._down) <= ratio <= (1.0 + self._up):
            pre = current
        else:
            x = usage / target
            pre = MAX_INT32 if x > MAX_INT32 else math.ceil(x)
            if pre < 0:
                pre = 0
        return self._settle(now, current, pre)

    def _settle(self, now: float, current: int, pre: int) -> int:
        """Stabilise the recommendation ``pre``, record it, and apply the limits."""
        norm = self._norm
        q = self._maxq
        if not self._behavior:
            # stabilizeRecommendation: counted unless Before(now - window)
            cutoff = now - norm.nb_window
            while q and q[0][0] < cutoff:
                q.popleft()
            stabilized = q[0][1] if q and q[0][1] > pre else pre
            while q and q[-1][1] <= pre:  # _record
                q.pop()
            q.append((now, pre))
            desired, reason, _ = norm.apply_rules(current, pre, stabilized)
        else:
            # stabilizeRecommendationWithBehaviors: counted when After(now - window)
            cutoff = now - norm.down_window
            while q and q[0][0] <= cutoff:
                q.popleft()
            down_rec = q[0][1] if q and q[0][1] > pre else pre
            up_rec = pre
            if norm.up_window > 0:
                mq = self._minq
                cutoff = now - norm.up_window
                while mq and mq[0][0] <= cutoff:
                    mq.popleft()
                if mq and mq[0][1] < pre:
                    up_rec = mq[0][1]
            stabilized = current
            if stabilized < up_rec:
                stabilized = up_rec
            if stabilized > down_rec:
                stabilized = down_rec
            while q and q[-1][1] <= pre:  # _record
                q.pop()
            q.append((now, pre))
            if norm.up_window > 0:
                mq = self._minq
                while mq and mq[-1][1] >= pre:
                    mq.pop()
                mq.append((now, pre))
            if stabilized == current:  # apply_rate's answer when no limit applies
                desired = current
                if stabilized == pre:
                    reason = "DesiredWithinRange"
                else:
                    reason = "ScaleUpStabilized" if pre >= current else "ScaleDownStabilized"
            elif stabilized < current == norm.min_replicas:
                # apply_rate at minReplicas: the scale-down limit is never above current, so
                # minReplicas bounds the answer (TooFewReplicas) whatever the events say
                desired, reason = current, "TooFewReplicas"
            elif stabilized > current == norm.max_replicas:
                # at maxReplicas: the scale-up limit is never below current (TooManyReplicas)
                desired, reason = current, "TooManyReplicas"
            else:
                desired, reason, _ = norm.apply_rate(
                    now, current, pre, stabilized, self._ups, self._downs
                )
                if desired != current:
                    norm.store_event(now, current, desired, self._ups, self._downs)
        self.last_reason = reason
        return desired


__all__ = [
    "DEFAULT_SCALE_DOWN_POLICIES",
    "DEFAULT_SCALE_UP_POLICIES",
    "MAX_INT32",
    "Behavior",
    "ControllerConstants",
    "HPAController",
    "HPASpec",
    "MetricSpec",
    "MetricStatus",
    "MetricTarget",
    "PodSample",
    "Recommendation",
    "ScaleEvent",
    "ScalingPolicy",
    "ScalingRules",
    "SyncInput",
    "SyncResult",
    "sync",
    "validate_spec",
]
