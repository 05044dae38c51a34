"""The Locust side of ``shiftover load``: runs only in a child process.

The parent (:mod:`shiftover.loadtest.runner`) writes a job file and starts
``python -c "import locust, runpy; runpy.run_module('shiftover.loadtest.child', ...)"``;
locust is imported first because gevent's monkey-patching breaks when ssl or
boto3 were imported before it (FIELD-NOTES). This module imports nothing from
shiftover at its top level that could pull those in.

Why it is built this way:

- **Open model on Locust's own engine.** Locust is closed-model: a user sends,
  waits for the answer, sleeps, sends again, so a slow target slows the load
  and hides its own slowness (coordinated omission). Here a *dispatcher*
  greenlet in every generator process issues arrival tickets at exact times for
  the step's rate (``k / rate`` for a constant step; the inverse of the
  integrated rate for a ramp), whether or not anyone is free to send them. Locust
  users (ours for one URL, or the user's own locustfile classes) block in
  ``wait_time`` until they take a ticket and then run one task. A ticket that
  waits for a free user waits on the client's clock, and that wait is part of
  the latency: each request's latency is Locust's own response time plus how
  late its task started against the ticket's intended time. A slow target or a
  slow generator can only make latency look *worse*, never better.
- **Dropped, not hidden.** A ticket that waited longer than the request timeout
  is dropped and counted (``dropped``), never silently skipped.
- **The generator watches itself.** Each process records how late its
  dispatcher issued tickets (``lag``) and its own CPU use; the parent uses both
  to say "the generator could not keep the rate" instead of blaming the target.
- **Locust's master/worker protocol** carries the distribution: the master
  spawns the users (Locust spreads them over the workers) and sends each step
  (``so_step``, with each worker's share of the rate) and the end
  (``so_end``) as Locust custom messages; every worker answers with cumulative
  snapshots of its step accumulators (``so_snap`` each second, ``so_final``
  once drained), which the master merges by worker id (cumulative, so a lost or
  repeated snapshot never double counts).
- **One JSON line per event on stdout**, nothing else: ``started``,
  ``step_start``, ``progress`` (each second), ``step_end``, ``result`` (the
  per-step figures, with the keys of
  :class:`shiftover.loadtest.results.StepFigures`) or ``error``. Locust's own
  logging goes to stderr, which the parent keeps in a log file.
- SIGTERM / SIGINT end the current step early (``complete: false``), drain what
  is in flight and still print the result.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# pure (math and shiftover.errors only): safe to import after locust
from shiftover.loadtest.schedule import Step

# --- pure helpers (importable without locust; tested directly) ------------------


def latency_bucket(ms: float) -> int:
    """Round a latency like Locust does (2 significant digits above 100 ms): keeps
    snapshots small while p99 stays within 1 % (or 1 ms below 100 ms)."""
    if ms < 100:
        return round(ms)
    digits = math.floor(math.log10(ms)) - 1
    step = 10**digits
    return int(round(ms / step) * step)


def percentile(hist: Mapping[int, int], q: float) -> float | None:
    """The value at quantile ``q`` (0..1) of a {bucket: count} histogram; None when empty."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= rank:
            return float(value)
    return float(max(hist))


def arrival_offset(k: int, step: Step) -> float:
    """When the ``k``-th arrival (0-based) of a step falls, in seconds from its start
    (:meth:`Step.offset_of`); past the step's end (its end message delayed) the
    rate stays at ``end_rate``."""
    expected = step.expected_requests
    if k >= expected:
        return step.seconds + (k - expected) / step.end_rate
    return step.offset_of(k)


