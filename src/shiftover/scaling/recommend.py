"""Sweep the web HPA and node headroom; return the cheapest setting that holds the SLO.

The knobs are the ones a team can turn without touching the application:

* ``min_replicas`` — a floor that absorbs the first minutes of a surge;
* ``target_per_pod`` — the HPA's AverageValue target in requests/s per pod, the
  unit of the config's ``web.hpa.target_per_pod`` (lower = more spare capacity
  per pod, earlier scale-up). The default grid takes fractions of
  ``capacity_rps``;
* the scale-down stabilization window — how long the HPA keeps the highest
  recent recommendation (``behavior.scaleDown.stabilizationWindowSeconds``, or
  the controller's ``--horizontal-pod-autoscaler-downscale-stabilization``
  when the HPA has no ``behavior``, as :mod:`shiftover.scaling.config` models it);
* node headroom — overprovisioning pause pods (priority below the service's)
  that hold room for web pods, so a scale-up lands on a warm node while Cluster
  Autoscaler brings a new one.

Why the answer cannot contradict itself
---------------------------------------
The config's own setting is always one of the swept points: its values are
added to the grid's axes when they are not there. So "current" is simulated
exactly like every other point, the best is never dearer than a current
setting that holds the SLO, and the current setting can itself be the best.

A best that sits on the edge of the grid, in a direction where an untried
value could be better (the smallest floor tried, the largest target tried, the
shortest or longest window, the least or most headroom), is reported with a
wider grid to try (:attr:`Sweep.wider`). When nothing holds the SLO, the edges
are looked for in the other direction, from the setting closest to it.

How the sweep is organised
--------------------------
Every configuration runs on the same prepared workload (the web metric does
not depend on these knobs). Tasks are grouped by the HPA knobs (floor, target,
window) with every headroom value in one task: the web tier's HPA decisions do
not depend on the cluster when its metric is an External AverageValue, so a
group computes them once (``sim.web_decisions``) and replays them in the run of
each headroom value. The groups (210 on the default grid) go to a process pool
one at a time (``imap_unordered``), which keeps both cores busy to the end and
reports progress as groups finish; results are put back in grid order so any
number of processes gives the same answer. ``sim.web_decisions`` returns None
when the web HPA's answers could depend on the cluster (a metric that reads
Ready pods); each run then steps the controller itself.

Stopping dearer configurations early, exactly
---------------------------------------------
Once a configuration Q has finished with N node-hours and M minutes over SLO,
a configuration P that will end above N with at least M minutes over SLO can
be neither answer:

* not the best: if P is within ``--slo-budget``, so is Q (M <= P's minutes),
  and Q's cost tuple (node-hours first, :func:`_cost`) is strictly smaller;
* not on the frontier: :func:`pareto` walks configurations by cost and keeps
  one only when it has strictly fewer minutes than every one kept before. Q
  comes before P (strictly fewer node-hours, whatever the other fields), and
  when Q's turn is over the fewest minutes kept is at most M (Q was kept, or
  something with M or fewer was kept before it), so P, with M or more, is not
  kept. Leaving P out changes nothing for the others: it is never kept, so it
  moves nobody's comparison, and the order of the rest is unchanged.

So a run P stops (``sim.run_figures(beaten=...)``) as soon as some finished Q
has fewer node-hours than P's node-hours so far plus a lower bound for the
rest, and no more minutes over SLO than P's whole minutes so far. The bound is
``sim.least_nodes`` (min_nodes, and the nodes the web HPA's known decisions and
the pause pods need at the least: its docstring gives the argument, and tests
check it against real runs); the final node-hours are at least that bound, the
same integer node-seconds divided the same way, so strictly above N. The
minutes so far are counted as :func:`sim._finish` counts them (the same float
operations per minute, ``sim._minutes_over_slo``), only when they could reach
the count needed, so P's final minutes are at least those. The first such rule
(Q with no minute over SLO) is the case M = 0.

The finished configurations are kept as a staircase (:class:`_Staircase`): the
fewest node-hours with at most m minutes over SLO, for every m; only the
Pareto-minimal pairs matter. The config's own setting is never stopped (its
figures are printed), and a stopped configuration is counted in
:attr:`Sweep.stopped`. The staircase is shared by the pool's processes (a
``multiprocessing.Array``: read without its lock, lowered under it; any value
read is a finished configuration's, so a stop is exact whatever the timing);
which configurations stop depends on timing, the answer does not. Groups run
in an order that finds a cheap configuration with no minute over SLO early
(:func:`_order`).

Runs of a sweep build no timeline (``sim.run_figures``): the figures a
:class:`Candidate` holds are computed with the same operations as the summary's.
"""

