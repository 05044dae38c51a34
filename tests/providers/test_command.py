"""Command gates (``type: command``): real scripts, the command judge, the plan model,
and a real ``shiftover validate`` / ``shiftover run`` whose command gate turns from
exit 0 to exit 1 mid-run and rolls the cutover back."""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shiftover.analysis.judge import judge, make_judge
from shiftover.engine.run import Gate
from shiftover.errors import NoData, PlanError, ProviderError
from shiftover.plan import parse_plan_text, plan_json_schema
from shiftover.providers import build_provider
from shiftover.providers.command import CommandGate, CommandProvider
from shiftover.testing import plan_yaml
from shiftover.types import GateResult, Measurement, Verdict, Weights

NOW = 1_800_000_000.0


def script(directory: Path, body: str, name: str = "check") -> str:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def gate(run: Any, **kw: Any) -> CommandGate:
    return CommandGate(type="command", name=kw.pop("name", "batch ran"), run=run, **kw)


def check(spec: CommandGate, split: Weights | None = None) -> tuple[Measurement | ProviderError,
                                                                     GateResult]:
    """One check as the engine makes it: the provider measures, the judge decides."""
    provider = build_provider(spec)
    assert isinstance(provider, CommandProvider)
    outcome: Measurement | ProviderError
    try:
        outcome = Gate(spec, provider).measure(now=NOW, split=split)
    except ProviderError as exc:
        outcome = exc
    return outcome, judge(spec, outcome, now=NOW)


# --- the three verdicts -------------------------------------------------------------


@pytest.mark.parametrize(("code", "verdict"), [
    (0, Verdict.PASS), (1, Verdict.FAIL), (3, Verdict.INCONCLUSIVE), (125, Verdict.INCONCLUSIVE),
])
def test_the_exit_code_is_the_verdict(tmp_path: Path, code: int, verdict: Verdict) -> None:
    run = script(tmp_path, f"echo 'last batch: 2027-01-15T03:00Z'\nexit {code}\n")
    outcome, result = check(gate(run))
    assert isinstance(outcome, Measurement) and outcome.details["exit_code"] == code
    assert result.verdict is verdict
    assert result.error is False  # the command answered, even "cannot tell"
    assert result.reason.startswith(f"exit {code} in ")
    assert result.reason.endswith(": last batch: 2027-01-15T03:00Z")  # what it said, in the reason
    assert result.threshold == "exit 0"
    assert result.evidence is not None and result.evidence["exit_code"] == code
    # the output's tail is journalled when the check did not pass
    assert ("last batch" in result.evidence.get("output", "")) is (verdict is not Verdict.PASS)
    if verdict is Verdict.INCONCLUSIVE:
        assert "cannot tell" in result.reason


def test_a_timeout_is_inconclusive_and_an_error(tmp_path: Path) -> None:
    run = script(tmp_path, "echo 'waiting for the queue'\nsleep 60 & sleep 60\n")
    outcome, result = check(gate(run, timeout="300ms"))
    assert isinstance(outcome, ProviderError) and not isinstance(outcome, NoData)
    assert "timed out after 0.3s (killed)" in outcome.message
    assert "waiting for the queue" in outcome.message
    assert outcome.hint and "timeout" in outcome.hint
    assert result.verdict is Verdict.INCONCLUSIVE and result.error is True


def test_a_command_not_found_is_inconclusive_and_an_error(tmp_path: Path) -> None:
    outcome, result = check(gate([str(tmp_path / "no-such-check"), "--env", "prod"]))
    assert isinstance(outcome, ProviderError) and not isinstance(outcome, NoData)
    assert "could not start" in outcome.message and "No such file" in outcome.message
    assert outcome.hint and "PATH" in outcome.hint
    assert result.verdict is Verdict.INCONCLUSIVE and result.error is True
    assert "could not start" in result.reason


@pytest.mark.parametrize(("body", "says"), [
    ("no-such-command-here\n", "exit 127 in"),            # sh: not found
    ("exit 126\n", "exit 126 in"),                        # found, not executable
    ("kill -KILL $$\n", "killed by SIGKILL"),             # died on a signal
])
def test_a_command_that_cannot_work_is_an_error(tmp_path: Path, body: str, says: str) -> None:
    outcome, result = check(gate(script(tmp_path, body)))
    assert isinstance(outcome, Measurement)
    assert result.verdict is Verdict.INCONCLUSIVE and result.error is True
    assert says in result.reason


# --- the JSON value line and min_samples --------------------------------------------


def test_the_last_json_line_gives_value_and_samples(tmp_path: Path) -> None:
    run = script(tmp_path, """\
echo '{"value": 1, "samples": 1}'
echo 'checking the queue'
echo '{"not": "this one"}'
echo '{"value": 12.5, "samples": 340}'
echo 'queue drained'
""")
    outcome, result = check(gate(run))
    assert isinstance(outcome, Measurement)
    assert outcome.value == 12.5 and outcome.samples == 340
    assert (result.verdict, result.value, result.samples) == (Verdict.PASS, 12.5, 340)
    assert result.reason.endswith(": queue drained")


