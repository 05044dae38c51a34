"""Prometheus and Alertmanager as child processes, plus a metrics target you control.

The demo stack and the tests need a *real* Prometheus: the PromQL edge cases a
cutover gate meets (NaN from 0/0 with no traffic, several series where one was
meant, a bad query) are exactly the ones a hand-written fake gets wrong. The
Debian binaries start in ~0.1 s, so each test session runs its own.

Decisions:

- Everything lives in a directory the caller owns (a ``tmp_path``): config,
  rule files, TSDB, logs. Nothing is written elsewhere, nothing is left running.
- Listen on 127.0.0.1 only. The port is found by binding port 0 and closing it;
  the small race with another process is handled by retrying the start on a new
  port when the child dies at startup.
- Alertmanager gets ``--cluster.listen-address=`` (empty): otherwise it binds
  0.0.0.0:9094 for gossip, which a local demo never needs.
- ``reload()`` uses ``POST /-/reload`` (``--web.enable-lifecycle``) so rules can
  change without losing the scraped history.
- Configs are checked with ``promtool check config`` / ``amtool check-config``
  when those tools are installed, so a bad rule fails with the tool's message
  instead of a child that exits silently.
- Output goes to a log file, not a pipe: a chatty child can never block on a
  full pipe, and the log tail is quoted when startup fails.

:class:`MetricsTarget` is the smallest scrape target: a stdlib HTTP server in a
thread serving text-format counters and gauges the caller sets. Tests bump its
counters to make error ratios; the demo uses it for a gauge-driven alert.
"""

from __future__ import annotations

import http.client
import http.server
import math
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx
import yaml

from shiftover.demo.process import (
    ChildProcess,
    QuietHTTPServer,
    StartStop,
    answers_200,
    free_port,
    log_tail,
    serve_in_thread,
    startup_error,
    stop_serving,
)
from shiftover.errors import BadInput, ShiftoverError

_DEBIAN_PACKAGE = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
}


def find_binary(name: str) -> str:
    """Absolute path of ``name`` on PATH, or BadInput naming the Debian package."""
    path = shutil.which(name)
    if path is None:
        package = _DEBIAN_PACKAGE.get(name, name)
        raise BadInput(
            f"{name} was not found on PATH",
            hint=f"install it: apt-get install -y {package} (Debian 12 ships the versions shiftover is tested with)",
        )
    return path


@dataclass(frozen=True)
class ScrapeJob:
    """One Prometheus scrape job: ``targets`` are ``host:port``."""

    job: str
    targets: tuple[str, ...]
    metrics_path: str = "/metrics"

    @classmethod
    def of(
        cls, value: ScrapeJob | tuple[str, Sequence[str]] | tuple[str, Sequence[str], str]
    ) -> ScrapeJob:
        """Accept a ScrapeJob or a ``(job, targets[, metrics_path])`` tuple."""
        if isinstance(value, ScrapeJob):
            return value
        if len(value) == 2:
            return cls(value[0], tuple(value[1]))
        return cls(value[0], tuple(value[1]), value[2])


RuleInput = str | Mapping[str, Any]
JobInput = ScrapeJob | tuple[str, Sequence[str]] | tuple[str, Sequence[str], str]


def rule_files_text(rules: Iterable[RuleInput]) -> list[str]:
    """Rule-file texts from the caller's rules.

    A ``str`` is a whole rule file (YAML). A mapping with ``groups`` is a whole
    rule file as data. Any other mapping is one rule (``alert``/``record`` +
    ``expr`` ...); those are collected into one group named ``shiftover``.
    """
    files: list[str] = []
    loose: list[dict[str, Any]] = []
    for rule in rules:
        if isinstance(rule, str):
            files.append(rule)
        elif "groups" in rule:
            files.append(yaml.safe_dump(dict(rule), sort_keys=False))
        elif "alert" in rule or "record" in rule:
            loose.append(dict(rule))
        else:
            raise BadInput(
                f"rule {dict(rule)!r} is neither a rule file nor a rule",
                hint="pass a rule file ({'groups': [...]}, or its YAML text) or one rule with 'alert' or 'record' and 'expr'",
            )
    if loose:
        files.append(
            yaml.safe_dump({"groups": [{"name": "shiftover", "rules": loose}]}, sort_keys=False)
        )
    return files


