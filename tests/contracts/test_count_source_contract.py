"""The CountSource contract, run over every source of ``compare`` gates.

What every source promises (see ``shiftover.providers.base.CountSource``):

1. Built from its spec by ``shiftover.providers.compare.build_count_source(spec)``.
2. ``counts(since=t, now=t)`` marks a step's start: all zeros (or ``NoData``).
3. Later ``counts(since=t, now=...)`` are exact integer counts of each
   environment's requests and errors since the mark (an ``EnvCounts``), that
   never go down as ``now`` moves on, and see the traffic sent meanwhile:
   requests to old count on old, requests to new on new, failed ones as errors.
4. Counter resets (an HAProxy reload, a restarted pod) are absorbed: the counts
   after a reset still include what was counted before it.
5. A broken new environment is *errors of new*, never an absence: a dead new
   server (refused connections) and one taken out by its health check while its
   weight says it should serve count as failed requests of new.
6. A source that cannot work (nothing listening, no such backend or server, a
   query the backend rejects) raises ``ProviderError`` that is not ``NoData``,
   with a hint, from the very first call, so ``shiftover validate`` fails on it;
   nothing else leaks (no httpx, socket or KeyError).
7. Messages never contain credentials.

A case is a ``SourceCase``: it builds a spec against its backend, sends traffic
(``traffic(old=..., new=..., new_fails=...)``) and plays failures. Cases live
beside this suite; ``test_every_source_has_a_case`` fails until every source in
``COUNT_SOURCES`` has one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from shiftover.errors import NoData, ProviderError
from shiftover.providers.compare import COUNT_SOURCES, build_count_source
from shiftover.types import EnvCounts

SECRET = "count-s3cret"
T0 = 1_800_000_000.0


class SourceCase(Protocol):
    def spec(self) -> Any:
        """A source spec pointing at this backend."""
        ...

    def traffic(self, *, old: int, new: int, new_fails: int = 0) -> None:
        """Make ``old`` requests to old and ``new`` to new, ``new_fails`` of them failing,
        and wait until the backend can count them."""
        ...

    def reset_counters(self) -> None:
        """Make the backend's counters start again from 0 (a reload, a restart)."""
        ...

    def fail(self, mode: str) -> None:
        """Make the next counts fail in the way ``mode`` names."""
        ...

    def now(self) -> float:
        """The time to pass as ``now`` (a backend with history needs real time)."""
        ...

    def split_traffic(self, n: int) -> None:
        """Send ``n`` requests the way the router splits them (for the breakage modes)."""
        ...


# --- HAProxy: a real HAProxy over two stub backends ---------------------------------


@dataclass
class HAProxyCase:
    directory: Path
    stack: Any
    backend: str = "web"
    old: str = "old"
    new: str = "new"
    socket: str = ""
    clock: float = T0

    def spec(self) -> Any:
        from shiftover.providers.haproxy_stats import HAProxyCountsSpec

        return HAProxyCountsSpec(type="haproxy_stats", socket=self.socket or
                                 self.stack.haproxy.socket_path, backend=self.backend,
                                 old=self.old, new=self.new, timeout=2.0)

    def _send(self, server: str, n: int) -> None:
        rt = self.stack.haproxy.runtime()
        other = "old" if server == "new" else "new"
        rt.command(f"set server web/{other} weight 0")
        rt.command(f"set server web/{server} weight 256")
        with httpx.Client(timeout=5.0) as client:
            for _ in range(n):
                client.get(self.stack.haproxy.frontend_url)
        rt.command("set server web/old weight 256")
        rt.command("set server web/new weight 256")

    def traffic(self, *, old: int, new: int, new_fails: int = 0) -> None:
        self.stack.new.fail_ratio = 0.0 if not new else new_fails / new
        self._send("old", old)
        self._send("new", new)
        self.stack.new.fail_ratio = 0.0

    def reset_counters(self) -> None:
        self.stack.haproxy.runtime().command("clear counters all")

    def fail(self, mode: str) -> None:
        rt = self.stack.haproxy.runtime()
        if mode == "refused":
            self.socket = str(self.directory / "missing.sock")
        elif mode == "unknown_backend":
            self.backend = "nope"
        elif mode == "unknown_old":
            self.old = "ec2"
        elif mode == "unknown_new":
            self.new = "eks"
        elif mode == "dead_new":
            rt.command("set server web/new addr 127.0.0.1 port 9")
        elif mode == "down_new":
            rt.command("set server web/new health down")
        else:  # pragma: no cover
            raise AssertionError(mode)

    def now(self) -> float:
        self.clock += 1.0
        return self.clock

    def split_traffic(self, n: int) -> None:
        with httpx.Client(timeout=5.0) as client:
            for _ in range(n):
                client.get(self.stack.haproxy.frontend_url)


