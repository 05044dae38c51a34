"""Environments: named overlays merged over the base plan (``--env``), and ``diff``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shiftover.cli import app
from shiftover.errors import PlanError
from shiftover.plan import load_outline, parse_plan_text, plan_environments
from shiftover.report.diff import diff_plans

runner = CliRunner()

PLAN = """\
service: accounting-web
router:
  type: haproxy
  socket: /run/haproxy/admin.sock
  backend: web
  old: ec2
  new: eks
steps: [1, 5, 25, 50, 100]
bake: 5m
approvals: [50]
normal_state:
  - name: errors
    type: prometheus
    url: http://127.0.0.1:9090
    query: up
    max: 0.01
  - name: health
    type: http
    url: http://127.0.0.1:8081/health
environments:
  staging:
    rehearsal: true
    steps: [50, 100]
    bake: 1m
    approvals: null
    normal_state:
      - name: errors
        max: 0.05
      - name: health
        remove: true
  production:
    router:
      socket: /run/haproxy/prod.sock
    normal_state:
      - name: alerts
        type: prometheus_alerts
        url: ${PROD_PROMETHEUS:-http://127.0.0.1:9090}
"""


def load(env: str | None, text: str = PLAN, **kw: object) -> object:
    return parse_plan_text(text, filename="plan.yaml", environment=env, env=kw.get("vars", {})).plan  # type: ignore[arg-type]


def test_mappings_merge_lists_replace_null_removes() -> None:
    staging = load("staging")
    assert staging.steps == [50, 100] and staging.bake == 60
    assert staging.approvals == []                      # null: back to the default
    assert staging.router.socket == "/run/haproxy/admin.sock"   # untouched: the base's
    production = load("production")
    assert production.router.socket == "/run/haproxy/prod.sock"  # one key of a mapping
    assert production.router.backend == "web" and production.router.old == "ec2"
    assert production.steps == [1, 5, 25, 50, 100] and production.approvals == [50]


def test_gates_merge_by_name_append_and_remove() -> None:
    staging = load("staging")
    assert [(g.name, g.max) for g in staging.normal_state] == [("errors", 0.05)]
    assert staging.normal_state[0].query == "up"       # the base gate's other fields stay
    production = load("production")
    assert [g.name for g in production.normal_state] == ["errors", "health", "alerts"]
    assert production.normal_state[0].max == 0.01


def test_a_router_of_another_type_replaces_the_base_router() -> None:
    text = PLAN + """\
  aws:
    router: {type: route53, hosted_zone_id: Z1, record_name: www.example.com, record_type: CNAME,
             old: ec2, new: eks}
    normal_state:
      - {name: health, type: prometheus_alerts, url: 'http://127.0.0.1:9090'}
"""
    aws = load("aws", text)
    assert aws.router.type == "route53" and not hasattr(aws.router, "socket")
    assert aws.normal_state[1].type == "prometheus_alerts"  # a gate retyped: replaced too


def test_environment_identity_and_journal_keys() -> None:
    staging, production = load("staging"), load("production")
    assert (staging.environment, staging.rehearsal, staging.journal_key) == (
        "staging", True, "accounting-web@staging")
    assert (production.rehearsal, production.journal_key) == (False, "accounting-web@production")
    base = load(None, PLAN.split("environments:")[0])
    assert base.environment is None and base.journal_key == "accounting-web"


def test_only_the_chosen_environment_needs_its_variables(tmp_path: Path) -> None:
    text = PLAN.replace("${PROD_PROMETHEUS:-http://127.0.0.1:9090}", "${PROD_PROMETHEUS}")
    assert load("staging", text).steps == [50, 100]      # production's variable is not needed
    with pytest.raises(PlanError, match="PROD_PROMETHEUS"):
        load("production", text)
    loaded = parse_plan_text(text, filename="plan.yaml", environment="production",
                             env={"PROD_PROMETHEUS": "http://prom.internal:9090"})
    assert "http://prom.internal:9090" in loaded.secrets


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_a_bad_value_in_an_overlay_names_the_overlay_line() -> None:
    text = PLAN.replace("        max: 0.05", "        max: lots")
    with pytest.raises(PlanError) as e:
        load("staging", text)
    assert e.value.line == line_of(text, "max: lots")
    assert "(environment staging)" in str(e.value) and "normal_state[0].max" in str(e.value)
    assert load("production", text).normal_state[0].max == 0.01  # production does not use it


def test_an_unknown_field_in_an_overlay_names_its_key() -> None:
    text = PLAN.replace("    bake: 1m\n", "    bake: 1m\n    bakee: 2m\n")
    with pytest.raises(PlanError) as e:
        load("staging", text)
    assert e.value.line == line_of(text, "bakee")


def test_an_appended_gate_missing_a_field_points_at_the_overlay() -> None:
    text = PLAN.replace("        type: prometheus_alerts\n", "")
    with pytest.raises(PlanError) as e:
        load("production", text)
    assert e.value.line == line_of(text, "- name: alerts")


def test_a_base_error_is_still_the_base_line() -> None:
    text = PLAN.replace("    max: 0.01", "    max: oops")
    with pytest.raises(PlanError) as e:
        load("production", text)
    assert e.value.line == line_of(text, "max: oops")


def test_environment_choice_errors() -> None:
    with pytest.raises(PlanError, match=r"defines environments \(staging, production\): say which one with --env") as e:
        load(None)
    assert e.value.hint == "add one of: --env staging, --env production"  # none preferred
    with pytest.raises(PlanError, match="--env prod: no such environment") as e:
        load("prod")
    assert e.value.hint == "did you mean --env production?"
    with pytest.raises(PlanError, match="defines no environments"):
        load("staging", PLAN.split("environments:")[0])


@pytest.mark.parametrize(("overlay", "message"), [
    ("  qa:\n    service: other\n", "cannot set service"),
    ("  qa:\n    environments: {}\n", "environments do not nest"),
    ("  qa: [1, 2]\n", "must be a mapping of plan fields"),
    ("  'q a': {}\n", "must be letters, digits"),
])
def test_bad_overlays_are_refused_at_their_line(overlay: str, message: str) -> None:
    text = PLAN + overlay
    with pytest.raises(PlanError, match=message) as e:
        load("staging", text)  # every overlay is checked, whichever is chosen
    assert e.value.line is not None and e.value.line > line_of(text, "production:")


def test_removing_a_gate_the_base_lacks_is_an_error() -> None:
    text = PLAN + "  qa:\n    normal_state:\n      - {name: nope, remove: true}\n"
    with pytest.raises(PlanError, match="no gate named 'nope'") as e:
        load("qa", text)
    assert e.value.line is not None and e.value.line > line_of(text, "production:")


def test_outline_reads_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN.replace("${PROD_PROMETHEUS:-http://127.0.0.1:9090}", "${UNSET_ONE}"))
    outline = load_outline(path, environment="staging", env={})
    assert outline.steps == [50, 100] and outline.journal_key == "accounting-web@staging"
    assert load_outline(path, environment="production", env={}).approvals == [50]
    assert plan_environments(path) == ["staging", "production"]
    with pytest.raises(PlanError, match="--env"):
        load_outline(path, env={})


def test_diff_lists_what_differs_by_group() -> None:
    diffs = {d.field: d for d in diff_plans(load("staging"), load("production"))}
    assert diffs["router.socket"].a == "/run/haproxy/admin.sock"
    assert diffs["router.socket"].b == "/run/haproxy/prod.sock"
    assert diffs["steps"].group == "steps" and diffs["bake"].group == "timing"
    assert diffs["minimum_duration"].a == 120 and diffs["minimum_duration"].b == 1500
    assert diffs["normal_state[errors].max"].a == 0.05
    assert not diffs["normal_state[health]"].a_has and diffs["normal_state[health]"].b_has
    assert not diffs["normal_state[alerts]"].a_has
    assert "normal_state[alerts].url" not in diffs  # one row for a gate one side lacks
    assert diffs["approvals"].a == [] and diffs["approvals"].b == [50]
    assert diff_plans(load("production"), load("production")) == []


def test_diff_masks_secrets() -> None:
    text = PLAN.replace("  staging:\n", "  staging:\n    router: {socket: '${STAGING_SOCK}'}\n")
    a = parse_plan_text(text, filename="p", environment="staging", env={"STAGING_SOCK": "/secret/sock"})
    b = load("production")
    diffs = diff_plans(a.plan, b, redact=a.redact)
    assert "/secret/sock" not in repr(diffs)


def write(tmp_path: Path, text: str = PLAN) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return path


def test_cli_diff_table_and_json(tmp_path: Path) -> None:
    path = write(tmp_path)
    r = runner.invoke(app, ["diff", str(path), "--env", "staging", "--env", "production"])
    assert r.exit_code == 0, r.output
    assert "differences between staging and production" in r.output
    assert "normal_state[errors].max" in r.output and "/run/haproxy/prod.sock" in r.output
    r = runner.invoke(app, ["diff", str(path), "--env", "staging", "--env", "production", "--json"])
    data = json.loads(r.output)
    assert data["a"] == "staging" and not data["same"]
    assert {"group": "timing", "field": "bake", "a": 60.0, "b": 300.0, "in_a": True, "in_b": True} \
        in data["differences"]
    r = runner.invoke(app, ["diff", str(path), "--env", "staging", "--env", "staging"])
    assert r.exit_code == 0 and "run the same procedure" in r.output


def test_cli_diff_needs_two_environments(tmp_path: Path) -> None:
    path = write(tmp_path)
    r = runner.invoke(app, ["diff", str(path), "--env", "staging"])
    assert r.exit_code == 2
    assert f"diff {path} --env staging --env production" in r.output
    r = runner.invoke(app, ["diff", str(path), "--env", "staging", "--env", "qa"])
    assert r.exit_code == 2 and "no such environment" in r.output and "Traceback" not in r.output


def test_cli_validate_checks_every_environment(tmp_path: Path) -> None:
    path = write(tmp_path)
    r = runner.invoke(app, ["validate", str(path)])
    assert r.exit_code == 0, r.output
    assert "--env staging: valid plan" in r.output and "--env production: valid plan" in r.output
    bad = write(tmp_path, PLAN.replace("        max: 0.05", "        max: lots"))
    r = runner.invoke(app, ["validate", str(bad), "--json"])
    assert r.exit_code == 2
    data = json.loads(r.output)
    assert data["environments"]["staging"]["valid"] is False
    assert data["environments"]["production"]["valid"] is True
    assert f"plan.yaml:{line_of(PLAN, 'max: 0.05')}:" in data["errors"][0]


def test_cli_commands_need_env_and_hints_carry_it(tmp_path: Path) -> None:
    path = write(tmp_path)
    state = f"sqlite:///{tmp_path}/state.db"
    r = runner.invoke(app, ["status", str(path), "--state", state])
    assert r.exit_code == 2 and "add one of: --env staging, --env production" in r.output
    r = runner.invoke(app, ["approve", str(path), "--env", "production", "--state", state])
    assert r.exit_code == 2
    assert f"approve {path} --env production --step 50 --state {state}" in r.output
    r = runner.invoke(app, ["pause", str(path), "--env", "staging", "--state", state])
    assert r.exit_code == 0, r.output
    assert f"run {path} --env staging --state {state}" in r.output
    r = runner.invoke(app, ["history", str(path), "--env", "staging", "--state", state, "--json"])
    assert [json.loads(x)["kind"] for x in r.output.splitlines()] == ["paused"]
    r = runner.invoke(app, ["history", str(path), "--env", "production", "--state", state, "--json"])
    assert r.output.strip() == ""  # production's journal is its own


def test_the_example_cutover_plan_diffs_routers_of_other_kinds_in_one_row() -> None:
    example = Path(__file__).parent.parent / "examples" / "cutover.yaml"
    r = runner.invoke(app, ["diff", str(example), "--env", "staging", "--env", "production",
                            "--json"])
    assert r.exit_code == 0, r.output
    rows = {d["field"]: d for d in json.loads(r.output)["differences"]}
    assert rows["router"]["a"] == "haproxy:/run/haproxy/admin.sock#web"
    assert rows["router"]["b"].startswith("route53:Z0123456789ABCDEFGHIJ/www.example.com./CNAME + alb:")
    assert not any(f.startswith(("router.", "routers")) for f in rows)
    assert rows["approvals"] == {"group": "approvals", "field": "approvals", "a": [], "b": [50],
                                 "in_a": True, "in_b": True}


def test_a_misspelt_gate_name_in_an_overlay_says_so() -> None:
    text = PLAN.replace("      - name: errors\n        max: 0.05", "      - name: erors\n        max: 0.05")
    with pytest.raises(PlanError, match="no gate named 'erors' in the base plan's normal_state — "
                                        "did you mean 'errors'") as e:
        load("staging", text)
    assert e.value.line == line_of(text, "name: erors")
    text = PLAN.replace("      - name: health\n        remove: true", "      - name: helth\n        remove: true")
    with pytest.raises(PlanError, match="did you mean 'health'"):
        load("staging", text)


def test_diff_compares_secrets_as_loaded_and_shows_them_masked() -> None:
    text = PLAN.replace("url: ${PROD_PROMETHEUS:-http://127.0.0.1:9090}", "url: ${PROM}").replace(
        "  staging:\n", "  staging:\n    normal_state:\n      - {name: alerts, type: prometheus_alerts, url: '${PROM}'}\n", 1)
    text = text.replace("    normal_state:\n      - name: errors\n        max: 0.05\n      - name: health\n        remove: true\n", "")
    a = parse_plan_text(text, filename="p", environment="staging", env={"PROM": "http://prom-staging:9090"})
    b = parse_plan_text(text, filename="p", environment="production", env={"PROM": "http://prom-prod:9090"})
    redact = lambda t: b.redact(a.redact(t))  # noqa: E731
    rows = {d.field: d for d in diff_plans(a.plan, b.plan, redact=redact)}
    row = rows["normal_state[alerts].url"]
    assert (row.a, row.b) == ("***", "*** (differs)")
    assert "prom-staging" not in repr(rows) and "prom-prod" not in repr(rows)
    same = parse_plan_text(text, filename="p", environment="production", env={"PROM": "http://prom-staging:9090"})
    assert "normal_state[alerts].url" not in {d.field for d in diff_plans(a.plan, same.plan, redact=redact)}


def test_diff_finds_the_fields_of_a_gate_whose_name_holds_brackets() -> None:
    text = PLAN.replace("- name: errors", "- name: p99 latency [ms]").replace(
        "      - name: p99 latency [ms]\n        max: 0.05", "      - name: p99 latency [ms]\n        max: 3000")
    rows = {d.field: d for d in diff_plans(load("staging", text), load("production", text))}
    assert (rows["normal_state[p99 latency [ms]].max"].a, rows["normal_state[p99 latency [ms]].max"].b) == (3000, 0.01)


def test_removing_and_changing_one_gate_in_an_overlay_is_refused() -> None:
    text = PLAN.replace("      - name: health\n        remove: true\n",
                        "      - name: health\n        remove: true\n      - name: health\n        timeout: 3s\n")
    with pytest.raises(PlanError, match="gate 'health' is listed twice"):
        load("staging", text)
    text = PLAN.replace("        remove: true\n", "        remove: true\n        timeout: 3s\n")
    with pytest.raises(PlanError, match=r"takes no other field \(timeout\)") as e:
        load("staging", text)
    assert e.value.line == line_of(text, "timeout: 3s")


@pytest.mark.parametrize("bad", ["url: 42", "url: !env PROM"])
def test_after_a_removal_errors_point_at_the_right_gate(bad: str) -> None:
    """The base's third gate moves to second place when the first is removed: its error
    still points at its own line, and an appended gate's error is reported too."""
    text = PLAN.replace("environments:\n", f"""\
  - name: alerts base
    type: prometheus_alerts
    {bad}
environments:
""", 1) + """\
  qa:
    normal_state:
      - {name: errors, remove: true}
      - {name: extra, type: http, url: 12345}
"""
    with pytest.raises(PlanError) as e:
        load("qa", text)
    message = str(e.value)
    assert f":{line_of(text, bad)}:" in message
    assert f":{line_of(text, 'url: 12345')}:" in message
    assert "2 problems" in message


def test_operator_reasons_are_journalled_without_secrets(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """What an operator types goes into the journal and from there into reports: the
    plan's secrets and URL credentials are masked before it is written."""
    from shiftover.store import open_store

    monkeypatch.setenv("PROD_PROMETHEUS", "http://prom.internal:9090/tok3nVALUE")
    path = write(tmp_path)
    state = f"sqlite:///{tmp_path}/state.db"
    reason = "ok; dashboards at http://prom.internal:9090/tok3nVALUE, wiki http://bob:pa55word@wiki/x"
    r = runner.invoke(app, ["approve", str(path), "--env", "production", "--step", "50",
                            "-m", reason, "--state", state])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["pause", str(path), "--env", "production", "-m", reason, "--state", state])
    assert r.exit_code == 0, r.output
    with open_store(state) as store:
        stored = [e.data["reason"] for e in store.events(service="accounting-web@production")]
    assert len(stored) == 2
    for text in stored:
        assert "tok3nVALUE" not in text and "pa55word" not in text
        assert "http://***@wiki/x" in text