@dataclass
class StepAccumulator:
    """What one generator process saw of one step. Cumulative; merged by summing."""

    requests: int = 0
    failures: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency: dict[int, int] = field(default_factory=dict)
    max_ms: float = 0.0
    lag: dict[int, int] = field(default_factory=dict)
    dropped: int = 0
    issued: int = 0
    completed: int = 0  # requests (of any step) answered while this step ran: its throughput
    # the two parts of each latency: the target's own answer time (Locust's response time)
    # and the wait for a free Locust user (with the dispatcher's lag). A step whose p99 is
    # over the SLO only through the wait measured the generator's users, not the target.
    service: dict[int, int] = field(default_factory=dict)
    wait: dict[int, int] = field(default_factory=dict)

    def record(self, ms: float, error: str | None, *, service_ms: float | None = None) -> None:
        self.requests += 1
        b = latency_bucket(ms)
        self.latency[b] = self.latency.get(b, 0) + 1
        if service_ms is not None:
            sb, wb = latency_bucket(service_ms), latency_bucket(max(0.0, ms - service_ms))
            self.service[sb] = self.service.get(sb, 0) + 1
            self.wait[wb] = self.wait.get(wb, 0) + 1
        self.max_ms = max(self.max_ms, ms)
        if error is not None:
            self.failures += 1
            self.errors[error] = self.errors.get(error, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "failures": self.failures, "errors": dict(self.errors),
            "latency": {str(k): v for k, v in self.latency.items()}, "max_ms": self.max_ms,
            "lag": {str(k): v for k, v in self.lag.items()}, "dropped": self.dropped,
            "issued": self.issued, "completed": self.completed,
            "service": {str(k): v for k, v in self.service.items()},
            "wait": {str(k): v for k, v in self.wait.items()},
        }

    def merge(self, d: Mapping[str, Any]) -> None:
        self.requests += int(d["requests"])
        self.failures += int(d["failures"])
        for k, v in d["errors"].items():
            self.errors[k] = self.errors.get(k, 0) + int(v)
        for k, v in d["latency"].items():
            self.latency[int(k)] = self.latency.get(int(k), 0) + int(v)
        for k, v in d["lag"].items():
            self.lag[int(k)] = self.lag.get(int(k), 0) + int(v)
        self.max_ms = max(self.max_ms, float(d["max_ms"]))
        self.dropped += int(d["dropped"])
        self.issued += int(d["issued"])
        self.completed += int(d.get("completed", 0))
        for k, v in (d.get("service") or {}).items():
            self.service[int(k)] = self.service.get(int(k), 0) + int(v)
        for k, v in (d.get("wait") or {}).items():
            self.wait[int(k)] = self.wait.get(int(k), 0) + int(v)