def test_without_a_json_line_there_is_no_value(tmp_path: Path) -> None:
    outcome, result = check(gate(script(tmp_path, "echo ok\n")))
    assert isinstance(outcome, Measurement) and outcome.value is None and outcome.samples is None
    assert result.verdict is Verdict.PASS


@pytest.mark.parametrize("line", ['{"value": "high"}', '{"value": 1, "samples": -3}',
                                  '{"value": 1, "samples": 2.5}'])
def test_an_unusable_value_line_is_an_error(tmp_path: Path, line: str) -> None:
    _, result = check(gate(script(tmp_path, f"echo '{line}'\n")))
    assert result.verdict is Verdict.INCONCLUSIVE and result.error is True
    assert "unusable value line" in result.reason


@pytest.mark.parametrize(("samples", "code", "verdict", "says"), [
    (340, 0, Verdict.PASS, None),
    (5, 0, Verdict.INCONCLUSIVE, "5 samples, 100 required"),
    (5, 1, Verdict.INCONCLUSIVE, "5 samples, 100 required"),  # too few to fail on, too
    (None, 0, Verdict.INCONCLUSIVE, "sample size unknown, 100 required"),
    (100, 1, Verdict.FAIL, None),
])
def test_min_samples_applies_to_the_json_samples(tmp_path: Path, samples: int | None, code: int,
                                                 verdict: Verdict, says: str | None) -> None:
    line = json.dumps({"value": 0.2} if samples is None else {"value": 0.2, "samples": samples})
    _, result = check(gate(script(tmp_path, f"echo '{line}'\nexit {code}\n"), min_samples=100))
    assert result.verdict is verdict and result.error is False
    assert result.threshold == "exit 0, at least 100 samples"
    if says:
        assert says in result.reason


# --- environment, split, stop -------------------------------------------------------


def test_the_command_knows_its_gate_and_the_split(tmp_path: Path) -> None:
    run = script(tmp_path, 'echo "$SHIFTOVER_GATE|${SHIFTOVER_PERCENT-unset}|$QUEUE"\n')
    spec = gate(run, env={"QUEUE": "mailers"})
    outcome, _ = check(spec, split=Weights(12.5))
    assert isinstance(outcome, Measurement)
    assert outcome.details["message"] == "batch ran|12.5|mailers"
    outcome, _ = check(spec, split=None)  # the router could not be read this tick
    assert isinstance(outcome, Measurement)
    assert outcome.details["message"] == "batch ran|unset|mailers"


def test_close_stops_a_running_check(tmp_path: Path) -> None:
    started = tmp_path / "started"
    provider = CommandProvider.from_spec(gate(script(tmp_path, f"touch {started}\nsleep 60\n")))
    outcomes: list[Any] = []

    def measure() -> None:
        try:
            outcomes.append(provider.measure(now=NOW))
        except ProviderError as exc:
            outcomes.append(exc)

    worker = threading.Thread(target=measure)
    worker.start()
    while not started.exists() and worker.is_alive():
        worker.join(0.02)
    provider.close()
    worker.join(30)
    assert not worker.is_alive()
    (outcome,) = outcomes
    assert isinstance(outcome, ProviderError) and "the run is ending" in outcome.message


def test_a_judge_for_the_run_is_the_command_rules(tmp_path: Path) -> None:
    spec = gate(script(tmp_path, "exit 1\n"))
    outcome, _ = check(spec)
    assert make_judge(spec)(outcome, now=NOW).verdict is Verdict.FAIL


def test_describe_names_the_command() -> None:
    assert build_provider(gate("smoke-test --env 'eu west'")).describe() \
        == "command smoke-test --env 'eu west'"


# --- the plan -----------------------------------------------------------------------


def test_a_plan_takes_a_command_gate_written_as_a_string_or_a_list() -> None:
    loaded = parse_plan_text(plan_yaml("""\
  - name: last batch run succeeded
    type: command
    run: /usr/local/bin/check-batch --max-age 2h
    timeout: 20s
  - name: queue drains
    type: command
    run: [check-queue, --queue, mailers]
    env: {MAX_DEPTH: 100}
    min_samples: 10
"""))
    first, second = loaded.plan.normal_state
    assert isinstance(first, CommandGate) and isinstance(second, CommandGate)
    assert first.run == ["/usr/local/bin/check-batch", "--max-age", "2h"] and first.timeout == 20.0
    assert second.run == ["check-queue", "--queue", "mailers"] and second.timeout == 60.0
    assert second.env == {"MAX_DEPTH": "100"} and second.min_samples == 10


