"""Chaos suite settings, the figures it records, and the no-leftover-process check.

Two profiles, chosen by ``SHIFTOVER_CHAOS``:

- ``quick`` (default, part of ``make test``): 12 SIGKILLs, each fault once.
- ``long`` (``make chaos``): 60 SIGKILLs, each fault three times.

``SHIFTOVER_CHAOS_KILLS``, ``SHIFTOVER_CHAOS_REPEAT`` and ``SHIFTOVER_CHAOS_SEED``
override one setting each. ``SHIFTOVER_CHAOS_REPORT=path`` appends one JSON line
of figures per test to ``path`` (what docs/reliability.md is written from); the
figures are also printed at the end of the session.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .harness import own_children


@dataclass(frozen=True)
class Profile:
    name: str
    kills: int
    repeat: int
    seed: int
    report: Path | None


def profile() -> Profile:
    name = os.environ.get("SHIFTOVER_CHAOS", "quick").strip() or "quick"
    if name not in ("quick", "long"):
        raise pytest.UsageError(f"SHIFTOVER_CHAOS={name!r}: use quick or long")
    kills = 60 if name == "long" else 12
    repeat = 3 if name == "long" else 1
    seed = int(time.time()) % 100000
    kills = int(os.environ.get("SHIFTOVER_CHAOS_KILLS", kills))
    repeat = int(os.environ.get("SHIFTOVER_CHAOS_REPEAT", repeat))
    seed = int(os.environ.get("SHIFTOVER_CHAOS_SEED", seed))
    report = os.environ.get("SHIFTOVER_CHAOS_REPORT")
    return Profile(name, kills, repeat, seed, Path(report) if report else None)


PROFILE = profile()
_RECORDS: list[dict[str, Any]] = []


def _code_under_test() -> dict[str, Any]:
    import shiftover

    src = Path(shiftover.__file__).resolve().parent.parent
    info: dict[str, Any] = {"src": str(src)}
    try:
        info["commit"] = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
                                        capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=10).stdout
        info["dirty"] = bool(dirty.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    if os.environ.get("SHIFTOVER_CHAOS_LABEL"):
        info["label"] = os.environ["SHIFTOVER_CHAOS_LABEL"]
    return info


@pytest.fixture
def chaos_profile() -> Profile:
    return PROFILE


@pytest.fixture
def chaos_record(request: pytest.FixtureRequest) -> Iterator[Callable[..., None]]:
    """Record figures for this test: printed at the end, appended to the report file."""
    record: dict[str, Any] = {"test": request.node.nodeid, "profile": PROFILE.name,
                              "seed": PROFILE.seed, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                              "cores": os.cpu_count(), **_code_under_test()}

    def put(**kw: Any) -> None:
        record.update(kw)

    yield put
    _RECORDS.append(record)
    if PROFILE.report is not None:
        PROFILE.report.parent.mkdir(parents=True, exist_ok=True)
        with PROFILE.report.open("a") as f:
            f.write(json.dumps(record, default=str) + "\n")


@pytest.fixture
def chaos_artifact(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str, str], Path]:
    """Save a text artifact (a timeline) in the test's tmp dir, and beside the report
    file when there is one; returns the path to quote in a failure message."""

    def save(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        if PROFILE.report is not None:
            test = request.node.name.replace("/", "_")
            label = os.environ.get("SHIFTOVER_CHAOS_LABEL", "")
            keep = PROFILE.report.parent / "chaos-artifacts" / f"{label}{'-' if label else ''}{test}-{name}"
            keep.parent.mkdir(parents=True, exist_ok=True)
            keep.write_text(text)
            return keep
        return path

    return save


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Every process a chaos test starts is gone when it ends (even on failure)."""
    before = set(own_children())
    yield
    deadline = time.monotonic() + 5
    left = [p for p in own_children() if p not in before]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in own_children() if p not in before]
    for line in left:  # ours by construction (children of this process): stop them by pid
        try:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    assert not left, f"processes left running after the test: {left}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _RECORDS:
        return
    tr = terminalreporter
    tr.section(f"chaos figures ({PROFILE.name}, seed {PROFILE.seed})")
    for rec in _RECORDS:
        shown = {k: v for k, v in rec.items()
                 if k not in ("test", "profile", "seed", "date", "cores", "src", "details")}
        tr.write_line(f"{rec['test'].split('::')[-1]}: {json.dumps(shown, default=str)}")
