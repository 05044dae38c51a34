"""Public test doubles: an in-memory router, a scripted provider, simulated counts
for ``compare`` gates, a fake clock.

Used by shiftover's own engine tests and by anyone writing a router or provider
plugin. They honour the same contracts as the real implementations (the router
contract suite runs over ``InMemoryRouter`` too).
"""

from __future__ import annotations

import multiprocessing
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future
from typing import Any

from shiftover.errors import NoData, ProviderError, RouterError
from shiftover.types import EnvCounts, Measurement, Weights, write_path


class FakeClock:
    """A clock that only moves when told: ``sleep`` advances it instantly."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


class InlineExecutor(Executor):
    """An executor that runs each job at once, on the caller's thread: engine tests
    with hooks stay deterministic under a :class:`FakeClock`."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


class InMemoryRouter:
    """A router that keeps integer weights on a ``0..scale`` scale, like a backend.

    ``fail_reads`` / ``fail_applies`` make the next N calls raise RouterError, to
    test retries; ``history`` records every applied split and ``served`` every
    pair the backend passed through (intermediate writes included), so tests can
    check that no write ever overshoots. ``unreadable`` makes every ``read``
    raise (a frozen or misconfigured backend) while ``verify(0%)`` still works.
    """

    def __init__(self, initial: Weights | None = None, scale: int = 256,
                 key: str = "memory:router") -> None:
        self.scale = scale
        self.key = key
        self._old, self._new = (initial or Weights(0)).to_backend(scale)
        self.fail_reads = 0
        self.fail_applies = 0
        self.unreadable: str | None = None
        self.history: list[Weights] = []
        self.served: list[tuple[int, int]] = [(self._old, self._new)]
        self.on_apply: Callable[[Weights], None] | None = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"in-memory router (0-{self.scale})"

    def lease_key(self) -> str:
        return self.key

    def read(self) -> Weights:
        with self._lock:
            if self.unreadable is not None:
                raise RouterError(f"in-memory router: {self.unreadable}")
            if self.fail_reads > 0:
                self.fail_reads -= 1
                raise RouterError("in-memory router: read failure (scripted)")
            w = Weights.from_backend(self._old, self._new)
        if w is None:
            raise RouterError("in-memory router: both weights are 0")
        return w

    def apply(self, weights: Weights) -> None:
        if self.on_apply is not None:
            self.on_apply(weights)
        with self._lock:
            if self.fail_applies > 0:
                self.fail_applies -= 1
                raise RouterError("in-memory router: apply failure (scripted)")
            try:
                target = weights.to_backend(self.scale)
            except ValueError as exc:
                raise RouterError(f"in-memory router: {exc}") from None
            for pair in write_path((self._old, self._new), target):
                self.served.append(pair)
            self._old, self._new = target
            self.history.append(weights)

    def verify(self, weights: Weights) -> bool | None:
        if weights.new_percent == 0:
            with self._lock:
                return self._new == 0 and self._old > 0
        return self.read() == weights

    def set_raw(self, old: int, new: int) -> None:
        """Change the backend behind the engine's back (an operator, a reload)."""
        with self._lock:
            self._old, self._new = old, new
            self.served.append((old, new))

    @property
    def raw(self) -> tuple[int, int]:
        with self._lock:
            return (self._old, self._new)


Scripted = Measurement | Exception | float | None


class ScriptedProvider:
    """Returns the scripted outcomes in order, then repeats the last one.

    A float becomes ``Measurement(value)``; None raises NoData; an exception is
    raised as is. ``samples`` applies to floats.
    """

    def __init__(self, script: Iterable[Scripted], *, samples: int | None = 100) -> None:
        self.script = list(script)
        if not self.script:
            raise ValueError("a script needs at least one outcome")
        self.samples = samples
        self.calls = 0
        self._lock = threading.Lock()

    def set(self, outcome: Scripted) -> None:
        """Replace the script with one outcome, repeated."""
        with self._lock:
            self.script = [outcome]
            self.calls = 0

    def measure(self, *, now: float) -> Measurement:
        with self._lock:
            item = self.script[min(self.calls, len(self.script) - 1)]
            self.calls += 1
        if item is None:
            raise NoData("scripted: no data")
        if isinstance(item, Exception):
            raise item
        if isinstance(item, Measurement):
            return item
        return Measurement(float(item), now, self.samples)


