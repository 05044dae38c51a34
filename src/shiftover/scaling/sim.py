"""Replay a trace through HPA, pod start-up, the scheduler and Cluster Autoscaler.

Why it is fast
--------------
Time is integer seconds, but the loop only visits the moments something can
happen: an HPA sync (every ``sync_period``), a Cluster Autoscaler scan (every
``scan_interval``), a pod or node becoming Ready, and, with workers, a metric
rollup boundary. About 15,000 visits replay a day. Everything that does not
feed back into the control loop is computed with numpy before or after it:

* web demand is open-loop (requests arrive whatever the pods do), so the
  web HPA's metric at every sync is precomputed from a cumulative sum;
* serving is computed after the loop: ready capacity is a step function
  recorded only when it changes, so requests within SLO are
  ``sum(min(demand, capacity))`` per second, vectorised.

Only the worker queue is closed-loop (its length is the worker HPA's metric and
depends on how many workers were Ready), so it is advanced inside the loop as a
fluid queue: between visits arrivals are known exactly and service is
``ready_workers * jobs_per_second``; the queue is exact when arrivals are
constant between visits (always true for per-minute traces, whose minute
boundaries are visits' multiples) and otherwise a close approximation.

The metric pipeline
-------------------
The HPA reads the value the Datadog Cluster Agent cached at its last refresh
(every ``refresh`` s). That value is the last *complete* rollup bucket
(``rollup`` s, aligned to multiples of the bucket size) that ended at least
``lag`` s before the refresh (agent flush and intake delay). Web: the mean
requests/s over that bucket. Worker: the mean queue length over it (the
average of the queue at the bucket's two ends). Before the trace starts,
demand is taken as equal to its first second, so the first syncs see a
steady state rather than zero.

SLO accounting
--------------
Demand above ready capacity (Ready web pods x ``capacity_rps``) is counted as
not served within the latency SLO: a pod's capacity is, by definition, the
rate it serves within the SLO. A minute is *over SLO* when fewer than
``slo.objective`` of its requests were served within SLO.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shiftover.errors import BadInput
from shiftover.scaling.cluster import NEVER, PAUSE, WEB, WORKER, Cluster
from shiftover.scaling.config import (
    ScalingConfig,
    SimParams,
    controller_constants,
    sim_params,
    web_hpa_spec,
    worker_hpa_spec,
)
from shiftover.scaling.hpa import ControllerConstants, HPAController, HPASpec
from shiftover.scaling.trace import Trace

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class Workload:
    """What a trace asks of the service, per second, plus the web HPA's metric per sync.

    Shared by every configuration of a sweep that keeps the same metric pipeline
    and sync period.
    """

    duration: int
    demand: FloatArray  # requests/s, one value per second
    cum_jobs: FloatArray | None  # cumulative jobs at the start of each second (len duration+1)
    web_metric: list[float]  # web HPA metric value at each sync (requests/s)
    sync_period: int
    refresh: int
    rollup: int
    lag: int
    start_iso: str = ""


def prepare(trace: Trace, params: SimParams) -> Workload:
    """Per-second demand and the web metric as the HPA will see it at each sync."""
    demand = trace.requests_per_second()
    duration = int(demand.shape[0])
    if duration < params.sync_period:
        raise BadInput(
            f"the trace is {duration} s long, shorter than one HPA sync ({params.sync_period} s)",
            hint="use a longer trace or a wider --from/--to window",
        )
    cum_jobs: FloatArray | None = None
    if params.worker_enabled:
        jobs = trace.jobs_per_second()
        # cumulative jobs in one array, summed in place: no second and third month-long copy
        cum_jobs = np.empty(duration + 1, dtype=np.float64)
        cum_jobs[0] = 0.0
        if jobs is None:
            if params.jobs_per_request is None:
                raise BadInput(
                    f"the config has a worker but the trace {trace.source} has no jobs column",
                    hint="add a jobs column to the trace, or set worker.jobs_per_request in the config",
                )
            np.multiply(demand, params.jobs_per_request, out=cum_jobs[1:])
        else:
            cum_jobs[1:] = jobs
            del jobs
        np.cumsum(cum_jobs[1:], out=cum_jobs[1:])
    web_metric = _bucket_means(demand, duration, params)
    return Workload(
        duration=duration,
        demand=demand,
        cum_jobs=cum_jobs,
        web_metric=web_metric,
        sync_period=params.sync_period,
        refresh=params.refresh,
        rollup=params.rollup,
        lag=params.lag,
        start_iso=trace.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def _bucket_ends(times: IntArray, refresh: int, rollup: int, lag: int) -> IntArray:
    """End of the rollup bucket the cluster agent serves at each time (may be <= 0)."""
    refreshed = (times // refresh) * refresh
    ends: IntArray = ((refreshed - lag) // rollup) * rollup
    return ends


def _bucket_means(demand: FloatArray, duration: int, p: SimParams) -> list[float]:
    """Mean demand over the rollup bucket each sync reads, from prefix sums of the demand."""
    syncs = np.arange(0, duration, p.sync_period, dtype=np.int64)
    ends = _bucket_ends(syncs, p.refresh, p.rollup, p.lag)
    pad = int(max(0, -int(ends.min()) + p.rollup)) if ends.size else 0
    hi = ends + pad
    lo = hi - p.rollup
    blocks = chain(
        (np.full(pad, demand[0]),),
        (demand[i : i + _BLOCK] for i in range(0, duration, _BLOCK)),
    )
    cum = _prefix_sums(blocks, np.concatenate((hi, lo)))
    means = (cum[: hi.shape[0]] - cum[hi.shape[0] :]) / p.rollup
    return [float(x) for x in means]


_BLOCK = 1 << 18  # seconds per block of a running sum (2 MB of floats)


def _prefix_sums(blocks: Iterable[FloatArray], at: IntArray) -> FloatArray:
    """``cum[at]`` for ``cum = [0, *np.cumsum(concatenated blocks)]``, a block at a time.

    Each block's running sum starts from the last one's total, so every value is
    the float one whole-trace cumsum gives (it adds left to right), without
    month-long temporary arrays.
    """
    out = np.zeros(at.shape[0], dtype=np.float64)
    order = np.argsort(at, kind="stable")
    sorted_at = at[order]
    carry = 0.0
    start = 0  # values summed before this block
    for block in blocks:
        n = int(block.shape[0])
        if n == 0:
            continue
        run = block.copy()
        run[0] += carry
        np.cumsum(run, out=run)
        a = int(np.searchsorted(sorted_at, start, side="right"))
        b = int(np.searchsorted(sorted_at, start + n, side="right"))
        out[order[a:b]] = run[sorted_at[a:b] - start - 1]
        carry = float(run[-1])
        start += n
    return out


@dataclass(frozen=True, eq=False)
class Timeline:
    """One row per HPA sync (columns as arrays); ``t`` is seconds from the trace start."""

    t: IntArray
    demand_rps: FloatArray  # mean over the row's interval
    capacity_rps: FloatArray  # ready capacity at the row's time
    desired_replicas: IntArray
    ready_replicas: IntArray
    nodes: IntArray  # Ready + provisioning (what you pay for)
    ready_nodes: IntArray
    web_pending: IntArray  # web pods created but not scheduled (waiting for a node)
    worker_pending: IntArray
    queue_length: FloatArray
    worker_desired: IntArray
    worker_ready: IntArray
    served_within_slo: FloatArray  # requests in the row's interval
    not_within_slo: FloatArray
    minute_over_slo: BoolArray  # the minute the row starts in is over SLO

    COLUMNS = (
        "t",
        "demand_rps",
        "capacity_rps",
        "desired_replicas",
        "ready_replicas",
        "nodes",
        "ready_nodes",
        "web_pending",
        "worker_pending",
        "queue_length",
        "worker_desired",
        "worker_ready",
        "served_within_slo",
        "not_within_slo",
        "minute_over_slo",
    )

    def write_csv(self, path: str | Path, start_iso: str = "") -> Path:
        """``time`` (UTC) then :attr:`COLUMNS`; counts and flags as integers, the rest to 3 decimals.

        Written column-wise from the arrays with one format string per row (no
        row objects, no csv module: a month of 15 s syncs is 200,000 rows).
        """
        arrays = [getattr(self, name) for name in self.COLUMNS]
        fmt = ",".join(["%s", *("%.3f" if a.dtype.kind == "f" else "%d" for a in arrays)]) + "\n"
        out = Path(path)
        with out.open("w", encoding="utf-8") as fh:
            fh.write(",".join(("time", *self.COLUMNS)) + "\n")
            # in blocks: a month's rows as Python objects at once would be ~100 MB
            for i in range(0, len(self.t), 20_000):
                cols = [iso_times(start_iso, self.t[i : i + 20_000])]
                cols += [(a[i : i + 20_000] if a.dtype.kind == "f" else a[i : i + 20_000].astype(np.int64)).tolist() for a in arrays]
                fh.writelines([fmt % row for row in zip(*cols, strict=True)])
        return out


def iso_times(start_iso: str, seconds: IntArray) -> list[str]:
    """``start_iso`` plus each of ``seconds``, as ``YYYY-MM-DDTHH:MM:SSZ`` (vectorised)."""
    if not start_iso:
        return [f"t={s}s" for s in seconds.tolist()]
    start = np.datetime64(start_iso.removesuffix("Z"), "s")
    stamps = np.datetime_as_string(start + seconds.astype("timedelta64[s]"), unit="s")
    return [f"{s}Z" for s in stamps.tolist()]


@dataclass(frozen=True)
class Summary:
    duration_seconds: int
    minutes: int
    minutes_over_slo: int
    requests_total: float
    requests_not_within_slo: float
    peak_desired_replicas: int
    peak_ready_replicas: int
    peak_nodes: int
    node_hours: float
    pod_hours: float
    scale_ups: int
    nodes_removed: int
    worker_peak_replicas: int = 0
    worker_peak_queue: float = 0.0
    worker_max_wait_seconds: float | None = 0.0  # None: not computed (run(job_waits=False))
    worker_mean_wait_seconds: float | None = 0.0
    jobs_unfinished: float | None = 0.0
    # the start (UTC) of every minute over SLO, in order
    over_slo_minutes: tuple[str, ...] = ()
    # how long each tier's HPA wanted exactly max_replicas (see at_max_replicas);
    # None when the limit was not given
    web_max_replicas: int | None = None
    web_at_max_seconds: int = 0
    web_at_max_first: str = ""
    worker_max_replicas: int | None = None
    worker_at_max_seconds: int = 0
    worker_at_max_first: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["over_slo_minutes"] = list(self.over_slo_minutes)
        return d

    def over_slo_runs(self) -> list[tuple[str, int]]:
        """Consecutive minutes over SLO as (first minute, length in minutes)."""
        return _runs(self.over_slo_minutes)


def _runs(minutes: tuple[str, ...]) -> list[tuple[str, int]]:
    if not minutes:
        return []
    if minutes[0].startswith("t="):
        secs = np.asarray([int(m[2:-1]) for m in minutes], dtype=np.int64)
    else:
        secs = np.asarray([m.removesuffix("Z") for m in minutes], dtype="datetime64[s]").astype(np.int64)
    breaks = np.flatnonzero(np.diff(secs) != 60) + 1
    firsts = np.concatenate(([0], breaks))
    lengths = np.diff(np.concatenate((firsts, [len(minutes)])))
    return [(minutes[i], int(n)) for i, n in zip(firsts.tolist(), lengths.tolist(), strict=True)]


@dataclass(frozen=True, eq=False)
class SimResult:
    summary: Summary
    timeline: Timeline
    start_iso: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def at_max_replicas(result: SimResult, web_max: int, worker_max: int | None = None) -> SimResult:
    """``result`` with how long each tier's HPA sat at its ``max_replicas``, and since when.

    A tier at its maximum cannot follow demand any higher: time there is a
    warning even when no minute was over SLO (a bigger day would be). Rows hold
    the desired replicas of each sync until the next, so the time is exact.
    """
    tl = result.timeline
    duration = result.summary.duration_seconds
    lengths = np.diff(np.append(tl.t, duration))

    def held(desired: IntArray, limit: int) -> tuple[int, str]:
        at = desired >= limit
        if not at.any():
            return 0, ""
        first = int(np.argmax(at))
        return int(lengths[at].sum()), iso_times(result.start_iso, tl.t[first : first + 1])[0]

    web_s, web_first = held(tl.desired_replicas, web_max)
    changes: dict[str, Any] = {"web_max_replicas": web_max, "web_at_max_seconds": web_s, "web_at_max_first": web_first}
    if worker_max is not None:
        wk_s, wk_first = held(tl.worker_desired, worker_max)
        changes |= {"worker_max_replicas": worker_max, "worker_at_max_seconds": wk_s, "worker_at_max_first": wk_first}
    return replace(result, summary=replace(result.summary, **changes))


def simulate(trace: Trace, config: ScalingConfig) -> SimResult:
    """Replay ``trace`` through the service and cluster described by ``config``."""
    params = sim_params(config)
    work = prepare(trace, params)
    web, worker = web_hpa_spec(config), worker_hpa_spec(config)
    result = run(work, params, web, worker, controller_constants(config))
    return at_max_replicas(result, web.max_replicas, worker.max_replicas if worker else None)


@dataclass(frozen=True, eq=False)
class WebDecisions:
    """The web HPA's desired replicas after every sync of a workload, computed once.

    Valid only when the decisions cannot depend on the cluster (see
    :func:`web_decisions`); a sweep shares them across every configuration that
    differs only in what the HPA does not read (node headroom, the worker, the
    cluster). ``desired[k]`` is the answer of the sync at ``k * sync_period``.
    """

    spec: HPASpec
    constants: ControllerConstants
    initial: int  # web replicas at t = 0
    desired: list[int]


def _web_initial(work: Workload, p: SimParams, web_spec: HPASpec) -> int:
    """Web replicas at t = 0: ``web_initial``, else what the first second's demand asks."""
    target = web_spec.metrics[0].target.value
    web0 = p.web_initial or -(-int(work.demand[0] * 1000) // max(1, int(target * 1000)))
    return min(max(web0, web_spec.min_replicas), web_spec.max_replicas)


def web_decisions(
    work: Workload, p: SimParams, web_spec: HPASpec, constants: ControllerConstants | None = None
) -> WebDecisions | None:
    """The web HPA's decisions for ``work``, or None when they could depend on the cluster.

    The web metric is open-loop (precomputed per sync in :class:`Workload`), and
    for External AverageValue metrics the controller's arithmetic reads only the
    metric, the current replica count (its own previous answer) and its own
    history, never the Ready pods (GetExternalPerPodMetricReplicas). So for an
    HPA whose metrics are all External AverageValue the answers are fixed by the
    workload and the HPA's spec. External Value (getUsageRatioReplicaCount) and
    Pods metrics read Ready pods, which the cluster decides: None.
    """
    if not all(m.source == "External" and m.target.type == "AverageValue" for m in web_spec.metrics):
        return None
    constants = constants or ControllerConstants(sync_period_seconds=float(p.sync_period))
    ctrl = HPAController(web_spec, constants)
    name = web_spec.metrics[0].name
    sync = p.sync_period
    web0 = current = _web_initial(work, p, web_spec)
    desired: list[int] = []
    if ctrl.one_value:
        step_one = ctrl.step_one
        for k, value in enumerate(work.web_metric):
            current = step_one(k * sync, current, value)
            desired.append(current)
    else:
        for k, value in enumerate(work.web_metric):
            # ready_replicas is not read for External AverageValue; pass the current count
            current = ctrl.step(k * sync, current, current, {name: value})
            desired.append(current)
    return WebDecisions(spec=web_spec, constants=constants, initial=web0, desired=desired)


def run(
    work: Workload,
    p: SimParams,
    web_spec: HPASpec,
    worker_spec: HPASpec | None = None,
    constants: ControllerConstants | None = None,
    web: WebDecisions | None = None,
    job_waits: bool = True,
) -> SimResult:
    """The simulation proper, on a prepared :class:`Workload`.

    ``web``: the web HPA's decisions from :func:`web_decisions` on the same
    workload, params and spec, replayed instead of stepping the controller.
    ``job_waits=False`` skips the worker jobs' FIFO waits (a fifth of a sweep's
    time, and a sweep does not rank on them): their summary fields are None.
    """
    rec = _replay(work, p, web_spec, worker_spec, constants, web, keep_rows=True, beaten=None)
    assert rec is not None  # only a stop rule ends a replay early
    return _finish(work, p, rec, job_waits=job_waits)


@dataclass(frozen=True)
class Figures:
    """What a sweep ranks a configuration on: the :class:`Summary` fields of the same names, equal to them."""

    minutes_over_slo: int
    requests_not_within_slo: float
    node_hours: float
    peak_nodes: int
    peak_desired_replicas: int


def run_figures(
    work: Workload,
    p: SimParams,
    web_spec: HPASpec,
    worker_spec: HPASpec | None = None,
    constants: ControllerConstants | None = None,
    web: WebDecisions | None = None,
    *,
    beaten: Beaten | None = None,
) -> Figures | None:
    """:func:`run`'s figures a sweep ranks on, without the timeline; None when stopped early.

    ``beaten`` is asked every simulated minute, with L = the node-seconds so far
    plus the least the rest can take (:func:`least_nodes`), in hours. The final
    node-hours are at least L (that integer count of node-seconds or more,
    divided the same way). Once the run's minutes over SLO so far reach the
    answer m, the run stops and returns None: its final minutes over SLO are at
    least m too (whole minutes already simulated, counted as :func:`_finish`
    counts them, :func:`_minutes_over_slo`). So a caller whose ``beaten(L)`` is
    the minute count of a configuration with fewer node-hours than L loses only
    configurations that end strictly dearer with at least as many minutes over SLO.
    """
    rec = _replay(work, p, web_spec, worker_spec, constants, web, keep_rows=False, beaten=beaten)
    return None if rec is None else _figures(work, p, rec)


Beaten = Callable[[float], float]
"""``beaten(node_hours)``: m such that a configuration with fewer node-hours than
``node_hours`` has at most m minutes over SLO (``math.inf``: none known)."""


def _minutes_over_slo(work: Workload, p: SimParams, cap_t: list[int], cap_v: list[int], start: int, end: int) -> int:
    """The minutes over SLO among the whole minutes of seconds [start, end), as :func:`_finish` counts them.

    ``start`` and ``end`` are multiples of 60; ``cap_t``/``cap_v`` may hold
    changes at ``end`` or later (ignored). Each second's shortfall is the same
    float operations as :func:`_shortfall`'s, and ``np.add.reduceat`` sums a
    minute from its own 60 values whatever precedes them, so every minute is
    over here exactly when it is over in :func:`_finish`.
    """
    i0 = bisect_right(cap_t, start) - 1
    i1 = bisect_left(cap_t, end, i0 + 1)
    ct = np.asarray([start, *cap_t[i0 + 1 : i1], end], dtype=np.int64)
    cv = np.asarray(cap_v[i0:i1], dtype=np.int64)
    demand = work.demand[start:end]
    return int(np.count_nonzero(_over_slo(demand, _demand_above(demand, cv, np.diff(ct), p), p)))


@dataclass(frozen=True, eq=False)
class _Records:
    """What the loop recorded: step functions, one row per sync (when kept), the cluster."""

    cl: Cluster
    cap_t: list[int]
    cap_v: list[int]
    node_t: list[int]
    node_v: list[int]
    rows: list[tuple[int, int, int, int, int, int, float, int, int]]
    dep_t: list[int] | None
    dep_v: list[float] | None
    peak_web: int  # the highest web desired replicas after a sync (kept when rows are not)


_CHECK_SYNCS = 4  # a stop rule is read every 4 syncs (a simulated minute at 15 s)


def least_nodes(p: SimParams, cl: Cluster, syncs: int, plan: list[int] | None, web0: int) -> IntArray:
    """A count of nodes (Ready + provisioning) a run cannot go below, for each of its ``syncs`` sync intervals.

    ``min_nodes`` always: the cluster starts at or above it and a scale-down
    never crosses it. With the web HPA's decisions known ahead (``plan``), more:

    1. Let R be the cpu (memory) the cluster's pods request, pending ones
       included. Right after a Cluster Autoscaler scan, ``total x room >= R``
       or the cluster is at ``max_nodes``: Ready nodes hold their pods within
       room, and pending pods fit in the nodes being provisioned (a scan with
       pending pods orders nodes until its binpacking fits them all, or stops
       at ``max_nodes``). With no pod pending, every pod sits on a Ready node.
    2. Between scans the total changes only at a scan, so the inequality holds
       until R grows: pods created at a sync. If they stay pending, the next
       scan is due within ``scan_interval`` (``run`` brings it forward), so the
       older, smaller R holds until then; with ``scan_interval <= sync_period``
       that is before the next sync. Hence ``min`` of this and the last sync's web pods.
    3. A scale-down removes empty nodes (pods unaffected) or one busy node whose
       pods, by the unneeded check made on the current state (it is redone
       whenever anything moved), fit in the other Ready nodes' free room: the
       inequality still holds. At ``max_nodes`` with pods pending it may remove
       one node until the next scan orders it back: hence ``max_nodes - 1``.

    The same holds counting pods instead of requests, with no node holding more
    than ``per`` web and pause pods together (``per`` from the smaller of their
    requests): ``total x per >= pods``. R and the pods counted are web pods
    (``plan``) and pause pods (constant): worker pods only add to them.
    Requests are integers, so the ceilings are exact.
    """
    low = np.full(syncs, cl.min_nodes, dtype=np.int64)
    room_cpu, room_mem = cl.room_cpu, cl.room_mem
    if plan is None or p.scan_interval > p.sync_period or room_cpu <= 0 or room_mem <= 0 or not syncs:
        return low
    desired = np.asarray(plan, dtype=np.int64)
    web = np.minimum(desired, np.concatenate(([web0], desired[:-1])))
    cpu = web * cl.pod_cpu[WEB] + p.pause_pods * cl.pod_cpu[PAUSE]
    mem = web * cl.pod_mem[WEB] + p.pause_pods * cl.pod_mem[PAUSE]
    need = np.maximum(-(-cpu // room_cpu), -(-mem // room_mem))
    small_cpu = min(cl.pod_cpu[WEB], cl.pod_cpu[PAUSE]) if p.pause_pods else cl.pod_cpu[WEB]
    small_mem = min(cl.pod_mem[WEB], cl.pod_mem[PAUSE]) if p.pause_pods else cl.pod_mem[WEB]
    if small_cpu > 0 and small_mem > 0:
        per = min(room_cpu // small_cpu, room_mem // small_mem)
        if per > 0:
            need = np.maximum(need, -(-(web + p.pause_pods) // per))
    out: IntArray = np.maximum(low, np.minimum(need, cl.max_nodes - 1))
    return out


def _replay(
    work: Workload,
    p: SimParams,
    web_spec: HPASpec,
    worker_spec: HPASpec | None,
    constants: ControllerConstants | None,
    web: WebDecisions | None,
    *,
    keep_rows: bool,
    beaten: Beaten | None,
) -> _Records | None:
    """The loop of :func:`run`; None when ``beaten`` stopped it (see :func:`run_figures`)."""
    constants = constants or ControllerConstants(sync_period_seconds=float(p.sync_period))
    duration = work.duration
    sync = p.sync_period
    web_metric = work.web_metric
    web_name = web_spec.metrics[0].name
    workers = p.worker_enabled and worker_spec is not None and work.cum_jobs is not None

    web0 = _web_initial(work, p, web_spec)
    web_plan: list[int] | None = None
    web_ctrl: HPAController | None = None
    if web is None:
        web = web_decisions(work, p, web_spec, constants)
    if web is None:  # the web HPA reads Ready pods: step it in the loop
        web_ctrl = HPAController(web_spec, constants)
    else:
        if (
            web.initial != web0
            or len(web.desired) != len(web_metric)
            or web.spec != web_spec
            or web.constants != constants
        ):
            raise ValueError("web decisions from another workload, spec or controller constants")
        web_plan = web.desired
    worker0 = 0
    if workers:
        assert worker_spec is not None
        worker0 = min(max(p.worker_initial or worker_spec.min_replicas, worker_spec.min_replicas), worker_spec.max_replicas)

    cl = Cluster(
        node_cpu=p.node_cpu,
        node_mem=p.node_mem,
        ds_cpu=p.ds_cpu,
        ds_mem=p.ds_mem,
        pod_cpu=(p.web_cpu, p.worker_cpu, p.pause_cpu),
        pod_mem=(p.web_mem, p.worker_mem, p.pause_mem),
        startup=(p.web_startup, p.worker_startup, 0),
        min_nodes=p.min_nodes,
        max_nodes=p.max_nodes,
        provisioning=p.provisioning,
        threshold=p.scale_down_threshold,
        unneeded_time=p.scale_down_unneeded,
        delay_after_add=p.scale_down_delay_after_add,
    )
    cl.start((web0, worker0, p.pause_pods), p.initial_nodes)

    # worker state
    worker_ctrl = HPAController(worker_spec, constants) if workers and worker_spec else None
    worker_one = worker_ctrl is not None and worker_ctrl.one_value
    worker_name = worker_spec.metrics[0].name if worker_spec else ""
    # cumulative jobs at a visit's second, read one float at a time (a month as a list is 100 MB)
    cum_at = work.cum_jobs.item if workers and work.cum_jobs is not None else None
    cum_last = 0.0  # cumulative jobs at last_t
    rate = p.worker_rate
    rollup = p.rollup
    worker_desired = worker0
    queue = 0.0
    departed = 0.0
    dep_t: list[int] = [0]
    dep_v: list[float] = [0.0]
    q_at_bucket: list[float] = [0.0]  # queue at t = i * rollup
    next_bucket = rollup if workers else NEVER

    # records: step functions at change times, one row tuple per sync
    cap_t: list[int] = [0]
    cap_v: list[int] = [cl.ready_count[WEB]]
    node_t: list[int] = [0]
    node_v: list[int] = [cl.total_nodes]
    rows: list[tuple[int, int, int, int, int, int, float, int, int]] = []
    peak_web = 0
    # the stop rule: node-seconds up to node_since, read every few syncs
    node_sec = 0
    node_since = 0
    check_every = _CHECK_SYNCS * sync
    next_check = check_every if beaten is not None else NEVER
    over = 0  # minutes over SLO among the first `counted` minutes
    counted = 0
    rest: list[int] = []  # node-seconds the run takes at least from each sync on
    if beaten is not None:
        starts = np.arange(0, duration, sync, dtype=np.int64)[: len(web_metric)]
        lengths = np.diff(np.append(starts, duration))
        least = least_nodes(p, cl, len(web_metric), web_plan, web0) * lengths
        rest = np.cumsum(least[::-1])[::-1].tolist()

    web_desired = web0
    next_sync = 0
    next_scan = 0
    scan = p.scan_interval
    refresh = p.refresh
    lag = p.lag
    delay_after_add = p.scale_down_delay_after_add
    k = 0
    last_t = 0
    nodes = cl.nodes
    prov = cl.provisioning
    pending = cl.pending
    starting = cl.starting
    q0, q1 = starting[WEB], starting[WORKER]
    ready_count = cl.ready_count
    last_ready = ready_count[WEB]
    last_nodes = node_v[0]  # Ready + provisioning: only a scan changes it
    n_ready_nodes = len(nodes)  # only nodes_ready and a scan change it
    n_buckets = 1  # len(q_at_bucket)
    served_end = -NEVER  # the rollup bucket the worker's metric was last read from
    value = 0.0
    add_pods, remove_pods = cl.add_pods, cl.remove_pods
    worker_step = worker_ctrl.step_one if worker_ctrl is not None and worker_one else None
    while True:
        t = next_sync if next_sync < next_scan else next_scan
        if next_bucket < t:
            t = next_bucket
        if prov and prov[0] < t:
            t = prov[0]
        if q0 and q0[0][0] < t:  # type: ignore[operator]
            t = q0[0][0]  # type: ignore[assignment]
        if q1 and q1[0][0] < t:  # type: ignore[operator]
            t = q1[0][0]  # type: ignore[assignment]
        if t >= duration:
            break
        if cum_at is not None and t > last_t:
            # _drain, inlined: the queue over [last_t, t) at constant capacity
            cum_t = cum_at(t)
            arrived = cum_t - cum_last
            cum_last = cum_t
            capacity = ready_count[WORKER] * rate * (t - last_t)
            left = queue + arrived - capacity
            if left < 0.0:
                departed += queue + arrived
                queue = 0.0
            else:
                departed += capacity
                queue = left
            dep_t.append(t)
            dep_v.append(departed)
        last_t = t
        if prov and prov[0] <= t:
            cl.nodes_ready(t)  # provisioning -> Ready: the node count does not change
            n_ready_nodes = len(nodes)
        if (q0 and q0[0][0] <= t) or (q1 and q1[0][0] <= t):  # type: ignore[operator]
            cl.advance(t)
        if t == next_bucket:
            q_at_bucket.append(queue)
            n_buckets += 1
            next_bucket += rollup
        synced = t == next_sync
        if synced:
            if web_plan is not None:
                d = web_plan[k]
            else:
                assert web_ctrl is not None
                d = web_ctrl.step(t, web_desired, ready_count[WEB], {web_name: web_metric[k]})
            if d != web_desired:
                if d > web_desired:
                    add_pods(WEB, d - web_desired, t)
                else:
                    remove_pods(WEB, web_desired - d, t)
                web_desired = d
            if worker_ctrl is not None:
                end = ((t // refresh) * refresh - lag) // rollup
                if end != served_end:  # a new bucket served: the worker's metric changes
                    i1 = end if end > 0 else 0
                    i0 = end - 1 if end > 1 else 0
                    if i1 >= n_buckets:  # not complete yet: the latest, read again later
                        i1 = n_buckets - 1
                        i0 = min(i0, i1)
                    else:
                        served_end = end
                    value = 0.5 * (q_at_bucket[i0] + q_at_bucket[i1])
                if worker_step is not None:
                    wd = worker_step(t, worker_desired, value)
                else:
                    wd = worker_ctrl.step(t, worker_desired, ready_count[WORKER], {worker_name: value})
                if wd != worker_desired:
                    if wd > worker_desired:
                        add_pods(WORKER, wd - worker_desired, t)
                    else:
                        remove_pods(WORKER, worker_desired - wd, t)
                    worker_desired = wd
            k += 1
            next_sync += sync
        # Cluster Autoscaler: a scan with no pending pods and no change since the last
        # one can only remove nodes, and only once their removal is due; skip to then.
        if next_scan > t and (cl.dirty or pending[WEB] or pending[WORKER] or pending[PAUSE]):
            next_scan = -(-t // scan) * scan
        if t == next_scan:
            cl.scan(t)
            next_scan += scan
            if not (cl.dirty or pending[WEB] or pending[WORKER] or pending[PAUSE]):
                due = cl.next_removal
                after_add = cl.last_scale_up + delay_after_add
                if after_add > due:
                    due = after_add
                if due > next_scan:
                    next_scan = -(-due // scan) * scan if due < NEVER else NEVER
            n_ready_nodes = len(nodes)
            n_nodes = n_ready_nodes + len(prov)  # only a scan adds or removes nodes
            if n_nodes != last_nodes:
                node_sec += last_nodes * (t - node_since)
                node_since = t
                last_nodes = n_nodes
                node_t.append(t)
                node_v.append(n_nodes)
        if synced:  # one row per sync, after every event at this second
            if t >= next_check:
                assert beaten is not None
                next_check += check_every
                # nodes so far, then the fewest the rest can take (k - 1: this sync's interval)
                at_least = node_sec + last_nodes * (t - node_since) + rest[k - 1]
                need = beaten(at_least / 3600.0)
                # count the minutes completed since the last count only when they could reach `need`
                # (capacity before t is final: only events at t or later are still to come)
                done = t // 60
                if over < need <= over + done - counted:
                    over += _minutes_over_slo(work, p, cap_t, cap_v, counted * 60, done * 60)
                    counted = done
                if over >= need:
                    return None
            if not keep_rows:
                if web_desired > peak_web:
                    peak_web = web_desired
            else:
                rows.append((
                    web_desired,
                    ready_count[WEB],
                    last_nodes,
                    n_ready_nodes,
                    pending[WEB],
                    pending[WORKER],
                    queue,
                    worker_desired,
                    ready_count[WORKER],
                ))
        if ready_count[WEB] != last_ready:
            last_ready = ready_count[WEB]
            cap_t.append(t)
            cap_v.append(last_ready)

    if cum_at is not None and last_t < duration:
        queue, served = _drain(queue, cum_at(duration) - cum_last,
                               ready_count[WORKER] * rate * (duration - last_t))
        departed += served
        dep_t.append(duration)
        dep_v.append(departed)

    return _Records(cl, cap_t, cap_v, node_t, node_v, rows,
                    dep_t if workers else None, dep_v if workers else None, peak_web)


def _drain(queue: float, arrived: float, capacity: float) -> tuple[float, float]:
    """The worker queue over one interval of constant capacity: (new queue, jobs served)."""
    left = queue + arrived - capacity
    if left < 0.0:
        return 0.0, queue + arrived
    return left, capacity


def _demand_above(demand: FloatArray, ready: IntArray, lengths: IntArray, p: SimParams) -> FloatArray:
    """Per second: the demand above ready capacity (ready web pods held for ``lengths`` seconds each)."""
    bad = np.repeat(ready.astype(np.float64) * p.web_capacity_rps, lengths)
    np.subtract(demand, bad, out=bad)
    np.maximum(bad, 0.0, out=bad)
    return bad


def _over_slo(demand: FloatArray, bad: FloatArray, p: SimParams) -> npt.NDArray[np.bool_]:
    """Per minute from the first second (a partial last minute counts): more than the objective allows was not served."""
    minute_starts = np.arange(0, demand.shape[0], 60, dtype=np.int64)
    d_min = np.add.reduceat(demand, minute_starts)
    b_min = np.add.reduceat(bad, minute_starts)
    over: npt.NDArray[np.bool_] = b_min > (1.0 - p.slo_objective) * d_min + 1e-9
    return over


def _shortfall(work: Workload, p: SimParams, cap_t: list[int], cap_v: list[int]) -> tuple[IntArray, IntArray, IntArray, FloatArray]:
    """Ready web pods as a step function (times with the end, counts, lengths) and the demand above them per second."""
    ct = np.asarray([*cap_t, work.duration], dtype=np.int64)
    cv = np.asarray(cap_v, dtype=np.int64)
    c_len = np.diff(ct)
    return ct, cv, c_len, _demand_above(work.demand, cv, c_len, p)


def _nodes(rec: _Records, duration: int) -> tuple[float, int]:
    """Node-hours and the peak node count (Ready + provisioning) from the recorded step function."""
    nt = np.asarray([*rec.node_t, duration], dtype=np.int64)
    nv = np.asarray(rec.node_v, dtype=np.int64)
    n_len = np.diff(nt)
    return float((nv * n_len).sum()) / 3600.0, int(nv[n_len > 0].max())


def _figures(work: Workload, p: SimParams, rec: _Records) -> Figures:
    """:func:`_finish`'s arithmetic for the :class:`Figures` alone (same operations, same floats)."""
    _, _, _, bad = _shortfall(work, p, rec.cap_t, rec.cap_v)
    node_hours, peak_nodes = _nodes(rec, work.duration)
    return Figures(
        minutes_over_slo=int(np.count_nonzero(_over_slo(work.demand, bad, p))),
        requests_not_within_slo=float(bad.sum()),
        node_hours=node_hours,
        peak_nodes=peak_nodes,
        peak_desired_replicas=rec.peak_web,
    )


def _finish(work: Workload, p: SimParams, rec: _Records, *, job_waits: bool = True) -> SimResult:
    """Everything the loop does not feed back into: SLO accounting, sums, the timeline.

    A month is 3 million seconds, 24 MB per float array: only one per-second
    array is built (the shortfall, in place); ready pods and nodes stay step
    functions, summed over their change times.
    """
    cl, rows, dep_t, dep_v = rec.cl, rec.rows, rec.dep_t, rec.dep_v
    duration = work.duration
    demand = work.demand
    ct, cv, c_len, bad = _shortfall(work, p, rec.cap_t, rec.cap_v)

    # per minute (a partial last minute counts as a minute)
    n_min = -(-duration // 60)
    over_min = _over_slo(demand, bad, p)
    over_at = np.flatnonzero(over_min) * 60

    # per row (HPA sync interval)
    cols = np.fromiter(chain.from_iterable(rows), dtype=np.float64, count=9 * len(rows)).reshape(-1, 9)
    n_rows = cols.shape[0]
    icols = cols.astype(np.int64)
    starts = np.arange(0, duration, p.sync_period, dtype=np.int64)[:n_rows]
    lengths = np.diff(np.append(starts, duration))
    d_sum = np.add.reduceat(demand, starts)
    b_row = np.add.reduceat(bad, starts)
    bad_total = float(bad.sum())
    del bad
    # the state at the row's second after every event in it (a pod that turns
    # Ready in the same second as the sync counts), consistent with capacity_rps
    ready_row = cv[np.searchsorted(ct[:-1], starts, side="right") - 1]

    node_hours, peak_nodes = _nodes(rec, duration)

    worker_peak_q = 0.0
    max_wait: float | None = 0.0
    mean_wait: float | None = 0.0
    unfinished: float | None = 0.0
    if dep_t is not None and dep_v is not None and work.cum_jobs is not None:
        worker_peak_q = float(cols[:, 6].max()) if n_rows else 0.0
        if job_waits:
            max_wait, mean_wait, unfinished = _waits(work.cum_jobs, dep_t, dep_v, duration)
        else:
            max_wait = mean_wait = unfinished = None

    timeline = Timeline(
        t=starts,
        demand_rps=d_sum / lengths,
        capacity_rps=ready_row.astype(np.float64) * p.web_capacity_rps,
        desired_replicas=icols[:, 0],
        ready_replicas=ready_row,
        nodes=icols[:, 2],
        ready_nodes=icols[:, 3],
        web_pending=icols[:, 4],
        worker_pending=icols[:, 5],
        queue_length=cols[:, 6],
        worker_desired=icols[:, 7],
        worker_ready=icols[:, 8],
        served_within_slo=d_sum - b_row,
        not_within_slo=b_row,
        minute_over_slo=over_min[starts // 60],
    )
    summary = Summary(
        duration_seconds=duration,
        minutes=n_min,
        minutes_over_slo=int(over_at.size),
        requests_total=float(demand.sum()),
        requests_not_within_slo=bad_total,
        peak_desired_replicas=int(icols[:, 0].max()) if n_rows else 0,
        peak_ready_replicas=int(cv[c_len > 0].max()),
        peak_nodes=peak_nodes,
        node_hours=node_hours,
        pod_hours=float((cv * c_len).sum()) / 3600.0,
        scale_ups=cl.scale_ups,
        nodes_removed=cl.nodes_removed,
        worker_peak_replicas=int(icols[:, 7].max()) if n_rows else 0,
        worker_peak_queue=worker_peak_q,
        worker_max_wait_seconds=max_wait,
        worker_mean_wait_seconds=mean_wait,
        jobs_unfinished=unfinished,
        over_slo_minutes=tuple(iso_times(work.start_iso, over_at)),
    )
    return SimResult(summary=summary, timeline=timeline, start_iso=work.start_iso)


def _waits(cum_jobs: FloatArray, dep_t: list[int], dep_v: list[float], duration: int) -> tuple[float, float, float]:
    """FIFO wait of jobs: a job is done when cumulative departures reach its arrival level.

    Departures are piecewise linear between the recorded times; the last job
    arriving in second ``s`` arrives at ``s + 1``. Jobs still queued at the
    end are counted with the wait they had so far (a lower bound). Computed a
    block of seconds at a time, so a month needs no dozen month-long arrays.
    """
    dt = np.asarray(dep_t, dtype=np.float64)
    dv = np.asarray(dep_v, dtype=np.float64)
    total_done = dv[-1]
    w_max = 0.0
    w_sum = 0.0
    jobs = 0.0
    block = 1 << 18
    for lo in range(0, duration, block):
        hi = min(lo + block, duration)
        weights = np.diff(cum_jobs[lo : hi + 1])
        has = weights > 0
        if not has.any():
            continue
        weights = weights[has]
        arrivals = cum_jobs[lo + 1 : hi + 1][has]
        times = np.arange(lo + 1, hi + 1, dtype=np.float64)[has]
        idx = np.clip(np.searchsorted(dv, arrivals - 1e-9, side="left"), 1, len(dv) - 1)
        v0, v1 = dv[idx - 1], dv[idx]
        t0, t1 = dt[idx - 1], dt[idx]
        span = np.where(v1 > v0, v1 - v0, 1.0)
        done_at = t0 + (t1 - t0) * np.clip((arrivals - v0) / span, 0.0, 1.0)
        done_at = np.where(arrivals > total_done + 1e-6, float(duration), done_at)
        wait = np.maximum(done_at - times, 0.0)
        w_max = max(w_max, float(wait.max()))
        w_sum += float((wait * weights).sum())
        jobs += float(weights.sum())
    if not jobs:
        return 0.0, 0.0, 0.0
    return w_max, w_sum / jobs, float(max(0.0, cum_jobs[-1] - total_done))


def with_overrides(p: SimParams, **changes: Any) -> SimParams:
    """A copy of ``p`` with some fields changed (for sweeps)."""
    return replace(p, **changes)


__all__ = [
    "Figures",
    "SimResult",
    "Summary",
    "Timeline",
    "WebDecisions",
    "Workload",
    "at_max_replicas",
    "iso_times",
    "prepare",
    "run",
    "run_figures",
    "simulate",
    "web_decisions",
    "with_overrides",
]