class _ManagedProcess(ChildProcess):
    """Start a server binary, wait for ``/-/ready``, stop it on exit."""

    binary_name = ""
    log_name = ""

    def __init__(
        self, directory: Path, *, port: int | None, ready_timeout: float, stop_timeout: float
    ) -> None:
        self._binary = find_binary(self.binary_name)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fixed_port = port
        self.port = port or 0
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.log_path = self.directory / self.log_name
        super().__init__()

    # -- subclass hooks --------------------------------------------------

    def _write_config(self) -> None:
        raise NotImplementedError

    def _argv(self) -> list[str]:
        raise NotImplementedError

    # -- public ----------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """``host:port`` (what a Prometheus config's targets want)."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        if self.running():
            return self
        self._write_config()
        self._launch_on_a_free_port(self._argv, self.log_path, self.ready_timeout,
                                    fixed_port=bool(self._fixed_port), cwd=self.directory)
        return self

    def stop(self) -> None:
        """Terminate, wait, kill after ``stop_timeout``. Safe to call twice."""
        self._end(self.stop_timeout)

    def reload(self) -> None:
        """Re-read config and rule files (``POST /-/reload``)."""
        self._write_config()
        try:
            r = httpx.post(f"{self.url}/-/reload", timeout=10.0)
        except httpx.HTTPError as exc:
            raise ShiftoverError(
                f"{self.binary_name} at {self.url} did not answer the reload: {exc}",
                hint=f"is it still running? see {self.log_path}",
            ) from exc
        if r.status_code != 200:
            raise ShiftoverError(
                f"{self.binary_name} at {self.url} refused the reload (HTTP {r.status_code}): {r.text.strip()[:500]}",
                hint=f"check the config and rule files in {self.directory}",
            )

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines, "\n")

    # -- internals -------------------------------------------------------

    def _ready(self) -> bool:
        return answers_200(self.port, "/-/ready")

    def _not_ready(self, code: int | None) -> ShiftoverError:
        return startup_error(self.binary_name, self.address, code, self.ready_timeout,
                             self.log_path)


