"""``shiftover simulate`` as a user types it: what it prints, its exit codes, --json,
and its errors (exit 2, file:line:col, never a traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from shiftover.cli import app

ROOT = Path(__file__).resolve().parents[2]
PLAN = str(ROOT / "examples" / "plan.yaml")
SCRIPTS = ROOT / "examples" / "simulate"
ERRORS = "new environment failed requests (5xx, refused, timed out)"
runner = CliRunner()


def sim(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["simulate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_a_failure_at_25_percent_prints_the_timeline_and_exits_3() -> None:
    code, out, err = sim(PLAN, "--metrics", str(SCRIPTS / "fail-at-25.yaml"))
    assert code == 3, out + err
    lines = out.splitlines()
    # the header says what each gate measures, scripted or not
    assert f"  {ERRORS}: 0.002 until 25% confirmed, then 0.03" in lines
    assert ("  dependencies reachable from the new environment: not in the script: passes "
            "throughout (status 200)") in lines
    # the timeline, in order, with simulated offsets
    expected = [
        "T+0:00:00   run started (simulated: in-memory router, scripted gates)",
        "T+0:00:15   weight confirmed 1% (router verified)",
        "T+0:20:15   weight confirmed 25% (router verified)",
        f"T+0:20:30   check fail: {ERRORS}: 0.03 is above max 0.01",
        f"T+0:20:45   ROLLBACK: 2 consecutive failed checks: {ERRORS}: 0.03 is above max 0.01",
        "T+0:20:45   weight confirmed 0% (router verified)",
        "T+0:20:45   rolled back to 0%",
    ]
    found = [next(i for i, line in enumerate(lines) if line.startswith(want)) for want in expected]
    assert found == sorted(found)
    assert f"rolled back: 2 consecutive failed checks: {ERRORS}: 0.03 is above max 0.01" in lines
    # a length of simulated time in the words of the rest of shiftover (and --fail-each-step)
    assert any(line.startswith("simulated 20m45s in ") and "exit 3 (rolled back" in line
               for line in lines)
    assert "--fail-each-step" in lines[-1]  # the next thing to try, pasteable


def test_a_healthy_simulation_is_promoted_exit_0() -> None:
    code, out, _ = sim(PLAN, "--metrics", str(SCRIPTS / "healthy.yaml"))
    assert code == 0
    assert "T+0:35:15   50% step approved by simulated operator" in out
    assert "PROMOTED: 100% on the new environment" in out
    assert "check pass" not in out
    code, verbose, _ = sim(PLAN, "--verbose")  # no script: every gate passes
    assert code == 0 and "check pass (3 gates)" in verbose


def test_fail_each_step_on_the_example_plan_rolls_back_at_every_step() -> None:
    code, out, err = sim(PLAN, "--fail-each-step")
    assert code == 0, out + err
    rows = [line.split() for line in out.splitlines() if line.strip().endswith(("yes", "NO"))]
    assert [r[0] for r in rows] == ["1%", "2%", "5%", "10%", "25%", "50%", "75%", "100%"]
    for r in rows:  # step, "rolled back", fault -> 0%, failed checks, as planned
        assert r[1:] == ["rolled", "back", "30s", "2", "yes"]
    assert "every failure ended rolled back, as the plan says (8 runs" in out


def test_fail_each_step_exits_3_when_a_run_does_not_end_as_planned(tmp_path: Path) -> None:
    """A compare gate passes at 100% (no baseline): failing alone, it is not caught."""
    plan = tmp_path / "plan.yaml"
    plan.write_text("""\
service: shop
router: {type: haproxy, socket: /tmp/none.sock, backend: web, old: ec2, new: eks}
steps: [50, 100]
bake: 2m
interval: 10s
normal_state:
  - name: errors vs old
    type: compare
    min_requests: 50
    source: {type: haproxy_stats, socket: /tmp/none.sock, backend: web, old: ec2, new: eks}
  - {name: errors, type: prometheus, url: "http://127.0.0.1:1", query: x, max: 0.05}
