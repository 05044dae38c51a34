"""A plan's ``load:`` block: synthetic traffic during a rehearsal run.

Staging has no real users, so a rehearsal's gates would see no traffic and hold
every step ("no evidence is not health"). A plan may carry::

    load:
      url: https://staging.example.com/api/items   # through the router, as users come in
      rate: 50                                     # requests per second, for the whole run
      headers: {Authorization: "Bearer ${STAGING_TOKEN}"}

and ``shiftover run`` then drives that rate through the same Locust runner as
``shiftover load`` (open model, one process or ``workers``), from before the
first step until the run ends (promoted, rolled back or held), and prints what
the clients saw. The load never decides anything: the gates judge the service
as they would with real users. The rate is constant because a rehearsal
rehearses the cutover, not the load: the load test is ``shiftover load``.

The block is optional; production plans have real users and leave it out.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from shiftover.errors import ShiftoverError
from shiftover.spec import MAX_DURATION, Duration, SpecModel, rule


class LoadSpec(SpecModel):
    """Synthetic traffic for a rehearsal run (``load:`` in the plan)."""

    url: str | None = Field(default=None, description="the URL to request (through the router), http(s)")
    locustfile: str | None = Field(default=None, description="or a locustfile whose tasks run at the rate")
    rate: float = Field(gt=0, le=100_000, allow_inf_nan=False, description="requests per second, constant for the whole run")
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    workers: int = Field(default=0, ge=0, le=64, description="local Locust worker processes (0: one process)")
    users: int | None = Field(default=None, ge=1, description="requests in flight at most (default: rate x 0.5 s + 10)")
    timeout: Duration = Field(default=10.0, gt=0, description="request timeout")
    insecure: bool = Field(default=False, description="do not verify the target's TLS certificate (self-signed staging)")

    @model_validator(mode="after")
    def _has_a_target(self) -> LoadSpec:
        if self.url is None and self.locustfile is None:
            raise rule("load needs a url (or a locustfile): the traffic a rehearsal sends through the router, "
                       "e.g. url: https://staging.example.com/api/items")
        return self


def preflight(spec: LoadSpec, *, base_dir: Path | None = None) -> str | None:
    """For ``validate``: why the block could not send its traffic (None: it could)."""
    try:
        SyntheticLoad(spec, base_dir=base_dir)
    except ShiftoverError as exc:
        return str(exc)
    return None


class SyntheticLoad:
    """Runs a :class:`LoadSpec` in a background thread for as long as a run lasts."""

    def __init__(self, spec: LoadSpec, *, base_dir: Path | None = None) -> None:
        from shiftover.loadtest.runner import LoadJob, check_reachable, default_users, parse_target
        from shiftover.loadtest.schedule import parse_schedule

        locustfile = None
        if spec.locustfile is not None:
            locustfile = Path(spec.locustfile)
            if not locustfile.is_absolute() and base_dir is not None:
                locustfile = base_dir / locustfile
        self.target = parse_target(spec.url, method=spec.method,
                                   headers=[f"{k}: {v}" for k, v in spec.headers.items()],
                                   body=spec.body, locustfile=locustfile, insecure=spec.insecure)
        if self.target.base_url is not None:
            check_reachable(self.target.base_url, verify_tls=not spec.insecure)
        schedule = parse_schedule(f"{spec.rate:g}", duration=MAX_DURATION)
        self.spec = spec
        self.job = LoadJob(target=self.target, schedule=schedule,
                           users=spec.users or default_users(spec.rate, 0.25),
                           timeout=float(spec.timeout), workers=spec.workers)
        self._run: Any = None
        self._thread: threading.Thread | None = None
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
        self._started = threading.Event()

    def describe(self) -> str:
        return f"synthetic load: {self.spec.rate:g} req/s to {self.target.describe()} (the plan's load block)"

    def start(self, timeout: float = 60.0) -> None:
        """Start Locust and return once it sends (or raise with its error)."""
        from shiftover.loadtest.runner import LoadRun

        def on_event(e: dict[str, Any]) -> None:
            if e.get("event") == "step_start":
                self._started.set()

        self._run = LoadRun(self.job, on_event=on_event)

        def body() -> None:
            try:
                self.result = self._run.run()
            except ShiftoverError as exc:
                self.error = str(exc)
            finally:
                self._started.set()

        self._thread = threading.Thread(target=body, name="synthetic-load", daemon=True)
        self._thread.start()
        started = self._started.wait(timeout)
        if self.error is not None:
            raise ShiftoverError(f"the plan's load block could not start: {self.error}")
        if not started:
            raise ShiftoverError(f"the plan's load block did not start sending within {timeout:g} s",
                                 hint="run the same load alone to see why: shiftover load "
                                      f"{self.target.public_url} --rate {self.spec.rate:g} --duration 10s")

    def stop(self, timeout: float = 60.0) -> dict[str, Any] | None:
        """Stop the traffic; the totals the clients saw (None if it never ran)."""
        if self._run is not None:
            self._run.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        return self.summary()

    def summary(self) -> dict[str, Any] | None:
        if self.result is None:
            return None
        steps = self.result.get("steps") or []
        requests = sum(int(s["requests"]) for s in steps)
        failures = sum(int(s["failures"]) for s in steps)
        seconds = sum(float(s["seconds"]) for s in steps)
        p99 = max((s["p99_ms"] for s in steps if s.get("p99_ms") is not None), default=None)
        return {"rate": self.spec.rate, "requests": requests, "failures": failures,
                "seconds": round(seconds, 3),
                "achieved_rate": round(requests / seconds, 2) if seconds > 0 else 0.0,
                "p99_ms": p99, "dropped": sum(int(s.get("dropped", 0)) for s in steps)}


def summary_text(s: dict[str, Any]) -> str:
    p99 = "-" if s.get("p99_ms") is None else f"{s['p99_ms']:g} ms"
    return (f"synthetic load: {s['requests']:,} requests in {s['seconds']:g} s "
            f"({s['achieved_rate']:g} of {s['rate']:g} req/s), {s['failures']:,} failed, p99 {p99}")


__all__ = ["LoadSpec", "SyntheticLoad", "preflight", "summary_text"]