def _check(tool: str, args: list[str], what: Path) -> None:
    path = shutil.which(tool)
    if path is None:
        return  # optional: the server itself will refuse a bad config
    done = subprocess.run([path, *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        out = (done.stdout + done.stderr).strip()
        raise BadInput(
            f"{tool} rejected {what}:\n{out}", hint="fix the rules or scrape jobs passed in"
        )


class PrometheusProcess(_ManagedProcess):
    """A Prometheus child process scraping ``jobs``, with optional alert rules.

    ::

        with PrometheusProcess(tmp_path, jobs=[("app", ["127.0.0.1:8000"])],
                               rules=[{"alert": "Down", "expr": "up == 0"}]) as prom:
            httpx.get(f"{prom.url}/api/v1/query", params={"query": "up"})
            prom.set_rules([...]); prom.reload()
    """

    binary_name = "prometheus"
    log_name = "prometheus.log"

    def __init__(
        self,
        directory: Path | str,
        *,
        jobs: Sequence[JobInput] = (),
        rules: Sequence[RuleInput] = (),
        alertmanager: str | None = None,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        port: int | None = None,
        ready_timeout: float = 20.0,
        stop_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            Path(directory), port=port, ready_timeout=ready_timeout, stop_timeout=stop_timeout
        )
        self.jobs = [ScrapeJob.of(j) for j in jobs]
        self.rules: list[RuleInput] = list(rules)
        self.alertmanager = alertmanager
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.config_path = self.directory / "prometheus.yml"

    def set_rules(self, rules: Sequence[RuleInput]) -> None:
        """Replace the rules; takes effect on :meth:`reload` (or the next start)."""
        self.rules = list(rules)

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "scrape_configs": [
                {
                    "job_name": j.job,
                    "metrics_path": j.metrics_path,
                    "static_configs": [{"targets": list(j.targets)}],
                }
                for j in self.jobs
            ],
        }
        if self.rules:
            cfg["rule_files"] = ["rules/*.yml"]
        if self.alertmanager:
            target = self.alertmanager.split("://", 1)[-1].rstrip("/")
            cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [target]}]}]}
        return cfg

    def _write_config(self) -> None:
        rules_dir = self.directory / "rules"
        rules_dir.mkdir(exist_ok=True)
        for old in rules_dir.glob("*.yml"):
            old.unlink()
        for i, text in enumerate(rule_files_text(self.rules)):
            (rules_dir / f"rules-{i}.yml").write_text(text)
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        _check("promtool", ["check", "config", str(self.config_path)], self.config_path)

    def _argv(self) -> list[str]:
        return [
            self._binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address={self.address}",
            "--web.enable-lifecycle",
        ]

    def wait_for_targets(self, timeout: float = 15.0) -> None:
        """Block until every scrape target has been scraped successfully once."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{self.url}/api/v1/targets", params={"state": "active"}, timeout=2.0)
                seen = r.json()["data"]["activeTargets"]
            except (httpx.HTTPError, ValueError, KeyError):
                seen = []
            expected = sum(len(j.targets) for j in self.jobs)
            if len(seen) >= expected and all(t.get("health") == "up" for t in seen):
                return
            time.sleep(0.2)
        states = ", ".join(
            f"{t.get('scrapeUrl')}={t.get('health')} {t.get('lastError', '')}" for t in seen
        )
        raise ShiftoverError(
            f"Prometheus at {self.url}: scrape targets not all up within {timeout:g}s ({states or 'none listed'})",
            hint="check that the targets listen on the addresses given in jobs",
        )


_DEFAULT_ALERTMANAGER_CONFIG: dict[str, Any] = {
    "route": {
        "receiver": "null",
        "group_by": ["alertname"],
        "group_wait": "0s",
        "group_interval": "1s",
        "repeat_interval": "1h",
    },
    "receivers": [{"name": "null"}],
}


class AlertmanagerProcess(_ManagedProcess):
    """An Alertmanager child process; by default routes every alert to a null receiver."""

    binary_name = "prometheus-alertmanager"
    log_name = "alertmanager.log"

    def __init__(
        self,
        directory: Path | str,
        *,
        config: str | Mapping[str, Any] | None = None,
        port: int | None = None,
        ready_timeout: float = 20.0,
        stop_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            Path(directory), port=port, ready_timeout=ready_timeout, stop_timeout=stop_timeout
        )
        self.config = config if config is not None else _DEFAULT_ALERTMANAGER_CONFIG
        self.config_path = self.directory / "alertmanager.yml"

    def _write_config(self) -> None:
        text = (
            self.config
            if isinstance(self.config, str)
            else yaml.safe_dump(dict(self.config), sort_keys=False)
        )
        self.config_path.write_text(text)
        _check("amtool", ["check-config", str(self.config_path)], self.config_path)

    def _argv(self) -> list[str]:
        return [
            self._binary,
            f"--config.file={self.config_path}",
            f"--storage.path={self.directory / 'data'}",
            f"--web.listen-address={self.address}",
            "--cluster.listen-address=",
        ]


# --- a scrape target you control ---------------------------------------------


def _escape_label_value(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def _format_value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


class MetricsTarget(StartStop):
    """A stdlib HTTP server in a thread exposing metrics in Prometheus text format.

    ``inc("requests_total", {"code": "500"})`` and ``set("healthy", 0)`` change
    what the next scrape sees. Thread-safe. Binds 127.0.0.1 on a free port.
    """

    def __init__(self, *, metrics_path: str = "/metrics") -> None:
        self.metrics_path = metrics_path
        self._lock = threading.Lock()
        self._kinds: dict[str, str] = {}
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._server: QuietHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _put(
        self, kind: str, name: str, labels: Mapping[str, str] | None, value: float, add: bool
    ) -> None:
        key = (name, tuple(sorted((labels or {}).items())))
        with self._lock:
            known = self._kinds.setdefault(name, kind)
            if known != kind:
                raise ValueError(f"metric {name} is a {known}, not a {kind}")
            self._values[key] = (self._values.get(key, 0.0) if add else 0.0) + value

    def inc(self, name: str, labels: Mapping[str, str] | None = None, by: float = 1.0) -> None:
        """Add ``by`` to a counter (created at 0)."""
        if by < 0:
            raise ValueError("a counter only goes up")
        self._put("counter", name, labels, by, add=True)

    def set(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        """Set a gauge."""
        self._put("gauge", name, labels, value, add=False)

    def remove(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        """Stop exposing one series (e.g. to make a query return nothing)."""
        key = (name, tuple(sorted((labels or {}).items())))
        with self._lock:
            self._values.pop(key, None)

    def render(self) -> str:
        with self._lock:
            lines: list[str] = []
            for name in sorted(self._kinds):
                series = [(k, v) for k, v in self._values.items() if k[0] == name]
                if not series:
                    continue
                lines.append(f"# TYPE {name} {self._kinds[name]}")
                for (_, labels), value in sorted(series):
                    lines.append(f"{name}{_format_labels(dict(labels))} {_format_value(value)}")
            return "\n".join(lines) + "\n"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("MetricsTarget is not started")
        port: int = self._server.server_address[1]
        return port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != target.metrics_path:
                    self.send_error(404)
                    return
                body = target.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = serve_in_thread(self._server, "metrics-target")
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            stop_serving(server, self._thread)
        self._thread = None


__all__ = [
    "AlertmanagerProcess",
    "MetricsTarget",
    "PrometheusProcess",
    "QuietHTTPServer",
    "ScrapeJob",
    "find_binary",
    "free_port",
    "rule_files_text",
]