""")
    code, out, _ = sim(str(plan), "--fail-each-step", "--fail-gate", "errors vs old")
    assert code == 3
    assert "1 of 2 runs did not end rolled back" in out
    assert "  at 100%: promoted" in out
    assert "  'errors vs old': it compares new with old: at 100% old serves nothing" in out
    code, out, _ = sim(str(plan), "--fail-each-step", "--fail-gate", "errors")
    assert code == 0
    # by default: the first gate that can catch a fault at every step, and why that one
    code, out, _ = sim(str(plan), "--fail-each-step")
    assert code == 0, out
    assert "each run: 'errors' fails from the moment the step is confirmed" in out
    assert ("  'errors': the first gate that can see a fault at every step ('errors vs old' "
            "compares new with old, not applicable at 100%); --fail-gate NAME for another") in out
    assert "every failure ended rolled back, as the plan says (2 runs" in out


def test_json_lines_then_a_summary() -> None:
    code, out, _ = sim(PLAN, "--metrics", str(SCRIPTS / "fail-at-25.yaml"), "--json")
    assert code == 3
    objects = [json.loads(line) for line in out.splitlines()]
    events, summary = objects[:-1], objects[-1]
    assert summary["summary"] is True and summary["outcome"] == "rolled_back"
    assert summary["exit_code"] == 3 and summary["simulated_seconds"] == 1245
    assert summary["gates"][ERRORS]["scripted"] is True
    assert summary["gates"]["no firing alerts for the service"]["scripted"] is False
    assert events[0]["kind"] == "run_started"
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)
    rolled = next(e for e in events if e["kind"] == "rolled_back")
    assert rolled["t"] == 1245


def test_fail_each_step_json() -> None:
    code, out, _ = sim(PLAN, "--fail-each-step", "--json")
    assert code == 0
    objects = [json.loads(line) for line in out.splitlines()]
    runs, summary = objects[:-1], objects[-1]
    assert [r["step"] for r in runs] == [1, 2, 5, 10, 25, 50, 75, 100]
    assert all(r["outcome"] == "rolled_back" and r["as_planned"] for r in runs)
    assert all(r["fault_to_end_seconds"] == 30 for r in runs)
    assert summary == {**summary, "summary": True, "as_planned": True, "exit_code": 0, "runs": 8,
                       "not_as_planned": [], "gate": ERRORS, "expected": "rolled_back"}


def test_a_bad_script_is_exit_2_with_its_place_and_a_guess(tmp_path: Path) -> None:
    bad = tmp_path / "script.yaml"
    bad.write_text("gates:\n  new environment failed requests:\n    - {value: 0.03, from: 12m}\n")
    code, out, err = sim(PLAN, "--metrics", str(bad))
    assert code == 2 and out == ""
    assert f"{bad}:2:3: the plan has no gate named 'new environment failed requests'" in err
    assert f"did you mean '{ERRORS}'?" in err
    assert "hint: the plan's gates (normal_state names):" in err
    assert "Traceback" not in err


def test_flag_errors_are_exit_2(tmp_path: Path) -> None:
    code, _, err = sim(PLAN, "--fail-gate", "errors")
    assert code == 2 and "--fail-gate goes with --fail-each-step" in err
    code, _, err = sim(PLAN, "--fail-each-step", "--fail-gate", "dependencies")
    assert code == 2 and "did you mean 'dependencies reachable from the new environment'?" in err
    code, _, err = sim(PLAN, "--max-time", "soon")
    assert code == 2 and "--max-time 'soon'" in err
    code, _, err = sim(PLAN, "--metrics", str(tmp_path / "none.yaml"))
    assert code == 2 and "script file not found" in err


def test_max_time_holds_exit_4(tmp_path: Path) -> None:
    code, out, _ = sim(PLAN, "--max-time", "30m")
    assert code == 4
    assert "held: the simulation reached its time bound (30m simulated) before the run ended" in out


def test_an_environment_of_a_plan_is_simulated() -> None:
    plan = str(ROOT / "examples" / "cutover.yaml")
    code, out, _ = sim(plan, "--env", "staging", "--fail-each-step")
    assert code == 0
    assert out.startswith(f"simulating {plan} (environment staging): accounting-web, steps 5, 25, "
                          "50, 100%")
    code, out, _ = sim(plan, "--env", "production")
    assert code == 0
    assert "the routers in lockstep are simulated as one in-memory router" in out
    assert "beyond the simulation, after 0% is confirmed: www.example.com. reaches 0%" in out
    code, _, err = sim(plan)
    assert code == 2 and "--env" in err


def test_the_installed_command_runs_the_example(tmp_path: Path) -> None:
    """As CI would call it: a real process, its exit code."""
    proc = subprocess.run(
        [sys.executable, "-m", "shiftover.cli", "simulate", PLAN, "--metrics",
         str(SCRIPTS / "no-data.yaml")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "stuck: 20 consecutive checks without a verdict" in proc.stdout
