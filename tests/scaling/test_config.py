"""scaling.yaml: quantities, defaults, HPA specs, and errors with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from shiftover.errors import PlanError
from shiftover.scaling.config import (
    controller_constants,
    load_config,
    parse_cpu,
    parse_memory,
    sim_params,
    web_hpa_spec,
    worker_hpa_spec,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "scaling.yaml"

MINIMAL = """\
web:
  capacity_rps: 50
  requests: {cpu: 500m, memory: 512Mi}
  hpa: {min_replicas: 2, max_replicas: 10, metric: rps, target_per_pod: 40}
cluster:
  node: {cpu: 4, memory: 16Gi}
"""


@pytest.mark.parametrize(
    ("text", "milli"), [("500m", 500), ("2", 2000), (0.25, 250), (3, 3000), ("3920m", 3920)]
)
def test_cpu(text: object, milli: int) -> None:
    assert parse_cpu(text) == milli


@pytest.mark.parametrize(
    ("text", "mib"), [("512Mi", 512), ("1Gi", 1024), ("1G", 954), (2**20, 1), ("14Gi", 14336)]
)
def test_memory(text: object, mib: int) -> None:
    assert parse_memory(text) == mib


def test_example_loads_and_builds_specs() -> None:
    cfg = load_config(EXAMPLE)
    spec = web_hpa_spec(cfg)
    assert spec.metrics[0].source == "External"
    assert spec.metrics[0].target.type == "AverageValue"
    assert spec.behavior is not None and spec.behavior.scale_down is not None
    assert worker_hpa_spec(cfg) is not None
    p = sim_params(cfg)
    assert p.node_cpu == 3920 and p.web_cpu == 1000 and p.provisioning == 90


def test_defaults_are_the_controllers(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(MINIMAL)
    cfg = load_config(f)
    p = sim_params(cfg)
    assert (p.sync_period, p.scan_interval, p.refresh, p.rollup) == (15, 10, 30, 30)
    assert (p.scale_down_threshold, p.scale_down_unneeded, p.scale_down_delay_after_add) == (
        0.5,
        600,
        600,
    )
    assert p.worker_enabled is False
    c = controller_constants(cfg)
    assert c.tolerance == 0.1 and c.downscale_stabilization_seconds == 300
    assert web_hpa_spec(cfg).behavior is None


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "words"),
    [
        ("capacity_rps: 50", "capacity_rps: -5", 2, "web.capacity_rps", "greater than 0"),
        (
            "node: {cpu: 4, memory: 16Gi}",
            "node: {cpu: 4, memory: lots}",
            6,
            "cluster.node.memory",
            "not a memory quantity",
        ),
        ("max_replicas: 10", "max_replicas: 1", 4, "web.hpa", "below min_replicas"),
        ("capacity_rps: 50", "capacity_rps: 50\n  colour: blue", 3, "web.colour", "Extra inputs"),
        (
            "node: {cpu: 4, memory: 16Gi}",
            "node: {cpu: 250m, memory: 16Gi}",
            None,
            None,
            "does not fit on an empty node",
        ),
    ],
)
def test_errors_name_file_line_and_field(
    tmp_path: Path, old: str, new: str, line: int | None, field: str | None, words: str
) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(MINIMAL.replace(old, new))
    with pytest.raises(PlanError) as exc:
        load_config(f)
    text = str(exc.value)
    assert words in text
    assert str(f) in text
    if line is not None:
        assert exc.value.line == line
    if field is not None:
        assert f"field: {field}" in text


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("web:\n  capacity_rps: [1,\n")
    with pytest.raises(PlanError) as exc:
        load_config(f)
    assert exc.value.line is not None
