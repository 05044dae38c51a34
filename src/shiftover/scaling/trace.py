"""Traffic traces: the demand the simulator replays.

A trace is a CSV with a header ``timestamp,requests`` and an optional ``jobs``
column (background jobs enqueued in the same bucket). ``timestamp`` is ISO 8601
(``1995-07-01T04:00:00Z``; a timestamp without an offset is taken as UTC) and
marks the *start* of the bucket. Buckets are one minute or one second long; the
size is detected from the first two timestamps and every row must follow the
previous one by exactly that much: a gap is an error, not zero traffic, because
a missing log (a server outage, a logging gap) would otherwise read as a quiet
period and flatter the autoscaler.

The simulator works per second. A per-minute count ``n`` becomes ``n / 60``
requests in each second of that minute (a step function): the trace does not
say how requests were spread inside the minute, and a step keeps every minute's
total exact.
"""

from __future__ import annotations

import csv
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from shiftover.errors import BadInput

FloatArray = npt.NDArray[np.float64]

_STEPS = {60: "minute", 1: "second"}


@dataclass(frozen=True, eq=False)
class Trace:
    """Request (and job) counts per bucket, from ``start`` (UTC), contiguous."""

    start: datetime
    step_seconds: int
    requests: FloatArray
    jobs: FloatArray | None = None
    source: str = ""

    @property
    def buckets(self) -> int:
        return int(self.requests.shape[0])

    @property
    def duration_seconds(self) -> int:
        return self.buckets * self.step_seconds

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.duration_seconds)

    def requests_per_second(self) -> FloatArray:
        """Demand in requests/s for every second of the trace (step function)."""
        return _per_second(self.requests, self.step_seconds)

    def jobs_per_second(self) -> FloatArray | None:
        if self.jobs is None:
            return None
        return _per_second(self.jobs, self.step_seconds)

    def window(self, start: datetime | None = None, end: datetime | None = None) -> Trace:
        """The buckets in ``[start, end)``; both bounds are rounded to a bucket."""
        if start is not None and end is not None and start >= end:
            raise BadInput(
                f"the window's start {_fmt(start)} is not before its end {_fmt(end)}",
                hint="the start is inclusive and the end exclusive: give a start earlier than the end",
            )
        first = 0
        last = self.buckets
        if start is not None:
            first = max(0, _ceil_div(_seconds_between(self.start, start), self.step_seconds))
        if end is not None:
            last = min(self.buckets, _seconds_between(self.start, end) // self.step_seconds)
        if last <= first:
            raise BadInput(
                f"the window [{_fmt(start) if start else _fmt(self.start)}, "
                f"{_fmt(end) if end else _fmt(self.end)}) holds no rows of {self.source or 'the trace'}",
                hint=f"the trace covers {_fmt(self.start)} to {_fmt(self.end)} (end exclusive): "
                f"pick --from/--to inside it, e.g. --from {_fmt(self.start)} "
                f"--to {_fmt(min(self.end, self.start + timedelta(days=1)))}",
            )
        return Trace(
            start=self.start + timedelta(seconds=first * self.step_seconds),
            step_seconds=self.step_seconds,
            requests=self.requests[first:last],
            jobs=None if self.jobs is None else self.jobs[first:last],
            source=self.source,
        )

    def scaled(self, factor: float) -> Trace:
        """Demand multiplied by ``factor`` (a public trace's shape at your own traffic)."""
        if not (factor > 0 and np.isfinite(factor)):  # nan and inf too: inf * 0 requests is nan
            raise BadInput(f"--scale must be a finite number greater than 0, got {factor:g}")
        return Trace(
            start=self.start,
            step_seconds=self.step_seconds,
            requests=self.requests * factor,
            jobs=None if self.jobs is None else self.jobs * factor,
            source=self.source,
        )


def _per_second(counts: FloatArray, step: int) -> FloatArray:
    if step == 1:
        return counts.astype(np.float64, copy=True)
    return np.repeat(counts / float(step), step)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _seconds_between(a: datetime, b: datetime) -> int:
    return int((b - a).total_seconds())


def _fmt(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str, *, where: str = "") -> datetime:
    """ISO 8601 to an aware UTC datetime; naive timestamps are UTC."""
    value = text.strip()
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        prefix = f"{where}: " if where else ""
        raise BadInput(
            f"{prefix}{value!r} is not an ISO 8601 timestamp",
            hint="write timestamps like 1995-07-13T13:49:00Z (a date alone, 1995-07-13, also works for --from/--to)",
        ) from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def parse_window(
    start: str | None,
    end: str | None,
    *,
    start_flag: str = "--from",
    end_flag: str = "--to",
) -> tuple[datetime | None, datetime | None]:
    """``--from`` / ``--to`` as UTC datetimes, refusing a window that is reversed or empty.

    Checked here, before the trace is read, so the message can name the flags
    and the values as typed, and the hint is the corrected command-line fragment.
    """
    t0 = parse_timestamp(start, where=start_flag) if start else None
    t1 = parse_timestamp(end, where=end_flag) if end else None
    if start is None or end is None or t0 is None or t1 is None or t0 < t1:
        return t0, t1
    if t0 == t1:
        later = _like(start, t0 + timedelta(days=1))
        raise BadInput(
            f"{start_flag} {_shown(start, t0)} and {end_flag} {_shown(end, t1)} are the same moment: "
            f"the window is empty ({start_flag} is inclusive, {end_flag} exclusive)",
            hint=f"give a later {end_flag}, e.g. {start_flag} {shlex.quote(start.strip())} "
            f"{end_flag} {shlex.quote(later)}",
        )
    raise BadInput(
        f"{start_flag} {_shown(start, t0)} is later than {end_flag} {_shown(end, t1)}: "
        f"the window's bounds are reversed ({start_flag} is the start, {end_flag} the end)",
        hint=f"swap them: {start_flag} {shlex.quote(end.strip())} {end_flag} {shlex.quote(start.strip())}",
    )


def _shown(text: str, ts: datetime) -> str:
    """The value as typed, and as read when that differs (a date alone, another offset)."""
    typed = text.strip()
    read = _fmt(ts)
    return typed if typed == read else f"{typed} ({read})"


def _like(text: str, ts: datetime) -> str:
    """``ts`` written the way ``text`` was: a date alone stays a date."""
    typed = text.strip()
    if len(typed) == 10 and ts.hour == ts.minute == ts.second == 0:
        return ts.date().isoformat()
    return _fmt(ts)


def load_trace(
    path: str | Path,
    *,
    scale: float = 1.0,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Trace:
    """Read a trace CSV, then apply the ``[start, end)`` window and the ``scale`` factor.

    Every problem is a :class:`BadInput` naming ``file:line``.
    """
    p = Path(path)
    try:
        fh = p.open(newline="", encoding="utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    except OSError as exc:
        raise BadInput(
            f"cannot read trace {p}: {exc.strerror or exc}",
            hint="pass --trace with the path of a CSV file with a timestamp,requests header",
        ) from None
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise BadInput(f"{p}:1: the trace is empty", hint="the first line must be the header timestamp,requests[,jobs]")
        names = [h.strip().lower() for h in header]
        if "timestamp" not in names or "requests" not in names:
            raise BadInput(
                f"{p}:1: the header is {','.join(header)!r}; it must name the columns timestamp and requests",
                hint="write a header line timestamp,requests (optionally ,jobs)",
            )
        i_ts, i_req = names.index("timestamp"), names.index("requests")
        i_jobs = names.index("jobs") if "jobs" in names else None
        width = max(i_ts, i_req, i_jobs if i_jobs is not None else 0) + 1
        stamps: list[datetime] = []
        reqs: list[float] = []
        jobs: list[float] = []
        step = 0
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            where = f"{p}:{line}"
            if len(row) < width:
                raise BadInput(f"{where}: expected {width} columns, found {len(row)}: {','.join(row)!r}")
            ts = parse_timestamp(row[i_ts], where=where)
            reqs.append(_count(row[i_req], where, "requests"))
            if i_jobs is not None:
                jobs.append(_count(row[i_jobs], where, "jobs"))
            if stamps:
                gap = (ts - stamps[-1]).total_seconds()
                if step == 0:
                    if gap not in _STEPS:
                        raise BadInput(
                            f"{where}: the first two rows are {gap:g} s apart; a trace has one row per minute (60 s) or per second (1 s)",
                            hint="aggregate the log into per-minute or per-second counts",
                        )
                    step = int(gap)
                elif gap != step:
                    raise BadInput(
                        f"{where}: {_fmt(ts)} follows {_fmt(stamps[-1])} ({gap:g} s); every row must be one {_STEPS[step]} after the previous",
                        hint="fill quiet buckets with 0, and cut real data gaps out with --from/--to (a gap is not zero traffic)",
                    )
            stamps.append(ts)
    if not stamps:
        raise BadInput(f"{p}: the trace has a header but no rows", hint="add rows like 1995-07-01T04:00:00Z,42")
    if step == 0:
        step = 60  # a single row: per minute is the common case
    trace = Trace(
        start=stamps[0],
        step_seconds=step,
        requests=np.asarray(reqs, dtype=np.float64),
        jobs=np.asarray(jobs, dtype=np.float64) if i_jobs is not None else None,
        source=str(p),
    )
    if start is not None or end is not None:
        trace = trace.window(start, end)
    if scale != 1.0:
        trace = trace.scaled(scale)
    return trace


def _count(text: str, where: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadInput(f"{where}: {column} {text.strip()!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise BadInput(f"{where}: {column} {text.strip()!r} must be a finite number >= 0")
    return value