class SimulatedCounts:
    """A ``compare`` gate's count source over simulated traffic: ``rate`` requests
    per second of the ``now`` it is called with, split between the environments as ``router`` reads,
    each failing with its environment's error rate (seeded draws, so a test is
    repeatable). Change ``old_error_rate`` / ``new_error_rate`` at any time (a
    fault); ``fail`` makes the next calls raise it (a backend that went away).

    The traffic of a span is drawn when ``counts`` is called (with the split read
    then), so a test that moves the clock in big jumps gets the split of the
    jump's end: call it at every check, as the engine does."""

    def __init__(self, router: Any, *, rate: float = 100.0,
                 old_error_rate: float = 0.001, new_error_rate: float = 0.001,
                 seed: int = 0) -> None:
        self.router, self.rate = router, rate
        self.old_error_rate, self.new_error_rate = old_error_rate, new_error_rate
        self.fail: Exception | None = None
        self._random = random.Random(seed)
        self._at: float | None = None
        self._carry = 0.0
        self._totals = [0, 0, 0, 0]
        self._marks: dict[float, tuple[int, ...]] = {}

    def describe(self) -> str:
        return f"simulated traffic at {self.rate:g} req/s"

    def _errors(self, n: int, p: float) -> int:
        return sum(self._random.random() < p for _ in range(n))

    def _advance(self, now: float) -> None:
        if self._at is not None and now > self._at:
            self._carry += (now - self._at) * self.rate
            total, self._carry = int(self._carry), self._carry - int(self._carry)
            w = self.router.read()
            new = round(total * float(w.share)) if w is not None else 0
            old = total - new
            self._totals[0] += old
            self._totals[1] += self._errors(old, self.old_error_rate)
            self._totals[2] += new
            self._totals[3] += self._errors(new, self.new_error_rate)
        self._at = now if self._at is None else max(self._at, now)

    def counts(self, *, since: float, now: float) -> EnvCounts:
        if self.fail is not None:
            raise self.fail
        self._advance(now)
        self._marks.setdefault(now, tuple(self._totals))
        if since not in self._marks:
            raise NoData("simulated: no count at the step's start")
        base = self._marks[since]
        self._marks = {t: v for t, v in self._marks.items() if t >= since}
        o, ox, n, nx = (a - b for a, b in zip(self._totals, base, strict=True))
        return EnvCounts(o, ox, n, nx)


def plan_dict(**overrides: Any) -> dict[str, Any]:
    """A small valid plan as a dict, for tests: http gate + prometheus gate."""
    base: dict[str, Any] = {
        "service": "svc",
        "router": {"type": "haproxy", "socket": "/tmp/none.sock", "backend": "web",
                   "old": "old", "new": "new"},
        "steps": [10, 50, 100],
        "bake": "60s",
        "interval": "10s",
        "normal_state": [
            {"name": "errors", "type": "prometheus", "url": "http://127.0.0.1:1",
             "query": "x", "max": 0.01},
        ],
        "failure_limit": 2,
        "on_failure": "rollback",
        "approvals": [],
    }
    base.update(overrides)
    return base


def plan_yaml(normal_state: str, *, socket: str = "/tmp/admin.sock",
              steps: str = "[10, 100]") -> str:
    """A small plan file's text (an HAProxy router) around ``normal_state``, the gates'
    YAML as it goes under ``normal_state:`` (each ``  - name: ...``). The first gate
    starts on line 12: tests of a backend's plan errors count lines from there."""
    return f"""\
service: shop
router:
  type: haproxy
  socket: {socket}
  backend: web
  old: ec2
  new: eks
steps: {steps}
bake: 1m
normal_state:
{normal_state}"""


def race_in_processes(
    target: Callable[..., None], argses: Sequence[tuple[Any, ...]], *, timeout: float = 60.0
) -> list[Any]:
    """Run ``target(*args, barrier, results)`` in one process per ``args``; return what
    each put on ``results`` (one item each). All wait at ``barrier``, then race.

    Processes are *spawned*, not forked: forking a parent that has threads (a test
    server's, an HTTP client's) can leave the child stuck on a lock held mid-fork.
    ``target`` must be importable (a module-level function). Every process is
    joined, and killed if it outlives ``timeout``.
    """
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(argses))
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, results)) for args in argses]
    for p in procs:
        p.start()
    try:
        return [results.get(timeout=timeout) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=timeout)
            if p.is_alive():
                p.kill()
                p.join()


__all__ = [
    "FakeClock",
    "InMemoryRouter",
    "InlineExecutor",
    "ProviderError",
    "ScriptedProvider",
    "SimulatedCounts",
    "plan_dict",
    "race_in_processes",
]