@contextmanager
def haproxy_case(tmp_path: Path) -> Iterator[SourceCase]:
    from shiftover.demo.haproxy import find_haproxy, stub_stack

    if find_haproxy() is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    with stub_stack(tmp_path, new_weight=256) as st:
        yield HAProxyCase(tmp_path, st)


@dataclass(frozen=True)
class Case:
    source_type: str
    open: Callable[[Path], AbstractContextManager[SourceCase]]
    # failure modes that must be a ProviderError (not NoData) from the first call
    errors: tuple[str, ...] = ()
    # failure modes in which the new environment is broken: errors of new
    breakage: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


CASES: dict[str, Case] = {
    "haproxy_stats": Case("haproxy_stats", haproxy_case,
                          errors=("refused", "unknown_backend", "unknown_old", "unknown_new"),
                          breakage=("dead_new", "down_new")),
}

# Other backends' cases live beside their provider tests, one module each
# (tests/providers/count_case_<backend>.py), so that adding a source touches its
# own files: each module's CASES maps a case name to (source type, open, errors,
# breakage), open being a context manager factory taking a tmp_path.
for _path in sorted((Path(__file__).parents[1] / "providers").glob("count_case_*.py")):
    _module = importlib.import_module(_path.stem)
    for _name, (_type, _open, _errors, _breakage) in _module.CASES.items():
        CASES[_name] = Case(_type, _open, errors=tuple(_errors), breakage=tuple(_breakage))


def _counts(source: Any, since: float, now: float) -> EnvCounts | ProviderError:
    try:
        c = source.counts(since=since, now=now)
    except ProviderError as exc:
        return exc
    assert isinstance(c, EnvCounts)
    return c


def _start(case: SourceCase) -> tuple[Any, float]:
    source = build_count_source(case.spec())
    t = case.now()
    first = _counts(source, t, t)
    assert isinstance(first, NoData) or first == EnvCounts(0, 0, 0, 0), first
    if isinstance(first, NoData):  # a source may need a second look to mark the start
        t = case.now()
        assert _counts(source, t, t) == EnvCounts(0, 0, 0, 0)
    return source, t


@pytest.mark.parametrize("name", sorted(CASES))
def test_counts_what_each_environment_served(name: str, tmp_path: Path) -> None:
    with CASES[name].open(tmp_path) as case:
        source, since = _start(case)
        case.traffic(old=8, new=4, new_fails=2)
        c = _counts(source, since, case.now())
        assert c == EnvCounts(8, 0, 4, 2), c
        case.traffic(old=2, new=2)
        later = _counts(source, since, case.now())
        assert later == EnvCounts(10, 0, 6, 2), later


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_counter_reset_is_absorbed(name: str, tmp_path: Path) -> None:
    with CASES[name].open(tmp_path) as case:
        source, since = _start(case)
        case.traffic(old=4, new=4, new_fails=1)
        assert _counts(source, since, case.now()) == EnvCounts(4, 0, 4, 1)
        case.reset_counters()
        case.traffic(old=2, new=2, new_fails=1)
        c = _counts(source, since, case.now())
        assert c == EnvCounts(6, 0, 6, 2), c


@pytest.mark.parametrize(("name", "mode"), [(n, m) for n, c in sorted(CASES.items())
                                            for m in c.errors])
def test_a_source_that_cannot_work_is_an_error_from_the_first_call(
        name: str, mode: str, tmp_path: Path) -> None:
    with CASES[name].open(tmp_path) as case:
        case.fail(mode)
        source = build_count_source(case.spec())
        t = case.now()
        for now in (t, case.now()):
            out = _counts(source, t, now)
            assert isinstance(out, ProviderError) and not isinstance(out, NoData), out
            assert out.hint, f"a source that cannot work must say how to fix it: {out}"
            assert SECRET not in str(out)


@pytest.mark.parametrize(("name", "mode"), [(n, m) for n, c in sorted(CASES.items())
                                            for m in c.breakage])
def test_a_broken_new_environment_is_errors_of_new(name: str, mode: str, tmp_path: Path) -> None:
    with CASES[name].open(tmp_path) as case:
        source, since = _start(case)
        case.fail(mode)
        case.split_traffic(8)  # both environments are weighted to serve
        c = _counts(source, since, case.now())
        assert isinstance(c, EnvCounts), c
        assert c.new_requests > 0 and c.new_errors == c.new_requests, c


def test_every_source_has_a_case() -> None:
    missing = set(COUNT_SOURCES) - {c.source_type for c in CASES.values()}
    assert not missing, f"count sources without a contract case: {sorted(missing)}"