from __future__ import annotations

import bisect
import itertools
import math
import multiprocessing
import operator
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from shiftover.errors import BadInput
from shiftover.scaling.config import (
    ScalingConfig,
    SimParams,
    controller_constants,
    sim_params,
    web_hpa_spec,
    worker_hpa_spec,
)
from shiftover.scaling.hpa import (
    Behavior,
    ControllerConstants,
    HPASpec,
    MetricSpec,
    MetricTarget,
    ScalingRules,
)
from shiftover.scaling.sim import Workload, prepare, run_figures, web_decisions
from shiftover.scaling.trace import Trace

DEFAULT_MIN_REPLICAS = (1, 2, 3, 4, 6, 8)
DEFAULT_TARGET_FRACTIONS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0)
DEFAULT_WINDOWS = (0, 60, 120, 300, 600)
DEFAULT_HEADROOM = (0, 1, 2, 4, 8)
MAX_WINDOW = 3600  # the HPA API's bound on stabilizationWindowSeconds
MIN_TARGET = 0.001  # an AverageValue is a quantity: 1m is its resolution

Progress = Callable[[int, int], None]
"""Called as ``progress(configurations_done, total)`` while a sweep runs."""


@dataclass(frozen=True)
class Setting:
    """The four knobs of one configuration, in the config's own units."""

    min_replicas: int
    target_per_pod: float
    scale_down_window: int
    headroom_pods: int

    @classmethod
    def of(cls, config: ScalingConfig) -> Setting:
        """The setting ``config`` holds now."""
        return cls(
            min_replicas=config.web.hpa.min_replicas,
            target_per_pod=config.web.hpa.target_per_pod,
            scale_down_window=scale_down_window(config),
            headroom_pods=config.cluster.overprovisioning.pods,
        )


def scale_down_window(config: ScalingConfig) -> int:
    """The web HPA's scale-down stabilization window, where the controller takes it from."""
    b = config.web.hpa.behavior
    if b is not None and b.scale_down is not None and b.scale_down.stabilization_window_seconds is not None:
        return b.scale_down.stabilization_window_seconds
    return config.controller.downscale_stabilization