@pytest.mark.parametrize(("run", "says"), [
    ('""', "run: is empty"),
    ("[]", "run: is empty"),
    ("check 'unclosed", "cannot split"),
])
def test_a_command_that_cannot_run_is_a_plan_error_at_its_line(run: str, says: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_plan_text(plan_yaml(f"""\
  - name: batch
    type: command
    run: {run}
"""), filename="plan.yaml")
    assert says in str(info.value)
    assert "plan.yaml:13:" in str(info.value)  # the run: line


def test_the_plan_schema_knows_command_gates() -> None:
    text = json.dumps(plan_json_schema())
    assert '"command"' in text and "shell words" in text


# --- the example of docs/gates.md, as written there ---------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "gates.md"


def docs_script() -> str:
    """The ``sh`` block of docs/gates.md's "last batch run succeeded" example."""
    text = DOCS.read_text()
    start = text.index("```sh\n#!/bin/sh\n# check-last-batch") + len("```sh\n")
    return text[start:text.index("```", start)]


@pytest.mark.parametrize(("age", "verdict", "says"), [
    (1240, Verdict.PASS, "last successful batch run 12"),
    (9000, Verdict.FAIL, "more than 7200s"),
    (None, Verdict.INCONCLUSIVE, "no record of a successful batch run"),
])
def test_the_docs_example_checks_the_last_batch_run(tmp_path: Path, age: int | None,
                                                    verdict: Verdict, says: str) -> None:
    import time

    check_last_batch = tmp_path / "check-last-batch"
    check_last_batch.write_text(docs_script())
    check_last_batch.chmod(0o755)
    stamp = tmp_path / "last-success"
    if age is not None:
        stamp.write_text(f"{int(time.time()) - age}\n")
    _, result = check(gate([str(check_last_batch), str(stamp), "7200"], timeout="10s"))
    assert result.verdict is verdict and result.error is False
    assert says in result.reason
    if age is not None:  # the age as the value (a second may pass between the two clocks)
        assert result.value is not None and age <= result.value <= age + 5


# --- a real validate and run --------------------------------------------------------

PLAN = """\
service: batch-move
router: {{type: haproxy, socket: {sock}, backend: web, old: old, new: new}}
steps: [10, 50, 100]
bake: 600ms
interval: 200ms
normal_state:
  - name: last batch run succeeded
    type: command
    run: [{check}, {status}]
    timeout: 5s
failure_limit: 1
"""

# The "batch": once half the traffic is on new, the batch (say, a cron job that now
# runs in both environments) starts failing, and writes so in its status file. The
# check reads the status file, as a real one would read the batch's last run.
CHECK = """\
echo "$SHIFTOVER_PERCENT" >> {calls}
if [ "$SHIFTOVER_PERCENT" = 50 ]; then echo "failed: ran twice" > "$1"; fi
status=$(cat "$1")
echo "last batch run: $status"
echo '{{"value": 1, "samples": 1}}'
[ "$status" = ok ]
"""


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Any]:
    from shiftover.demo.haproxy import find_haproxy, stub_stack

    if find_haproxy() is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    with stub_stack(tmp_path) as st:
        yield st.haproxy


@pytest.mark.e2e
def test_validate_then_run_rolls_back_when_the_command_gate_turns_to_exit_1(
    tmp_path: Path, haproxy: Any
) -> None:
    from shiftover.cli import app
    from shiftover.engine import events as ev
    from shiftover.haproxy_api import HAProxyRuntime
    from shiftover.store import open_store

    status, calls = tmp_path / "batch-status", tmp_path / "calls"
    status.write_text("ok\n")
    check_script = script(tmp_path, CHECK.format(calls=calls))
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.format(sock=haproxy.socket_path, check=check_script, status=status))
    state = tmp_path / "state.db"
    cli = CliRunner()

    r = cli.invoke(app, ["validate", str(plan), "--json"])  # validate keeps no state
    assert r.exit_code == 0, r.output
    (result,) = json.loads(r.output)["gates"]
    assert result["verdict"] == "pass" and result["reason"].endswith(": last batch run: ok")

    r = cli.invoke(app, ["run", str(plan), "--state", str(state)])
    assert r.exit_code == 3, r.output  # rolled back
    servers = HAProxyRuntime(haproxy.socket_path, 2.0).servers_state("web")
    assert servers["new"].weight == 0 and servers["old"].weight > 0

    with open_store(f"sqlite:///{state}") as store:
        events = store.events(service="batch-move")
    checks = [e.data["results"][0] for e in events if e.kind == ev.CHECK]
    verdicts = [c["verdict"] for c in checks]
    assert "pass" in verdicts and verdicts[-1] == "fail"
    failed = checks[-1]
    assert failed["reason"].startswith("exit 1 in ")
    assert failed["reason"].endswith(": last batch run: failed: ran twice")
    assert (failed["value"], failed["samples"]) == (1.0, 1)
    kinds = [e.kind for e in events]
    assert kinds.index(ev.ROLLBACK_STARTED) < kinds.index(ev.ROLLED_BACK)
    # the command saw each split the run checked at, and nothing above 50%
    seen = calls.read_text().split()
    assert "10" in seen and "50" in seen and "100" not in seen

    # the gate still fails: validate says so before anyone tries again
    r = cli.invoke(app, ["validate", str(plan)])
    assert r.exit_code == 2, r.output
    assert "ran twice" in r.output
