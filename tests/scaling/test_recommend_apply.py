"""From a trace to manifests without hand editing: `recommend --apply-to`/`--write`, then `manifests`.

The writer keeps the user's file (comments, layout), writes atomically, and the
config it writes simulates to exactly what the sweep found for the best setting.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from shiftover.cli_scale import scale_app
from shiftover.errors import ShiftoverError
from shiftover.scaling.apply import apply_setting
from shiftover.scaling.config import load_config
from shiftover.scaling.recommend import Setting

REPO = Path(__file__).resolve().parents[2]
NASA = REPO / "examples" / "data" / "nasa_ksc_jul1995_rpm.csv"
EXAMPLE = REPO / "examples" / "scaling.yaml"
runner = CliRunner()

# no behavior (the window is the controller's flag), block sequences indented under their key,
# comments everywhere, a duration spelled as text
PLAIN = """\
# our web tier
web:
  capacity_rps: 10          # from the load test
  startup: 30s
  requests:
    cpu: "1"
    memory: 1Gi
  hpa:
    min_replicas: 1         # floor
    max_replicas: 40
    metric: rps
    target_per_pod: 10      # requests/s per pod

cluster:
  node: {cpu: 2, memory: 8Gi}
  min_nodes: 1
  max_nodes: 30
  labels:
    - keep
    - these

controller:
  downscale_stabilization: 5m   # kube-controller-manager flag
