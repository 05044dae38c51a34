"""`shiftover scale manifests` emits what its outputs reference; `--from`/`--to` refuse a reversed window.

Through typer's CliRunner on scale_app, with the shipped examples/scaling.yaml.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from shiftover.cli_scale import scale_app

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "scaling.yaml"
runner = CliRunner()


def with_headroom(tmp_path: Path, line: str) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert "  overprovisioning: {pods: 0}\n" in text
    cfg = tmp_path / "scaling.yaml"
    cfg.write_text(text.replace("  overprovisioning: {pods: 0}\n", line), encoding="utf-8")
    return cfg


def test_keda_manifests_carry_the_trigger_authentication_and_the_secret_hint() -> None:
    res = runner.invoke(
        scale_app,
        ["manifests", "--config", str(EXAMPLE), "--flavor", "keda", "--namespace", "shop",
         "--secret-name", "dd-keys", "--api-key-field", "api", "--app-key-field", "app",
         "--site-field", "site", "--trigger-auth", "dd-auth"],
    )
    assert res.exit_code == 0, res.output
    docs = list(yaml.safe_load_all(res.output))
    assert [d["kind"] for d in docs] == ["TriggerAuthentication", "ScaledObject", "ScaledObject"]
    assert docs[0]["metadata"] == {"name": "dd-auth", "namespace": "shop"}
    assert [(r["parameter"], r["name"], r["key"]) for r in docs[0]["spec"]["secretTargetRef"]] == [
        ("apiKey", "dd-keys", "api"),
        ("appKey", "dd-keys", "app"),
        ("datadogSite", "dd-keys", "site"),
    ]
    for so in docs[1:]:
        assert so["spec"]["triggers"][0]["authenticationRef"] == {"name": "dd-auth"}
    assert (
        '#   kubectl create secret generic dd-keys -n shop --from-literal=api="$DD_API_KEY" '
        '--from-literal=app="$DD_APP_KEY" --from-literal=site="$DD_SITE"'
    ) in res.output
    assert "PriorityClass" not in res.output  # the example keeps no headroom


def test_a_datadog_key_given_as_a_field_name_is_refused_and_not_echoed() -> None:
    key = "0123456789abcdef0123456789abcdef"
    res = runner.invoke(
        scale_app, ["manifests", "--config", str(EXAMPLE), "--flavor", "keda", "--api-key-field", key]
    )
    assert res.exit_code == 2, res.output
    assert "looks like a Datadog key itself" in res.output
    assert key not in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize("flavor", ["datadog", "keda"])
def test_headroom_in_the_config_becomes_a_priority_class_and_pause_pods(tmp_path: Path, flavor: str) -> None:
    cfg = with_headroom(tmp_path, "  overprovisioning: {pods: 2, requests: {cpu: 750m, memory: 768Mi}}\n")
    res = runner.invoke(scale_app, ["manifests", "--config", str(cfg), "--flavor", flavor, "--namespace", "shop"])
    assert res.exit_code == 0, res.output
    docs = {d["kind"]: d for d in yaml.safe_load_all(res.output)}
    assert docs["PriorityClass"]["value"] == -10
    dep = docs["Deployment"]
    assert dep["metadata"]["name"] == "web-overprovisioning"
    assert dep["metadata"]["namespace"] == "shop"
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == docs["PriorityClass"]["metadata"]["name"] == "overprovisioning"
    assert pod["containers"][0]["resources"]["requests"] == {"cpu": "750m", "memory": "768Mi"}


def test_headroom_without_requests_reserves_web_pods(tmp_path: Path) -> None:
    cfg = with_headroom(tmp_path, "  overprovisioning: {pods: 4}\n")
    res = runner.invoke(scale_app, ["manifests", "--config", str(cfg), "--priority-class", "headroom"])
    assert res.exit_code == 0, res.output
    dep = next(d for d in yaml.safe_load_all(res.output) if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 4
    assert pod["priorityClassName"] == "headroom"
    # examples/scaling.yaml: web requests {cpu: 1, memory: 1Gi}
    assert pod["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}


@pytest.mark.parametrize("command", ["simulate", "recommend"])
def test_reversed_from_to_is_named_exit_2(tmp_path: Path, command: str) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,requests\n" + "".join(f"1995-07-13T00:{m:02d}:00Z,60\n" for m in range(10)))
    args = [command, "--trace", str(trace), "--config", str(EXAMPLE), "--from", "1995-07-14", "--to", "1995-07-13"]
    if command == "simulate":
        args += ["--out", str(tmp_path / "out")]
    res = runner.invoke(scale_app, args)
    assert res.exit_code == 2, res.output
    assert "--from 1995-07-14 (1995-07-14T00:00:00Z) is later than --to 1995-07-13 (1995-07-13T00:00:00Z)" in res.output
    assert "swap them: --from 1995-07-13 --to 1995-07-14" in res.output
    assert "holds no rows" not in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_a_window_outside_the_trace_names_its_span(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,requests\n" + "".join(f"1995-07-13T00:{m:02d}:00Z,60\n" for m in range(10)))
    res = runner.invoke(
        scale_app,
        ["simulate", "--trace", str(trace), "--config", str(EXAMPLE), "--from", "1995-07-20", "--to", "1995-07-21",
         "--out", str(tmp_path / "out")],
    )
    assert res.exit_code == 2, res.output
    assert "the trace covers 1995-07-13T00:00:00Z to 1995-07-13T00:10:00Z" in res.output


def test_a_window_reaching_past_the_trace_says_what_is_replayed(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,requests\n" + "".join(f"1995-07-13T00:{m:02d}:00Z,60\n" for m in range(10)))
    res = runner.invoke(
        scale_app,
        ["simulate", "--trace", str(trace), "--config", str(EXAMPLE), "--from", "1995-07-12", "--to", "1995-07-14",
         "--out", str(tmp_path / "out")],
    )
    assert res.exit_code == 0, res.output
    assert (
        "note: t.csv covers only 1995-07-13T00:00:00Z to 1995-07-13T00:10:00Z of the window "
        "1995-07-12T00:00:00Z to 1995-07-14T00:00:00Z; replaying that part"
    ) in res.output
    inside = runner.invoke(
        scale_app,
        ["simulate", "--trace", str(trace), "--config", str(EXAMPLE), "--from", "1995-07-13T00:02", "--to",
         "1995-07-13T00:08", "--out", str(tmp_path / "out2")],
    )
    assert inside.exit_code == 0, inside.output
    assert "note:" not in inside.output