def merge_snapshots(snapshots: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[int, StepAccumulator]:
    """{process id: {step index: accumulator dict}} -> {step index: merged accumulator}."""
    merged: dict[int, StepAccumulator] = {}
    for steps in snapshots.values():
        for idx, acc in steps.items():
            merged.setdefault(int(idx), StepAccumulator()).merge(acc)
    return merged


def step_figures(
    step: Mapping[str, Any], acc: StepAccumulator, *, seconds: float, complete: bool,
    cpu_percent: float | None,
) -> dict[str, Any]:
    """One step's figures, with exactly the keys of ``results.StepFigures``."""
    lag99 = percentile(acc.lag, 0.99)
    lag50 = percentile(acc.lag, 0.50)
    return {
        "index": int(step["index"]),
        "target_rate": (float(step["start_rate"]) + float(step["end_rate"])) / 2.0,
        "start_rate": float(step["start_rate"]),
        "end_rate": float(step["end_rate"]),
        "seconds": round(seconds, 3),
        "requests": acc.requests,
        "failures": acc.failures,
        "achieved_rate": round(acc.completed / seconds, 3) if seconds > 0 else 0.0,
        "p50_ms": percentile(acc.latency, 0.50),
        "p95_ms": percentile(acc.latency, 0.95),
        "p99_ms": percentile(acc.latency, 0.99),
        "max_ms": round(acc.max_ms, 1) if acc.requests else None,
        "errors": dict(sorted(acc.errors.items())),
        "dropped": acc.dropped,
        "lag_p99_ms": 0.0 if lag99 is None else lag99,
        "lag_p50_ms": 0.0 if lag50 is None else lag50,
        "service_p99_ms": percentile(acc.service, 0.99),
        "wait_p99_ms": percentile(acc.wait, 0.99) or 0.0,
        "cpu_percent": cpu_percent,
        "complete": complete,
    }


def error_key(response: Any, exception: BaseException | None) -> str | None:
    """How a failed request is counted: its status code, or the exception's name."""
    status = int(getattr(response, "status_code", 0) or 0)
    if status >= 400:
        return str(status)
    if exception is not None:
        name = type(exception).__name__
        if name in ("CatchResponseError", "ResponseError", "HTTPError") and status:
            return str(status)
        return name
    return None


# --- the Locust side (only in the child process) --------------------------------


def _emit(obj: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class _Generator:
    """One generator process: its ticket queue, dispatcher and step accumulators."""

    def __init__(self, timeout: float) -> None:
        import gevent.queue

        self.timeout = timeout
        self.queue: Any = gevent.queue.Queue()
        self.steps: dict[int, StepAccumulator] = {}
        self.in_flight = 0
        self._current: tuple[dict[str, Any], float, float] | None = None  # step, t0, share
        self._k = 0
        self.stopped = False
        self.cpu_max: dict[int, float] = {}
        import psutil

        self._proc = psutil.Process()
        self._proc.cpu_percent(None)  # prime: the next call measures since now
        self._cpu_at = time.monotonic()

    def acc(self, index: int) -> StepAccumulator:
        a = self.steps.get(index)
        if a is None:
            a = self.steps[index] = StepAccumulator()
        return a

    def begin(self, step: dict[str, Any], share: float) -> None:
        self._current = (step, time.monotonic(), share)
        self._k = 0
        self.acc(int(step["index"]))

    def end(self) -> None:
        self._current = None

    @property
    def current_index(self) -> int | None:
        cur = self._current
        return None if cur is None else int(cur[0]["index"])

    def sample_cpu(self) -> None:
        """The process's CPU use since the last sample, counted for the current step;
        samples closer than 0.5 s apart are noise (psutil divides by the interval)."""
        now = time.monotonic()
        if self._current is None or now - self._cpu_at < 0.5:
            return
        self._cpu_at = now
        idx = int(self._current[0]["index"])
        cpu = float(self._proc.cpu_percent(None))
        self.cpu_max[idx] = max(self.cpu_max.get(idx, 0.0), cpu)

    def dispatch_forever(self) -> None:
        import gevent

        while not self.stopped:
            cur = self._current
            if cur is None:
                gevent.sleep(0.01)
                continue
            step, t0, share = cur
            idx = int(step["index"])
            mine = Step(idx, float(step["start_rate"]) * share, float(step["end_rate"]) * share,
                        float(step["seconds"]))
            acc = self.acc(idx)
            now = time.monotonic()
            first_lag: float | None = None
            nxt = t0 + arrival_offset(self._k, mine)
            while nxt <= now and self._current is cur:
                if first_lag is None:
                    first_lag = now - nxt
                self.queue.put(Ticket(idx, nxt))
                acc.issued += 1
                self._k += 1
                nxt = t0 + arrival_offset(self._k, mine)
            if first_lag is not None:
                b = latency_bucket(first_lag * 1000.0)
                acc.lag[b] = acc.lag.get(b, 0) + 1
            gevent.sleep(max(0.0, min(0.005, nxt - time.monotonic())))

    def take(self) -> tuple[int, float]:
        """Block until a ticket is taken; (step index, seconds late). Stale tickets are dropped."""
        while True:
            t = self.queue.get()
            late = time.monotonic() - t.intended
            if late > self.timeout:
                self.acc(t.step).dropped += 1
                continue
            return t.step, late

    def drop_queued(self) -> None:
        while not self.queue.empty():
            t = self.queue.get_nowait()
            self.acc(t.step).dropped += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "steps": {str(i): a.to_dict() for i, a in self.steps.items()},
            "cpu": {str(i): c for i, c in self.cpu_max.items()},
            "in_flight": self.in_flight + self.queue.qsize(),
        }


@dataclass(frozen=True)
class Ticket:
    step: int
    intended: float  # time.monotonic() of this process


GEN: _Generator | None = None


def _paced(cls: type[Any], gen_ref: Callable[[], _Generator]) -> type:
    """A subclass of a Locust user class whose tasks run on the arrival tickets."""

    def on_start(self: Any) -> None:
        cls.on_start(self)
        self._so_step, self._so_late = gen_ref().take()
        self._so_started = time.monotonic()
        gen_ref().in_flight += 1

    def wait_time(self: Any) -> float:
        g = gen_ref()
        # an arrival answered (its task ended, however): counted in the step running now, so
        # the achieved rate is arrivals per second like --rate, even when a task sends several
        now_step = g.current_index
        if now_step is not None:
            g.acc(now_step).completed += 1
        g.in_flight -= 1
        self._so_step, self._so_late = g.take()
        self._so_started = time.monotonic()
        g.in_flight += 1
        return 0.0

    def context(self: Any) -> dict[str, Any]:
        base = cls.context(self)
        return {**base, "so_step": getattr(self, "_so_step", None), "so_late": getattr(self, "_so_late", 0.0)}

    return type(cls.__name__, (cls,), {
        "on_start": on_start, "wait_time": wait_time, "context": context,
        "__module__": cls.__module__, "abstract": False,
    })


#: The one URL a URL user requests; set from the job (master/local) or from the
#: master's ``so_job`` message (worker), before any user spawns.
TARGET: dict[str, Any] = {}


def _url_user(timeout: float) -> type[Any]:
    from locust import FastHttpUser, task

    class UrlUser(FastHttpUser):
        abstract = True
        network_timeout = timeout
        connection_timeout = min(timeout, 5.0)
        max_retries = 0
        insecure = False  # from the target (--insecure), before any user spawns

        @task
        def hit(self) -> None:
            t = TARGET
            self.client.request(t["method"], t["path"], headers=t["headers"], data=t["data"], name=t["path"])

    return UrlUser


def _set_target(target: Mapping[str, Any], classes: list[type[Any]]) -> None:
    body = target.get("body")
    TARGET.update(
        method=str(target.get("method") or "GET").upper(),
        path=str(target.get("path") or "/"),
        headers=dict(target.get("headers") or {}),
        data=None if body is None else str(body).encode(),
    )
    for c in classes:
        c.host = str(target["base_url"])
        c.insecure = bool(target.get("insecure"))


def _user_classes(job: Mapping[str, Any]) -> list[type[Any]]:
    timeout = float(job["timeout"])
    target = job["target"]
    if target.get("locustfile"):
        from locust.util.load_locustfile import load_locustfile

        try:
            found, _shapes = load_locustfile(str(target["locustfile"]))
        except Exception as e:  # the user's file: a syntax error, a failed import, a raise
            where = ""
            if isinstance(e, SyntaxError) and e.lineno:
                where = f":{e.lineno}"
            raise SystemExit(_fail(f"cannot load the locustfile {target['locustfile']}{where}: "
                                   f"{type(e).__name__}: {e}",
                                   "see the error with: " + " ".join(shlex.quote(a) for a in (
                                       sys.executable, "-c",
                                       f"import runpy; runpy.run_path({json.dumps(str(target['locustfile']))})")))) from None
        wanted = target.get("user_classes") or []
        unknown = [n for n in wanted if n not in found]
        if unknown and found:
            raise SystemExit(_fail(f"no User class named {', '.join(unknown)} in {target['locustfile']}; "
                                   f"it has {', '.join(sorted(found))}",
                                   " ".join(f"--user-class {n}" for n in sorted(found))))
        picked = [c for n, c in found.items() if not wanted or n in wanted]
        if not picked:
            raise SystemExit(_fail(f"no Locust User class in {target['locustfile']}"
                                   + (f" named {', '.join(wanted)}" if wanted else ""),
                                   "define a class deriving from HttpUser or FastHttpUser with @task methods"))
        for c in picked:
            nested = _task_sets(c)
            if nested:
                # a TaskSet runs its own tasks and waits (and an interrupt() reschedules
                # at once, with no wait at all): arrivals would not pace them, and the
                # target would get a closed loop at full speed instead of --rate
                raise SystemExit(_fail(
                    f"{c.__name__} in {target['locustfile']} runs TaskSet {', '.join(nested)}: "
                    "shiftover load paces one @task of the User class per arrival, and a TaskSet's "
                    "tasks would run unpaced",
                    "move the TaskSet's @task methods onto the User class (a SequentialTaskSet's steps "
                    "into one @task), or pick other classes with --user-class"))
        if target.get("base_url"):
            for c in picked:
                c.host = str(target["base_url"])
        for c in picked:
            if not getattr(c, "host", None):
                raise SystemExit(_fail(f"{c.__name__} in {target['locustfile']} has no host",
                                       "set host = 'https://...' in the class, or give the URL: shiftover load URL -f FILE"))
        return [_paced(c, _gen) for c in picked]
    classes = [_paced(_url_user(timeout), _gen)]
    _set_target(target, classes)
    return classes


def _task_sets(user_class: type[Any]) -> list[str]:
    """Names of the TaskSet classes among a User class's tasks."""
    from locust import TaskSet

    return [t.__name__ for t in getattr(user_class, "tasks", None) or ()
            if isinstance(t, type) and issubclass(t, TaskSet)]


def _gen() -> _Generator:
    assert GEN is not None
    return GEN


def _fail(message: str, hint: str = "") -> int:
    _emit({"event": "error", "message": message, "hint": hint})
    return 2


def _listen(env: Any, gen: _Generator) -> None:
    def on_request(response_time: float = 0.0, response: Any = None, context: Any = None,
                   exception: BaseException | None = None, **_: Any) -> None:
        if not isinstance(context, dict) or context.get("so_step") is None:
            return  # not from a ticketed task (e.g. a login in on_start)
        service = float(response_time or 0.0)
        ms = service + 1000.0 * float(context.get("so_late") or 0.0)
        gen.acc(int(context["so_step"])).record(ms, error_key(response, exception), service_ms=service)

    def on_user_error(user_instance: Any = None, exception: BaseException | None = None, **_: Any) -> None:
        # a task that raised: its arrival failed (never lost silently), e.g. a bad URL
        user = getattr(user_instance, "user", user_instance)
        step = getattr(user, "_so_step", None)
        if step is None:
            return
        service = 1000.0 * (time.monotonic() - getattr(user, "_so_started", time.monotonic()))
        ms = service + 1000.0 * float(getattr(user, "_so_late", 0.0))
        gen.acc(int(step)).record(ms, type(exception).__name__ if exception is not None else "task error",
                                  service_ms=service)

    env.events.request.add_listener(on_request)
    env.events.user_error.add_listener(on_user_error)


#: The process that started this one (the CLI); set in :func:`main`.
PARENT: int | None = None
#: A worker whose master sent no heartbeat for this long stops sending (Locust's own
#: limit is 60 s of full-rate load on the target after the master is gone).
MASTER_SILENCE = 10.0


def _orphaned() -> bool:
    """The parent died (SIGKILL, OOM): this process was handed to init or a subreaper.
    The children run in their own session, so nothing else would ever stop them."""
    return PARENT is not None and os.getppid() != PARENT


def _watch_parent(stop: Any) -> None:
    """Set ``stop`` (as SIGTERM does) once the parent is gone."""
    import gevent

    while not stop.is_set():
        if _orphaned():
            sys.stderr.write("shiftover load: the parent process is gone; stopping\n")
            stop.set()
            return
        gevent.sleep(0.5)


def _drain(gen: _Generator, limit: float) -> None:
    """Wait (bounded) until every issued ticket was sent and answered (queued tickets
    are real arrivals still waiting for a free user); what is left then is dropped."""
    import gevent

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and (gen.in_flight > 0 or not gen.queue.empty()):
        gevent.sleep(0.05)
    gen.drop_queued()


def _run_master(job: dict[str, Any]) -> int:
    """Local (workers 0) or master: owns the schedule and prints every event."""
    import gevent
    import gevent.event
    from locust.env import Environment

    global GEN
    timeout = float(job["timeout"])
    users = int(job["users"])
    steps: list[dict[str, Any]] = list(job["schedule"]["steps"])
    distributed = job["mode"] == "master"
    gen = GEN = _Generator(timeout)
    try:
        classes = _user_classes(job)
    except SystemExit as e:
        return int(e.code or 2)
    env = Environment(user_classes=classes, host=job["target"].get("base_url"))
    stop = gevent.event.Event()
    gevent.signal_handler(15, stop.set)
    gevent.signal_handler(2, stop.set)
    gevent.spawn(_watch_parent, stop)
    snapshots: dict[str, dict[str, Any]] = {}
    finals: set[str] = set()
    worker_cpu: dict[str, dict[str, float]] = {}

    if distributed:
        runner: Any = env.create_master_runner(job["bind_host"], int(job["bind_port"]))

        def on_snap(msg: Any, **_: Any) -> None:
            snapshots[msg.node_id] = msg.data["steps"]
            worker_cpu[msg.node_id] = msg.data.get("cpu", {})

        def on_final(msg: Any, **_: Any) -> None:
            on_snap(msg)
            finals.add(msg.node_id)

        runner.register_message("so_snap", on_snap)
        runner.register_message("so_final", on_final)
        _emit({"event": "listening", "host": job["bind_host"], "port": int(job["bind_port"]),
               "advertise_host": job.get("advertise_host", job["bind_host"]),
               "expect_workers": int(job["expect_workers"])})
        deadline = time.monotonic() + float(job.get("worker_wait", 60.0))
        while len(runner.clients.ready) < int(job["expect_workers"]):
            if stop.is_set():  # Ctrl-C while waiting: interrupted, not a timeout
                runner.quit()
                return 130
            if time.monotonic() > deadline:
                runner.quit()
                return _fail(f"{len(runner.clients.ready)} of {job['expect_workers']} Locust workers "
                             f"connected to {job['bind_host']}:{job['bind_port']} in "
                             f"{job.get('worker_wait', 60.0):g}s",
                             f"start them with: shiftover load --worker --master-host {job.get('advertise_host', job['bind_host'])} "
                             f"--master-port {job['bind_port']} (check the firewall and the port)")
            gevent.sleep(0.1)
        n_workers = len(runner.clients.ready)
        if not job["target"].get("locustfile"):
            runner.send_message("so_job", job["target"])
    else:
        runner = env.create_local_runner()
        _listen(env, gen)
        n_workers = 0
        gevent.spawn(gen.dispatch_forever)

    runner.start(users, spawn_rate=users)
    deadline = time.monotonic() + 60.0
    while runner.user_count < users and time.monotonic() < deadline and not stop.is_set():
        gevent.sleep(0.05)
    _emit({"event": "started", "workers": n_workers, "users": runner.user_count, "pid": os.getpid()})

    def merged() -> dict[int, StepAccumulator]:
        if distributed:
            return merge_snapshots(snapshots)
        return merge_snapshots({"local": gen.snapshot()["steps"]})

    def cpu_of(idx: int) -> float | None:
        vals = [float(c[str(idx)]) for c in worker_cpu.values() if str(idx) in c]
        if idx in gen.cpu_max:
            vals.append(gen.cpu_max[idx])
        return max(vals) if vals else None

    ran: list[tuple[dict[str, Any], float, bool]] = []
    last_total, last_t = 0, time.monotonic()
    for step in steps:
        if stop.is_set():
            break
        t0 = time.monotonic()
        if distributed:
            share = 1.0 / n_workers
            runner.send_message("so_step", {"step": step, "share": share})
            gen._current = (step, t0, share)  # for the master's own CPU sample only
        else:
            gen.begin(step, 1.0)
        _emit({"event": "step_start", "step": int(step["index"]), "rate": (step["start_rate"] + step["end_rate"]) / 2,
               "seconds": step["seconds"], "t": time.time()})
        end = t0 + float(step["seconds"])
        while not stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                break
            stop.wait(timeout=min(1.0, left))
            gen.sample_cpu()
            m = merged()
            total = sum(a.requests for a in m.values())
            now = time.monotonic()
            cur = m.get(int(step["index"]), StepAccumulator())
            _emit({"event": "progress", "step": int(step["index"]),
                   "target_rate": (step["start_rate"] + step["end_rate"]) / 2,
                   "rate": round((total - last_total) / max(now - last_t, 1e-6), 1),
                   "p99_ms": percentile(cur.latency, 0.99), "requests": cur.requests,
                   "failures": cur.failures, "dropped": cur.dropped, "elapsed": round(now - t0, 1), "cpu": cpu_of(int(step["index"])),
                   "users": runner.user_count})
            last_total, last_t = total, now
        complete = not stop.is_set() or time.monotonic() >= end
        ran.append((step, time.monotonic() - t0, complete))
        _emit({"event": "step_end", "step": int(step["index"]), "complete": complete, "t": time.time()})

    # stop issuing, let what is in flight finish (bounded by the request timeout)
    if distributed:
        runner.send_message("so_end", {"drain": timeout + 1.0})
        deadline = time.monotonic() + timeout + 10.0
        while len(finals) < n_workers and time.monotonic() < deadline:
            gevent.sleep(0.05)
        missing = n_workers - len(finals)
    else:
        gen.end()
        _drain(gen, timeout + 1.0)
        missing = 0
    gen.stopped = True
    runner.quit()
    m = merged()
    figures = [
        step_figures(step, m.get(int(step["index"]), StepAccumulator()), seconds=sec, complete=done,
                     cpu_percent=cpu_of(int(step["index"])))
        for step, sec, done in ran
    ]
    _emit({"event": "result", "steps": figures, "workers": n_workers, "users": users,
           "stopped_early": stop.is_set(), "workers_missing": missing})
    return 0


def _run_worker(args: argparse.Namespace) -> int:
    import gevent
    import gevent.event
    from locust.env import Environment

    global GEN
    job = {"timeout": args.timeout, "target": {"locustfile": args.locustfile, "base_url": args.host}}
    gen = GEN = _Generator(float(args.timeout))
    try:
        classes = _user_classes(job) if args.locustfile else [_paced(_url_user(args.timeout), _gen)]
    except SystemExit as e:
        return int(e.code or 2)
    env = Environment(user_classes=classes)
    import locust.runners

    # Locust retries every 5 s, 60 times, then raises from deep recursion: bound it by --worker-wait
    locust.runners.CONNECT_RETRY_COUNT = max(0, math.ceil(args.worker_wait / locust.runners.CONNECT_TIMEOUT) - 1)
    try:
        runner = env.create_worker_runner(args.master_host, args.master_port)
    except (ConnectionError, RecursionError):
        sys.stderr.write(
            f"error: no Locust master answered at {args.master_host}:{args.master_port} in {args.worker_wait:g} s\n"
            f"  hint: start the master first (shiftover load URL --rate ... --master --expect-workers N "
            f"--master-port {args.master_port}), then this worker; check the address and the firewall\n")
        sys.stderr.flush()
        os._exit(2)  # Locust's sockets and greenlets would hold the exit
    sys.stderr.write(f"shiftover load: worker connected to the master at {args.master_host}:{args.master_port}; "
                     "it sends the target and the schedule\n")
    sys.stderr.flush()
    _listen(env, gen)
    gevent.spawn(gen.dispatch_forever)
    done = gevent.event.Event()

    def on_job(msg: Any, **_: Any) -> None:
        if not args.locustfile:  # the URL comes from the master
            _set_target(msg.data, classes)

    def on_step(msg: Any, **_: Any) -> None:
        gen.begin(msg.data["step"], float(msg.data["share"]))

    def on_end(msg: Any, **_: Any) -> None:
        def finish() -> None:
            gen.end()
            _drain(gen, float(msg.data.get("drain", args.timeout + 1.0)))
            runner.send_message("so_final", gen.snapshot())
            done.set()

        gevent.spawn(finish)

    runner.register_message("so_job", on_job)
    runner.register_message("so_step", on_step)
    runner.register_message("so_end", on_end)

    def reporter() -> None:
        while not done.is_set():
            gevent.sleep(1.0)
            gen.sample_cpu()
            runner.send_message("so_snap", gen.snapshot())

    gevent.spawn(reporter)
    stop = gevent.event.Event()
    master_quit = gevent.event.Event()
    gevent.signal_handler(15, stop.set)
    gevent.signal_handler(2, stop.set)
    gevent.spawn(_watch_parent, stop)
    heard: list[float] = []  # armed by the master's first heartbeat (it may start after us)

    def on_heartbeat(**_: Any) -> None:
        heard[:] = [time.monotonic()]

    events: Any = env.events
    events.heartbeat_received.add_listener(on_heartbeat)

    def until_master_silent() -> None:
        while not stop.is_set():
            gevent.sleep(1.0)
            if heard and time.monotonic() - heard[-1] > MASTER_SILENCE:
                sys.stderr.write(f"shiftover load: no heartbeat from the master in {MASTER_SILENCE:g} s; stopping\n")
                gen.end()
                gen.drop_queued()
                stop.set()

    gevent.spawn(until_master_silent)

    def until_master_quits() -> None:
        runner.greenlet.join()  # Locust's worker group ends on the master's quit
        master_quit.set()
        stop.set()

    gevent.spawn(until_master_quits)
    stop.wait()
    if not master_quit.is_set():  # stopped by a signal: tell the master we leave
        runner.quit()
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shiftover.loadtest.child")
    p.add_argument("--job", help="the job file (JSON) the parent wrote")
    p.add_argument("--worker", action="store_true")
    p.add_argument("--master-host", default="127.0.0.1")
    p.add_argument("--master-port", type=int, default=5557)
    p.add_argument("--locustfile", default=None)
    p.add_argument("--host", default=None)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--worker-wait", type=float, default=60.0)
    return p


def main(argv: list[str] | None = None) -> int:
    import locust  # noqa: F401  # first: gevent must patch before anything else

    global PARENT
    PARENT = os.getppid()
    args = _parser().parse_args(argv)
    if args.worker:
        return _run_worker(args)
    with open(args.job, encoding="utf-8") as f:
        job = json.load(f)
    os.unlink(args.job)  # it may hold header secrets: gone once read, even if the parent is killed
    return _run_master(job)


if __name__ == "__main__":
    sys.exit(main())