"""


def surge_csv(path: Path) -> Path:
    rows = [30] * 20 + [150] * 10 + [30] * 30  # requests/s, per minute
    path.write_text(
        "timestamp,requests\n" + "".join(f"2024-01-01T{m // 60:02d}:{m % 60:02d}:00Z,{r * 60}\n" for m, r in enumerate(rows))
    )
    return path


def plain_config(tmp_path: Path) -> Path:
    # `labels` is not a config field: the writer must not need to understand a key to keep it
    path = tmp_path / "scaling.yaml"
    path.write_text(PLAIN.replace("  labels:\n    - keep\n    - these\n", ""))
    return path


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    a, b = before.splitlines(), after.splitlines()
    assert len(a) == len(b)
    return [(x, y) for x, y in zip(a, b, strict=True) if x != y]


# --- the writer ------------------------------------------------------------------------


def test_only_the_changed_values_move_and_comments_stay(tmp_path: Path) -> None:
    src = tmp_path / "scaling.yaml"
    src.write_text(PLAIN.replace("  labels:\n    - keep\n    - these\n", "  overprovisioning:\n    pods: 0\n"))
    applied = apply_setting(src, Setting(min_replicas=4, target_per_pod=7.5, scale_down_window=600, headroom_pods=2))
    assert applied.written
    assert [str(c) for c in applied.changes] == [
        "web.hpa.min_replicas: 1 -> 4",
        "web.hpa.target_per_pod: 10 -> 7.5",
        "controller.downscale_stabilization: 300 -> 600",
        "cluster.overprovisioning.pods: 0 -> 2",
    ]
    assert changed_lines(PLAIN.replace("  labels:\n    - keep\n    - these\n", "  overprovisioning:\n    pods: 0\n"), src.read_text()) == [
        ("    min_replicas: 1         # floor", "    min_replicas: 4         # floor"),
        ("    target_per_pod: 10      # requests/s per pod", "    target_per_pod: 7.5     # requests/s per pod"),
        ("    pods: 0", "    pods: 2"),
        ("  downscale_stabilization: 5m   # kube-controller-manager flag",
         "  downscale_stabilization: 600s # kube-controller-manager flag"),
    ]
    assert Setting.of(load_config(src)) == Setting(4, 7.5, 600, 2)


def test_block_sequences_and_missing_sections(tmp_path: Path) -> None:
    # a list indented under its key keeps its indentation; absent sections are created
    src = tmp_path / "scaling.yaml"
    text = PLAIN.replace("controller:\n  downscale_stabilization: 5m   # kube-controller-manager flag\n", "").replace(
        "  labels:\n    - keep\n    - these\n",
        "  daemonsets:\n    cpu: 100m\n    memory: 128Mi\n",
    ).replace(
        "    target_per_pod: 10      # requests/s per pod\n",
        "    target_per_pod: 10      # requests/s per pod\n    behavior:\n      scaleUp:\n        policies:\n"
        "          - type: Pods\n            value: 4\n            periodSeconds: 15\n",
    )
    src.write_text(text)
    apply_setting(src, Setting(min_replicas=1, target_per_pod=10, scale_down_window=120, headroom_pods=3))
    out = src.read_text()
    assert "          - type: Pods\n            value: 4\n" in out
    assert "# our web tier" in out and "# from the load test" in out
    cfg = load_config(src)
    assert Setting.of(cfg) == Setting(1, 10, 120, 3)
    # with a behavior, the window is the HPA's own, created under scaleDown
    assert cfg.web.hpa.behavior is not None and cfg.web.hpa.behavior.scale_down is not None
    assert cfg.web.hpa.behavior.scale_down.stabilization_window_seconds == 120
    assert cfg.controller.downscale_stabilization == 300  # untouched


def test_the_same_setting_leaves_the_file_alone(tmp_path: Path) -> None:
    src = plain_config(tmp_path)
    before = src.stat().st_mtime_ns, src.read_text()
    applied = apply_setting(src, Setting.of(load_config(src)))
    assert not applied.written and applied.changes == ()
    assert (src.stat().st_mtime_ns, src.read_text()) == before
    # to another file: a copy is written even when nothing changes
    copy = tmp_path / "copy.yaml"
    assert apply_setting(src, Setting.of(load_config(src)), copy).written
    assert copy.read_text() == src.read_text()


def test_a_config_that_would_not_validate_is_never_written(tmp_path: Path) -> None:
    src = plain_config(tmp_path)
    before = src.read_text()
    with pytest.raises(ShiftoverError, match=r"does not validate.*is unchanged"):
        apply_setting(src, Setting(min_replicas=41, target_per_pod=10, scale_down_window=300, headroom_pods=0))
    assert src.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scaling.yaml"]  # no temporary file left


def test_the_file_mode_is_kept(tmp_path: Path) -> None:
    src = plain_config(tmp_path)
    src.chmod(0o600)
    apply_setting(src, Setting(min_replicas=2, target_per_pod=10, scale_down_window=300, headroom_pods=0))
    assert src.stat().st_mode & 0o777 == 0o600


# --- the command -----------------------------------------------------------------------


def sweep_args(trace: Path, config: Path, *more: str) -> list[str]:
    return ["recommend", "--trace", str(trace), "--config", str(config), "--min-replicas", "1,4,16",
            "--targets", "5,10", "--windows", "60,300", "--headroom", "0,4", "--jobs", "1", *more]


def test_write_changes_the_config_in_place_and_says_what_changed(tmp_path: Path) -> None:
    trace, cfg = surge_csv(tmp_path / "t.csv"), plain_config(tmp_path)
    res = runner.invoke(scale_app, sweep_args(trace, cfg, "--write", "--json"))
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    best = data["best"]
    assert data["applied"]["file"] == str(cfg) and data["applied"]["written"]
    changes = {c["key"]: (c["old"], c["new"]) for c in data["applied"]["changes"]}
    assert changes["web.hpa.min_replicas"] == (1, best["min_replicas"])
    assert Setting.of(load_config(cfg)) == Setting(
        best["min_replicas"], best["target_per_pod"], best["scale_down_window"], best["headroom_pods"]
    )
    # the config written simulates to what the sweep found for the best setting
    res = runner.invoke(scale_app, ["simulate", "--trace", str(trace), "--config", str(cfg), "--out", str(tmp_path / "r"), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)["summary"]
    assert (summary["minutes_over_slo"], summary["node_hours"]) == (best["minutes_over_slo"], best["node_hours"])
    # run again: the config now holds the best, which is the current setting
    res = runner.invoke(scale_app, sweep_args(trace, cfg, "--write"))
    assert res.exit_code == 0, res.output
    assert "the current setting is the cheapest" in res.output
    assert "already holds the best setting: nothing written" in res.output


def test_trace_to_recommend_to_manifests_needs_no_hand_editing(tmp_path: Path) -> None:
    if not NASA.exists():
        pytest.skip(f"the NASA trace is not at {NASA} (see examples/data/README.md)")
    chosen = tmp_path / "scaling.yaml"
    res = runner.invoke(
        scale_app,
        ["recommend", "--trace", str(NASA), "--config", str(EXAMPLE), "--scale", "200",
         "--from", "1995-07-13T12:00:00Z", "--to", "1995-07-13T15:00:00Z",
         "--min-replicas", "3,8", "--targets", "35,45", "--windows", "300,900", "--headroom", "0,2",
         "--slo-budget", "5", "--jobs", "1", "--apply-to", str(chosen)],
    )
    assert res.exit_code == 0, res.output
    assert f"wrote {chosen}" in res.output
    assert " -> " in res.output
    assert f"next: shiftover scale manifests --config {chosen}" in res.output
    best = Setting.of(load_config(chosen))
    assert best != Setting.of(load_config(EXAMPLE))
    # comments of the example survive
    assert "# External AverageValue: requests/s per pod" in chosen.read_text()

    res = runner.invoke(scale_app, ["manifests", "--config", str(chosen)])
    assert res.exit_code == 0, res.output
    hpas = {d["metadata"]["name"]: d for d in yaml.safe_load_all(res.output) if d["kind"] == "HorizontalPodAutoscaler"}
    web = hpas["web"]["spec"]
    assert web["minReplicas"] == best.min_replicas
    assert float(web["metrics"][0]["external"]["target"]["averageValue"]) == best.target_per_pod
    assert web["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == best.scale_down_window
    assert hpas["worker"]["spec"]["minReplicas"] == 2  # the worker is not a knob: as it was


def test_nothing_to_apply_is_refused_with_a_budget_that_works(tmp_path: Path) -> None:
    trace, cfg = surge_csv(tmp_path / "t.csv"), plain_config(tmp_path)
    dest = tmp_path / "out.yaml"
    args = ["recommend", "--trace", str(trace), "--config", str(cfg), "--min-replicas", "1",
            "--targets", "10", "--windows", "0", "--headroom", "0", "--jobs", "1", "--apply-to", str(dest)]
    res = runner.invoke(scale_app, args)
    assert res.exit_code == 2, res.output
    assert "nothing written to" in res.output
    assert not dest.exists()
    hint = res.output.split("accept the fewest found (")[1]
    least, command = hint.split("): ", 1)
    argv = shlex.split(command.strip())
    assert argv[:3] == ["shiftover", "scale", "recommend"]
    assert argv[argv.index("--slo-budget") + 1] == least
    res = runner.invoke(scale_app, argv[2:])  # the hint, pasted
    assert res.exit_code == 0, res.output
    assert dest.exists()


def test_the_wider_grid_command_works_when_pasted(tmp_path: Path) -> None:
    trace, cfg = surge_csv(tmp_path / "t.csv"), plain_config(tmp_path)
    res = runner.invoke(scale_app, sweep_args(trace, cfg, "--json"))
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["edges"], data["best"]
    argv = shlex.split(data["wider_grid_command"])
    res = runner.invoke(scale_app, [*argv[2:], "--json"])
    assert res.exit_code == 0, res.output
    wider = json.loads(res.output)
    assert wider["grid"] == data["wider_grid"]
    assert wider["evaluated"] > data["evaluated"]
    res = runner.invoke(scale_app, sweep_args(trace, cfg))
    assert "is on the edge of the grid" in res.output
    assert f"try a wider grid: {data['wider_grid_command']}" in res.output


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--min-replicas", "0,2"], "min replicas must be >= 1"),
        (["--min-replicas", "2,41"], "above web.hpa.max_replicas (40)"),
        (["--min-replicas", "2.5"], "whole numbers"),
        (["--targets", "0,10"], "must be > 0 requests/s"),
        (["--targets", "ten"], "--targets"),
        (["--target-fractions", "0,0.5"], "fractions of web.capacity_rps > 0"),
        (["--windows", "60,3601"], "0..3600 s"),
        (["--headroom", "-1"], "must be >= 0"),
        (["--headroom", "0,61"], "at most 60 overprovisioning pods"),
        (["--slo-budget", "-1"], "--slo-budget"),
        (["--write", "--apply-to", "other.yaml"], "choose one"),
        (["--apply-to", "{tmp}"], "is a directory"),
        (["--apply-to", "{tmp}/no/such/dir/x.yaml"], "does not exist"),
        # root passes os.access on any mode: the check must try to write
        (["--apply-to", "/proc/shiftover-apply-test.yaml"], "not writable"),
    ],
)
def test_bad_flags_exit_2_with_what_to_do(tmp_path: Path, flags: list[str], words: str) -> None:
    trace, cfg = surge_csv(tmp_path / "t.csv"), plain_config(tmp_path)
    argv = ["recommend", "--trace", str(trace), "--config", str(cfg), "--jobs", "1",
            *(f.format(tmp=tmp_path) for f in flags)]
    res = runner.invoke(scale_app, argv)
    assert res.exit_code == 2, res.output
    assert words in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_targets_are_requests_per_second_and_fractions_have_their_own_flag(tmp_path: Path) -> None:
    trace, cfg = surge_csv(tmp_path / "t.csv"), plain_config(tmp_path)
    base = ["recommend", "--trace", str(trace), "--config", str(cfg), "--min-replicas", "1",
            "--windows", "300", "--headroom", "0", "--jobs", "1", "--json"]
    res = runner.invoke(scale_app, [*base, "--targets", "8", "--target-fractions", "0.5"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["grid"]["targets"] == [5.0, 8.0, 10.0]  # 0.5 x capacity 10, 8, and the config's 10
    res = runner.invoke(scale_app, [*base, "--targets", "0.6"])
    assert "--target-fractions" in res.output  # a fraction given to --targets is pointed at the right flag


def test_the_example_config_round_trips_byte_for_byte(tmp_path: Path) -> None:
    copy = tmp_path / "scaling.yaml"
    apply_setting(EXAMPLE, Setting.of(load_config(EXAMPLE)), copy)
    assert copy.read_bytes() == EXAMPLE.read_bytes()


def test_a_symlinked_config_is_written_through_the_link(tmp_path: Path) -> None:
    real = plain_config(tmp_path)
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    apply_setting(link, Setting(min_replicas=2, target_per_pod=10, scale_down_window=300, headroom_pods=0))
    assert link.is_symlink()
    assert Setting.of(load_config(real)).min_replicas == 2