def max_headroom(config: ScalingConfig) -> int:
    """How many pause pods ``cluster.max_nodes`` empty nodes can hold."""
    c = config.cluster
    pause = c.overprovisioning.requests or config.web.requests
    room = []
    if pause.cpu:
        room.append((c.node.cpu - c.daemonsets.cpu) // pause.cpu)
    if pause.memory:
        room.append((c.node.memory - c.daemonsets.memory) // pause.memory)
    return min(room) * c.max_nodes


@dataclass(frozen=True)
class Grid:
    """The values swept; every combination is one configuration.

    ``targets`` are requests/s per pod (the unit of ``web.hpa.target_per_pod``).
    Values are kept sorted and without repeats.
    """

    min_replicas: tuple[int, ...]
    targets: tuple[float, ...]
    scale_down_windows: tuple[int, ...]
    headroom_pods: tuple[int, ...]

    def __post_init__(self) -> None:
        for name, flag in _FLAGS.items():
            values = getattr(self, name)
            if not values:
                raise BadInput(f"the sweep grid's {name} is empty", hint=f"give {flag} at least one value")
            object.__setattr__(self, name, tuple(sorted(set(values))))
        if min(self.min_replicas) < 1:
            raise BadInput(f"--min-replicas {_join(self.min_replicas)}: min replicas must be >= 1 (the HPA API's minimum)")
        low = [t for t in self.targets if not (MIN_TARGET <= t < math.inf)]  # nan fails every comparison
        if low:
            raise BadInput(
                f"--targets {', '.join(f'{t:g}' for t in low)}: a target per pod must be > 0 requests/s and finite "
                f"(at least {MIN_TARGET:g}, an AverageValue quantity's resolution)"
            )
        bad = [w for w in self.scale_down_windows if not 0 <= w <= MAX_WINDOW]
        if bad:
            raise BadInput(
                f"--windows {_join(self.scale_down_windows)}: a scale-down stabilization window is 0..{MAX_WINDOW} s "
                f"(the HPA API's range), got {_join(bad)}"
            )
        if min(self.headroom_pods) < 0:
            raise BadInput(f"--headroom {_join(self.headroom_pods)}: overprovisioning pods must be >= 0")

    @property
    def size(self) -> int:
        return (
            len(self.min_replicas)
            * len(self.targets)
            * len(self.scale_down_windows)
            * len(self.headroom_pods)
        )

    @classmethod
    def default(cls, config: ScalingConfig) -> Grid:
        """1, 2, 3, 4, 6, 8 replicas (up to max_replicas); 50-100 % of capacity_rps; 0-600 s; 0-8 pods."""
        hpa = config.web.hpa
        return cls(
            min_replicas=tuple(m for m in DEFAULT_MIN_REPLICAS if m <= hpa.max_replicas) or (hpa.min_replicas,),
            targets=targets_from_fractions(DEFAULT_TARGET_FRACTIONS, config),
            scale_down_windows=DEFAULT_WINDOWS,
            headroom_pods=DEFAULT_HEADROOM,
        )

    def including(self, s: Setting) -> Grid:
        """This grid with the values of ``s`` added to its axes."""
        return Grid(
            min_replicas=(*self.min_replicas, s.min_replicas),
            targets=(*self.targets, s.target_per_pod),
            scale_down_windows=(*self.scale_down_windows, s.scale_down_window),
            headroom_pods=(*self.headroom_pods, s.headroom_pods),
        )

    def added(self, other: Grid) -> dict[str, tuple[float, ...]]:
        """The values this grid has that ``other`` has not, per axis."""
        out: dict[str, tuple[float, ...]] = {}
        for name in _FLAGS:
            extra = tuple(v for v in getattr(self, name) if v not in getattr(other, name))
            if extra:
                out[name] = extra
        return out

    def check(self, config: ScalingConfig) -> None:
        """Refuse values the config cannot take (min replicas above max_replicas, headroom no node fits)."""
        top = config.web.hpa.max_replicas
        over = [m for m in self.min_replicas if m > top]
        if over:
            raise BadInput(
                f"--min-replicas {_join(self.min_replicas)}: {_join(over)} is above web.hpa.max_replicas ({top})",
                hint=f"give values from 1 to {top}, or raise web.hpa.max_replicas in the config",
            )
        most = max_headroom(config)
        if max(self.headroom_pods) > most:
            raise BadInput(
                f"--headroom {_join(self.headroom_pods)}: cluster.max_nodes ({config.cluster.max_nodes}) empty nodes "
                f"hold at most {most} overprovisioning pods",
                hint=f"give values from 0 to {most}, or raise cluster.max_nodes in the config",
            )

    def settings(self) -> Iterable[Setting]:
        for m, t, w, h in itertools.product(self.min_replicas, self.targets, self.scale_down_windows, self.headroom_pods):
            yield Setting(m, t, w, h)

    def to_dict(self) -> dict[str, list[float]]:
        return {name: list(getattr(self, name)) for name in _FLAGS}


_FLAGS = {
    "min_replicas": "--min-replicas",
    "targets": "--targets",
    "scale_down_windows": "--windows",
    "headroom_pods": "--headroom",
}


def targets_from_fractions(fractions: Sequence[float], config: ScalingConfig) -> tuple[float, ...]:
    """Fractions of ``web.capacity_rps`` as targets per pod (requests/s, to the milli-unit)."""
    if not fractions or not all(0 < f < math.inf for f in fractions):  # nan fails every comparison
        raise BadInput(
            f"--target-fractions {','.join(f'{f:g}' for f in fractions)}: give one or more finite fractions "
            "of web.capacity_rps > 0, e.g. 0.6,0.8"
        )
    return tuple(round(f * config.web.capacity_rps, 3) for f in fractions)


def format_value(v: float) -> str:
    """A grid value as a flag takes it: 35, 37.5, 41.25 (never 4.1e+01)."""
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.3f}".rstrip("0").rstrip(".")


def _join(values: Iterable[float]) -> str:
    return ",".join(format_value(v) for v in values)


@dataclass(frozen=True)
class Candidate:
    """One configuration and how it did."""

    min_replicas: int
    target_per_pod: float
    scale_down_window: int
    headroom_pods: int
    minutes_over_slo: int
    requests_not_within_slo: float
    node_hours: float
    peak_nodes: int
    peak_replicas: int

    @property
    def setting(self) -> Setting:
        return Setting(self.min_replicas, self.target_per_pod, self.scale_down_window, self.headroom_pods)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


Side = Literal["low", "high"]


@dataclass(frozen=True)
class Edge:
    """A knob of the chosen setting at the end of its axis, where an untried value could do better."""

    knob: str  # a Grid axis: min_replicas, targets, scale_down_windows, headroom_pods
    value: float
    side: Side
    message: str
    more: tuple[float, ...]  # values to add to the axis

    def to_dict(self) -> dict[str, Any]:
        return {"knob": self.knob, "flag": _FLAGS[self.knob], "value": self.value, "side": self.side,
                "message": self.message, "add": list(self.more)}


@dataclass(frozen=True)
class Sweep:
    """What ``recommend`` found."""

    best: Candidate | None
    frontier: tuple[Candidate, ...]
    current: Candidate
    evaluated: int
    slo_budget: int
    seconds: float
    jobs: int
    grid: Grid
    added: dict[str, tuple[float, ...]]  # the config's values added to the grid given
    edges: tuple[Edge, ...] = ()
    wider: Grid | None = None  # the grid to try next when a knob is on an edge
    stopped: int = 0  # of the evaluated, stopped early: a finished one was cheaper with no more minutes over SLO

    @property
    def closest(self) -> Candidate | None:
        """The best, or else the configuration with the fewest minutes over SLO (cheapest among ties)."""
        return self.best or (self.frontier[-1] if self.frontier else None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "best": self.best.to_dict() if self.best else None,
            "current": self.current.to_dict(),
            "current_is_best": self.best is not None and self.best.setting == self.current.setting,
            "frontier": [c.to_dict() for c in self.frontier],
            "evaluated": self.evaluated,
            "stopped_early": self.stopped,
            "slo_budget_minutes": self.slo_budget,
            "seconds": self.seconds,
            "jobs": self.jobs,
            "grid": self.grid.to_dict(),
            "added_to_grid": {k: list(v) for k, v in self.added.items()},
            "edges": [e.to_dict() for e in self.edges],
            "wider_grid": self.wider.to_dict() if self.wider else None,
        }


# --- one group of configurations -------------------------------------------------------


@dataclass(frozen=True)
class _Base:
    work: Workload
    params: SimParams
    web: HPASpec
    worker: HPASpec | None
    constants: ControllerConstants
    current: Setting  # never stopped early: its figures are printed
    prune: bool = True


@dataclass(frozen=True)
class _Group:
    """Configurations that differ only in headroom: one web HPA, several clusters."""

    index: int
    min_replicas: int
    target_per_pod: float
    scale_down_window: int
    headroom_pods: tuple[int, ...]


def _hpa_variant(base: _Base, g: _Group) -> tuple[HPASpec, ControllerConstants]:
    spec = base.web
    metric = spec.metrics[0]
    metrics = (
        MetricSpec(source=metric.source, name=metric.name, target=MetricTarget(type=metric.target.type, value=g.target_per_pod)),
        *spec.metrics[1:],
    )
    constants = base.constants
    behavior = spec.behavior
    if behavior is None:
        # the controller's flag: it applies to every HPA of the cluster, the worker's included
        constants = replace(constants, downscale_stabilization_seconds=float(g.scale_down_window))
    else:
        down = behavior.scale_down or ScalingRules()
        behavior = Behavior(
            scale_up=behavior.scale_up,
            scale_down=replace(down, stabilization_window_seconds=g.scale_down_window),
        )
    web = HPASpec(min_replicas=g.min_replicas, max_replicas=spec.max_replicas, metrics=metrics, behavior=behavior)
    return web, constants


class _Staircase:
    """Finished configurations, as ``least[m]``: the fewest node-hours of one with at most m minutes over SLO.

    ``least`` is non-increasing in m and only ever lowered, and every value it
    has held is a finished configuration's: so any ``least[m] < L`` read, even
    while another process is lowering it, names a configuration with fewer
    node-hours than L and at most m minutes over SLO (the witness
    :func:`sim.run_figures` stops on). Its length is the run's minutes + 1.
    """

    def __init__(self, least: Any, lock: Any = None) -> None:  # a list, or a shared ctypes array and its lock
        self.least = least
        self.last = len(least) - 1
        self.lock = lock

    def beaten(self, node_hours: float) -> float:
        """The fewest m with ``least[m] < node_hours`` (inf: none) — a :data:`sim.Beaten`."""
        least = self.least
        if not least[self.last] < node_hours:
            return math.inf
        # least is non-increasing: bisect on -least; the index returned was read below node_hours
        return bisect.bisect_right(least, -node_hours, key=operator.neg)

    def add(self, node_hours: float, minutes: int) -> None:
        if self.lock is None:
            self._lower(node_hours, minutes)
        else:
            with self.lock:
                self._lower(node_hours, minutes)

    def _lower(self, node_hours: float, minutes: int) -> None:
        least = self.least
        for m in range(minutes, self.last + 1):
            if least[m] <= node_hours:
                break  # and every later one: least is non-increasing
            least[m] = node_hours


def _evaluate_group(base: _Base, g: _Group, bound: _Staircase) -> tuple[int, list[Candidate | None]]:
    """The group's configurations in headroom order; None for one stopped early (see the module docstring)."""
    web, constants = _hpa_variant(base, g)
    # the web HPA's answers once for the group (None when they depend on the cluster)
    decisions = web_decisions(base.work, base.params, web, constants)
    out: list[Candidate | None] = []
    for headroom in g.headroom_pods:
        params = replace(base.params, pause_pods=headroom)
        mine = Setting(g.min_replicas, g.target_per_pod, g.scale_down_window, headroom) == base.current
        stop = bound.beaten if base.prune and not mine else None
        s = run_figures(base.work, params, web, base.worker, constants, web=decisions, beaten=stop)
        if s is None:
            out.append(None)
            continue
        bound.add(s.node_hours, s.minutes_over_slo)
        out.append(Candidate(
            min_replicas=g.min_replicas,
            target_per_pod=g.target_per_pod,
            scale_down_window=g.scale_down_window,
            headroom_pods=headroom,
            minutes_over_slo=s.minutes_over_slo,
            requests_not_within_slo=s.requests_not_within_slo,
            node_hours=s.node_hours,
            peak_nodes=s.peak_nodes,
            peak_replicas=s.peak_desired_replicas,
        ))
    return g.index, out


_BASE: _Base | None = None
_BOUND: _Staircase | None = None


def _init_worker(base: _Base, shared: Any) -> None:
    global _BASE, _BOUND
    _BASE = base
    _BOUND = _Staircase(shared.get_obj(), shared.get_lock())  # a multiprocessing Array("d")


def _evaluate_in_worker(g: _Group) -> tuple[int, list[Candidate | None]]:
    assert _BASE is not None and _BOUND is not None
    return _evaluate_group(_BASE, g, _BOUND)


def _order(groups: Sequence[_Group], current: Setting) -> list[_Group]:
    """The order groups are run in: the current setting's, then the safest floor and window, largest target first.

    Only speed depends on it (results are put back in grid order). The earlier a
    cheap configuration with no minute over SLO finishes, the earlier the others
    stop: the current setting must run in full anyway, and along the highest
    floor and longest window the first target to hold the SLO is the cheapest
    there, usually close to the cheapest of all.
    """
    def key(g: _Group) -> tuple[bool, int, int, float]:
        mine = (g.min_replicas, g.target_per_pod, g.scale_down_window) == (
            current.min_replicas, current.target_per_pod, current.scale_down_window)
        return (not mine, -g.min_replicas, -g.scale_down_window, -g.target_per_pod)

    return sorted(groups, key=key)


# --- the sweep -------------------------------------------------------------------------


def _cost(c: Candidate) -> tuple[float, int, float]:
    return (c.node_hours, c.minutes_over_slo, c.requests_not_within_slo)


def pareto(candidates: Sequence[Candidate]) -> tuple[Candidate, ...]:
    """Configurations no other one beats on both node-hours and minutes over SLO."""
    ordered = sorted(candidates, key=_cost)
    frontier: list[Candidate] = []
    best_minutes: int | None = None
    for c in ordered:
        if best_minutes is None or c.minutes_over_slo < best_minutes:
            frontier.append(c)
            best_minutes = c.minutes_over_slo
    return tuple(frontier)


def recommend(
    trace: Trace,
    config: ScalingConfig,
    *,
    grid: Grid | None = None,
    slo_budget: int = 0,
    jobs: int | None = None,
    progress: Progress | None = None,
    prune: bool = True,
) -> Sweep:
    """Simulate every configuration of ``grid`` (plus the config's own) and pick the cheapest within ``slo_budget``.

    ``prune=False`` runs every configuration to its end (same answer, slower: see the module docstring).
    """
    if slo_budget < 0:
        raise BadInput(f"--slo-budget must be >= 0 minutes, got {slo_budget}")
    current = Setting.of(config)
    given = grid or Grid.default(config)
    grid = given.including(current)
    grid.check(config)
    params = sim_params(config)
    base = _Base(
        work=prepare(trace, params),
        params=params,
        web=web_hpa_spec(config),
        worker=worker_hpa_spec(config),
        constants=controller_constants(config),
        current=current,
        prune=prune,
    )
    groups = [
        _Group(i, m, t, w, grid.headroom_pods)
        for i, (m, t, w) in enumerate(itertools.product(grid.min_replicas, grid.targets, grid.scale_down_windows))
    ]
    total = grid.size
    n_jobs = max(1, jobs if jobs is not None else (os.cpu_count() or 1))
    n_jobs = min(n_jobs, len(groups))
    by_group: list[list[Candidate | None]] = [[] for _ in groups]
    done = 0
    if progress is not None:
        progress(0, total)
    steps = -(-base.work.duration // 60) + 1  # minutes over SLO: 0 .. the run's minutes
    started = time.perf_counter()
    if n_jobs == 1:
        bound = _Staircase([math.inf] * steps)
        for g in _order(groups, current):
            i, found = _evaluate_group(base, g, bound)
            by_group[i] = found
            done += len(found)
            if progress is not None:
                progress(done, total)
    else:
        # forkserver, not fork: forking a process that has threads (an HTTP client's,
        # a test server's) can deadlock the child on a lock held mid-fork
        ctx = multiprocessing.get_context("forkserver")
        # the fork server imports numpy and the simulator once, and each worker forks from it
        # ready to run (0.5-0.8 s less start-up per sweep); no effect once the server is up
        ctx.set_forkserver_preload(["__main__", __name__])
        shared = ctx.Array("d", [math.inf] * steps)
        with ctx.Pool(n_jobs, initializer=_init_worker, initargs=(base, shared)) as pool:
            # one group per task: a group is a few runs, so the pool stays balanced to the end
            for i, found in pool.imap_unordered(_evaluate_in_worker, _order(groups, current), chunksize=1):
                by_group[i] = found
                done += len(found)
                if progress is not None:
                    progress(done, total)
    seconds = time.perf_counter() - started
    ran = [c for found in by_group for c in found]  # grid order, whatever the pool's order
    results = [c for c in ran if c is not None]
    now = next(c for c in results if c.setting == current)
    feasible = [c for c in results if c.minutes_over_slo <= slo_budget]
    best = min(feasible, key=_cost) if feasible else None
    frontier = pareto(results)
    edges = find_edges(grid, best or (frontier[-1] if frontier else None), feasible=best is not None, config=config)
    return Sweep(
        best=best,
        frontier=frontier,
        current=now,
        evaluated=len(ran),
        slo_budget=slo_budget,
        seconds=seconds,
        jobs=n_jobs,
        grid=grid,
        added=grid.added(given),
        edges=edges,
        wider=widen(grid, edges) if edges else None,
        stopped=len(ran) - len(results),
    )


# --- edges of the grid -----------------------------------------------------------------


def find_edges(grid: Grid, chosen: Candidate | None, *, feasible: bool, config: ScalingConfig) -> tuple[Edge, ...]:
    """The knobs of ``chosen`` at an end of their axis where an untried value could be better.

    With a feasible best, better means cheaper: a lower floor, a higher target,
    and windows and headroom either way (a longer window or more headroom can let
    a lower floor or higher target hold the SLO). Without one, ``chosen`` is the
    setting with the fewest minutes over SLO, and better means safer: a higher
    floor, a lower target, a longer window, more headroom. An axis swept at one
    value only is the caller's choice and is left alone.
    """
    if chosen is None:
        return ()
    top = config.web.hpa.max_replicas
    most = max_headroom(config)
    edges: list[Edge] = []

    def at(knob: str, value: float, side: Side, message: str, more: Iterable[float]) -> None:
        axis: tuple[float, ...] = getattr(grid, knob)
        extra = tuple(sorted({v for v in more if v not in axis}))
        if len(axis) > 1 and extra and value == (axis[0] if side == "low" else axis[-1]):
            edges.append(Edge(knob, value, side, message, extra))

    m, t, w, h = chosen.min_replicas, chosen.target_per_pod, chosen.scale_down_window, chosen.headroom_pods
    tt = format_value(t)
    if feasible:
        at("min_replicas", m, "low", f"min replicas {m} is the smallest tried; a lower floor might be cheaper",
           (v for v in (m // 2, m - 1) if v >= 1))
        at("targets", t, "high", f"target {tt} requests/s per pod is the largest tried; a higher one might be cheaper",
           (round(t * 1.1, 3), round(t * 1.2, 3)))
        at("scale_down_windows", w, "low", f"scale-down window {w} s is the shortest tried; a shorter one might be cheaper",
           (w // 2, 0))
        at("headroom_pods", h, "low", f"headroom {h} pods is the least tried; less might be cheaper", (h // 2, 0))
        why = "might let a lower floor or a higher target hold the SLO"
    else:
        at("targets", t, "low", f"target {tt} requests/s per pod is the smallest tried; a lower one might hold the SLO",
           (v for v in (round(t * 0.9, 3), round(t * 0.8, 3)) if v >= MIN_TARGET))
        why = "might hold the SLO"
    if not feasible:
        at("min_replicas", m, "high", f"min replicas {m} is the largest tried; a higher floor {why}",
           (v for v in (m + max(1, m // 2), 2 * m) if v <= top))
    at("scale_down_windows", w, "high", f"scale-down window {w} s is the longest tried; a longer one {why}",
       (v for v in (_minute(w * 1.5), _minute(w * 2)) if v <= MAX_WINDOW))
    at("headroom_pods", h, "high", f"headroom {h} pods is the most tried; more {why}",
       (v for v in (h + max(1, h // 2), max(2, 2 * h)) if v <= most))
    return tuple(edges)


def _minute(seconds: float) -> int:
    """Round a window up to whole minutes past a minute (a window a team would write)."""
    s = math.ceil(seconds)
    return s if s < 60 else -(-s // 60) * 60


def widen(grid: Grid, edges: Sequence[Edge]) -> Grid:
    """``grid`` with the values each edge suggests added to its axis."""
    axes: dict[str, tuple[float, ...]] = {name: getattr(grid, name) for name in _FLAGS}
    for e in edges:
        axes[e.knob] = (*axes[e.knob], *e.more)
    return Grid(
        min_replicas=tuple(int(v) for v in axes["min_replicas"]),
        targets=axes["targets"],
        scale_down_windows=tuple(int(v) for v in axes["scale_down_windows"]),
        headroom_pods=tuple(int(v) for v in axes["headroom_pods"]),
    )


__all__ = [
    "Candidate",
    "Edge",
    "Grid",
    "Setting",
    "Sweep",
    "find_edges",
    "format_value",
    "max_headroom",
    "pareto",
    "recommend",
    "scale_down_window",
    "targets_from_fractions",
    "widen",
]
