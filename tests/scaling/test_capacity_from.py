"""``shiftover scale simulate|recommend --capacity-from load.json``: a measured capacity per pod
(from ``shiftover load --json``) replaces scaling.yaml's, and every bad file is a clean exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shiftover.cli_scale import scale_app
from shiftover.errors import BadInput
from shiftover.loadtest.results import (
    StepFigures,
    capacity,
    find_knee,
    judge_steps,
    load_document,
)
from shiftover.loadtest.schedule import parse_schedule
from shiftover.scaling.config import (
    load_config,
    read_capacity_from,
    sim_params,
    with_capacity,
)

runner = CliRunner()

# two pods that never scale: the capacity per pod alone decides whether 150 req/s is served
CONFIG = """\
web:
  capacity_rps: 50
  startup: 10s
  requests: {cpu: 500m, memory: 512Mi}
  hpa: {min_replicas: 2, max_replicas: 2, metric: rps, target_per_pod: 40}
cluster:
  node: {cpu: 4, memory: 16Gi}
  min_nodes: 1
slo: {latency: 300ms, objective: 0.95}
"""


def step(index: int, rate: float, p99: float) -> StepFigures:
    return StepFigures(
        index=index, target_rate=rate, start_rate=rate, end_rate=rate, seconds=10.0,
        requests=int(rate * 10), failures=0, achieved_rate=rate, p50_ms=p99 / 4, p95_ms=p99 / 2,
        p99_ms=p99, max_ms=p99 * 1.5, errors={}, dropped=0, lag_p99_ms=1.0, cpu_percent=20.0, complete=True,
    )  # fmt: skip


def load_json(
    tmp_path: Path,
    *,
    p99s: tuple[float, ...] = (80.0, 120.0, 900.0),
    pods: int | None = 2,
    stopped_early: bool = False,
) -> Path:
    """A load document as ``shiftover load --json`` writes it: steps at 100, 200, 300 req/s."""
    figures = [step(i, 100.0 * (i + 1), p99) for i, p99 in enumerate(p99s)]
    verdicts = judge_steps(figures, slo_p99_ms=250.0, max_errors=0.01)
    knee = find_knee(verdicts)
    doc = load_document(
        target={"url": "http://127.0.0.1:8080/"},
        schedule=parse_schedule(f"100:{100 * len(p99s)}:100", step="10s"),
        verdicts=verdicts,
        knee=knee,
        capacity=capacity(knee, pods=pods, peak=None, headroom=0.2),
        criteria={"slo_p99_ms": 250.0, "max_errors": 0.01},
        generator={"workers": 1},
        stopped_early=stopped_early,
        started="2025-01-01T00:00:00Z",
        ended="2025-01-01T00:00:30Z",
    )
    path = tmp_path / "load.json"
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def trace(tmp_path: Path, rps: float = 150.0, minutes: int = 30) -> Path:
    rows = [f"2025-01-01T00:{m:02d}:00Z,{round(rps * 60)}" for m in range(minutes)]
    return write(tmp_path, "trace.csv", "timestamp,requests\n" + "\n".join(rows) + "\n")


# --- reading the document -------------------------------------------------------------


def test_reads_capacity_per_pod_and_the_slo(tmp_path: Path) -> None:
    measured = read_capacity_from(load_json(tmp_path))
    assert measured.capacity_rps == 100.0  # knee at 200 req/s achieved, over 2 pods
    assert measured.slo_latency == 0.25
    assert measured.slo_objective == 0.99
    assert measured.notes == ()


def test_with_capacity_replaces_the_configs_values(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "scaling.yaml", CONFIG))
    new, taken = with_capacity(cfg, read_capacity_from(load_json(tmp_path)))
    assert (new.web.capacity_rps, new.slo.latency, new.slo.objective) == (100.0, 0.25, 0.99)
    assert (cfg.web.capacity_rps, cfg.slo.latency, cfg.slo.objective) == (50.0, 0.3, 0.95)  # a copy
    assert sim_params(new).web_capacity_rps == 100.0
    assert sim_params(new).slo_objective == 0.99
    assert new.web.hpa == cfg.web.hpa and new.cluster == cfg.cluster
    assert taken == [
        "web.capacity_rps 100 req/s (config: 50)",
        "slo.latency 0.25 s (config: 0.3)",
        "slo.objective 0.99 (config: 0.95)",
    ]


def test_a_document_without_slo_changes_only_the_capacity(tmp_path: Path) -> None:
    doc = json.loads(load_json(tmp_path).read_text())
    del doc["slo"]
    path = write(tmp_path, "noslo.json", json.dumps(doc))
    cfg = load_config(write(tmp_path, "scaling.yaml", CONFIG))
    new, taken = with_capacity(cfg, read_capacity_from(path))
    assert (new.web.capacity_rps, new.slo.latency, new.slo.objective) == (100.0, 0.3, 0.95)
    assert len(taken) == 1


def test_notes_when_the_knee_is_a_lower_bound_or_the_test_stopped_early(tmp_path: Path) -> None:
    measured = read_capacity_from(load_json(tmp_path, p99s=(80.0, 90.0), stopped_early=True))
    assert measured.capacity_rps == 100.0
    assert measured.notes == (
        "every step of that load test passed: the capacity is at least this, the true one may be higher",
        "that load test was stopped early",
    )


def _doc(tmp_path: Path, **change: Any) -> Path:
    doc = json.loads(load_json(tmp_path).read_text())
    doc.update(change)
    return write(tmp_path, "changed.json", json.dumps(doc))


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p / "missing.json", "cannot read --capacity-from .*missing.json: No such file"),
        (
            lambda p: write(p, "bad.json", '{"kind": '),
            "is not JSON: Expecting value at line 1 column 10",
        ),
        (lambda p: write(p, "empty.json", ""), "is not JSON"),
        (
            lambda p: write(p, "list.json", "[1, 2]"),
            'is not a shiftover load document \\(it has no "kind"',
        ),
        (
            lambda p: write(p, "other.json", json.dumps({"kind": "shiftover.scale/v1"})),
            "its kind is 'shiftover.scale/v1'",
        ),
        (lambda p: load_json(p, pods=None), "no web.capacity_rps: the test ran without --pods"),
        (lambda p: load_json(p, p99s=(900.0, 100.0)), "no web.capacity_rps: no step passed"),
        (lambda p: _doc(p, web={"capacity_rps": 0}), "web.capacity_rps must be a number above 0"),
        (
            lambda p: _doc(p, web={"capacity_rps": "fast"}),
            "web.capacity_rps must be a number above 0",
        ),
        (
            lambda p: _doc(p, web={"capacity_rps": True}),
            "web.capacity_rps must be a number above 0",
        ),
        (lambda p: _doc(p, web=[1]), "web and slo must be objects"),
        (
            lambda p: write(
                p, "nan.json", '{"kind": "shiftover.load/v1", "web": {"capacity_rps": NaN}}'
            ),
            "above 0",
        ),
        (
            lambda p: _doc(p, slo={"latency": 0.25, "objective": 99}),
            "slo.objective must be a number above 0 up to 1",
        ),
        (lambda p: _doc(p, slo={"latency": -1}), "slo.latency must be a number above 0"),
    ],
)
def test_bad_files_are_bad_input_with_a_hint(tmp_path: Path, make: Any, words: str) -> None:
    with pytest.raises(BadInput, match=words) as e:
        read_capacity_from(make(tmp_path))
    assert e.value.hint


def test_not_utf8_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "load.json"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(BadInput, match="is not JSON"):
        read_capacity_from(path)


def test_the_hint_says_how_to_get_capacity_per_pod(tmp_path: Path) -> None:
    with pytest.raises(BadInput) as e:
        read_capacity_from(load_json(tmp_path, pods=None))
    assert (
        e.value.hint is not None and "shiftover load" in e.value.hint and "--pods N" in e.value.hint
    )


# --- through the CLI ------------------------------------------------------------------


def simulate(tmp_path: Path, *extra: str) -> Any:
    return runner.invoke(
        scale_app,
        ["simulate", "--trace", str(trace(tmp_path)), "--config", str(write(tmp_path, "scaling.yaml", CONFIG)),
         "--out", str(tmp_path / "out"), "--json", *extra],
    )  # fmt: skip


def test_simulate_uses_the_measured_capacity(tmp_path: Path) -> None:
    # 150 req/s on two pods: 2 x 50 does not hold it, 2 x 100 (measured) does
    before = simulate(tmp_path)
    assert before.exit_code == 0, before.output
    assert json.loads(before.stdout)["summary"]["minutes_over_slo"] > 0
    assert "capacity_from" not in json.loads(before.stdout)

    load = load_json(tmp_path)
    res = simulate(tmp_path, "--capacity-from", str(load))
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["summary"]["minutes_over_slo"] == 0
    assert data["capacity_from"] == {
        "file": str(load),
        "web": {"capacity_rps": 100.0},
        "slo": {"latency": 0.25, "objective": 0.99},
    }
    assert (
        f"from {load}: web.capacity_rps 100 req/s (config: 50), slo.latency 0.25 s (config: 0.3), "
        "slo.objective 0.99 (config: 0.95)"
    ) in " ".join(res.stderr.split())
    header, first = (tmp_path / "out" / "timeline.csv").read_text().splitlines()[:2]
    row = dict(zip(header.split(","), first.split(","), strict=True))
    assert float(row["capacity_rps"]) == 100.0 * int(row["ready_replicas"])


def test_simulate_refuses_a_bad_file_cleanly(tmp_path: Path) -> None:
    res = simulate(tmp_path, "--capacity-from", str(load_json(tmp_path, pods=None)))
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    assert "has no web.capacity_rps" in res.stderr and "--pods N" in res.stderr
    res = simulate(tmp_path, "--capacity-from", str(tmp_path / "nowhere.json"))
    assert res.exit_code == 2
    assert "cannot read --capacity-from" in res.stderr


def test_recommend_takes_it_and_keeps_it_in_the_commands_it_prints(tmp_path: Path) -> None:
    cfg = write(tmp_path, "scaling.yaml", CONFIG.replace("max_replicas: 2", "max_replicas: 6"))
    load = load_json(tmp_path)
    dest = tmp_path / "best.yaml"
    res = runner.invoke(
        scale_app,
        ["recommend", "--trace", str(trace(tmp_path)), "--config", str(cfg), "--capacity-from", str(load),
         "--min-replicas", "1,2", "--target-fractions", "0.8", "--windows", "60", "--headroom", "0",
         "--jobs", "1", "--apply-to", str(dest), "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    stderr = " ".join(res.stderr.split())
    assert f"from {load}: web.capacity_rps 100 req/s (config: 50)" in stderr
    # fractions are of the measured capacity: 0.8 x 100, beside the config's own 40
    assert data["grid"]["targets"] == [40.0, 80.0]
    # the wider grid to paste still reads the load test
    assert f"--capacity-from {load}" in data["wider_grid_command"]
    # the file written is the team's scaling.yaml with the best setting: it keeps its own capacity
    assert data["applied"]["file"] == str(dest)
    assert load_config(dest).web.capacity_rps == 50.0
    assert f"the measured web.capacity_rps 100 from {load}" in stderr


def test_the_document_keys_are_what_the_config_reads(tmp_path: Path) -> None:
    """The load document's web/slo blocks are valid scaling.yaml blocks as they stand."""
    doc = json.loads(load_json(tmp_path).read_text())
    cfg = load_config(write(tmp_path, "scaling.yaml", CONFIG))
    merged = cfg.model_validate(
        {**cfg.model_dump(), "web": {**cfg.web.model_dump(), **doc["web"]}, "slo": doc["slo"]}
    )
    assert merged.web.capacity_rps == doc["web"]["capacity_rps"]
    assert read_capacity_from(tmp_path / "load.json").slo_latency == merged.slo.latency
