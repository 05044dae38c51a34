"""The plan loader: the example loads; every bad plan names file:line:col, field and fix."""

from __future__ import annotations

import json
import typing
from fractions import Fraction
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ruamel.yaml import YAML

from shiftover.errors import PlanError
from shiftover.plan import (
    GATE_MODELS,
    GATE_TYPES,
    ROUTER_TYPES,
    GateSpec,
    LoadedPlan,
    Plan,
    load_plan,
    parse_duration,
    parse_plan_text,
    plan_json_schema,
    redact,
)
from shiftover.providers.http import HttpGate
from shiftover.providers.prometheus import PrometheusAlertsGate, PrometheusGate
from shiftover.routers import ROUTERS
from shiftover.types import Weights

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plan.yaml"
EXAMPLE_TEXT = EXAMPLE.read_text()

# A small plan whose line numbers are easy to count; cases edit one line.
SMALL = """\
service: shop
router:
  type: haproxy
  socket: /tmp/admin.sock
  backend: web
  old: ec2
  new: eks
steps: [10, 50, 100]
bake: 1m
normal_state:
  - name: health
    type: http
    url: http://127.0.0.1:8081/health
approvals: [50]
"""


def _parse(text: str, env: dict[str, str] | None = None) -> LoadedPlan:
    return parse_plan_text(text, filename="plan.yaml", env=env or {})


def _edit(old: str, new: str, text: str = SMALL) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


# --- the example --------------------------------------------------------------


def test_example_loads_with_the_right_values() -> None:
    loaded = load_plan(EXAMPLE, env={})
    plan = loaded.plan
    assert plan.service == "accounting-web"
    assert plan.router.type == "haproxy"
    assert (plan.router.backend, plan.router.old, plan.router.new) == ("web", "ec2", "eks")
    assert plan.steps == [1, 2, 5, 10, 25, 50, 75, 100]
    assert plan.bake == 300.0
    assert plan.interval == 15.0
    assert [type(g) for g in plan.normal_state] == [PrometheusGate, HttpGate, PrometheusAlertsGate]
    prom, http, alerts = plan.normal_state
    assert isinstance(prom, PrometheusGate) and prom.max == 0.01 and 'code="5xx"' in prom.query
    assert isinstance(http, HttpGate) and http.expect_status == 200 and http.timeout == 2.0
    assert isinstance(alerts, PrometheusAlertsGate) and alerts.labels == {"service": "accounting"}
    assert plan.failure_limit == 2
    assert plan.on_failure == "rollback"
    assert plan.approvals == [50]
    assert loaded.path == EXAMPLE
    assert loaded.source_text == EXAMPLE_TEXT
    assert loaded.secrets == frozenset()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("90s", 90.0), ("5m", 300.0), ("1h", 3600.0), ("1.5m", 90.0), ("45", 45.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert _parse(_edit("bake: 1m", f"bake: {text}")).plan.bake == seconds
    assert parse_duration(text if not text.isdigit() else int(text)) == seconds


@pytest.mark.parametrize("bad", ["5 minutes", "1w", "8d", 1e308, "-5m", "", True, float("inf"), -1])
def test_bad_durations_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_gate_and_router_types_match_the_models() -> None:
    union = typing.get_args(typing.get_args(GateSpec)[0])
    assert set(GATE_TYPES) == set(GATE_MODELS) == {m.model_fields["type"].annotation.__args__[0] for m in union}
    assert set(ROUTER_TYPES) == set(ROUTERS)


# --- ${VAR} interpolation -------------------------------------------------------

INTERP = """\
service: ${SERVICE}
router:
  type: haproxy
  socket: ${HAPROXY_SOCKET:-/run/haproxy/admin.sock}
  backend: web
  old: ec2
  new: eks
steps: [50, 100]
bake: ${BAKE:-2m}
normal_state:
  - name: deps
    type: http
    url: https://${API_HOST}/health
    headers:
      Authorization: Bearer ${API_TOKEN}
    body_contains: $${NOT_A_VAR} and $HOME stay
"""


def test_interpolation_with_defaults_escapes_and_secrets() -> None:
    env = {"SERVICE": "shop", "API_HOST": "api.internal", "API_TOKEN": "t0ps3cret"}
    loaded = _parse(INTERP, env)
    plan = loaded.plan
    assert plan.service == "shop"
    assert plan.router.socket == "/run/haproxy/admin.sock"
    assert plan.bake == 120.0
    gate = plan.normal_state[0]
    assert isinstance(gate, HttpGate)
    assert gate.url == "https://api.internal/health"
    assert gate.headers == {"Authorization": "Bearer t0ps3cret"}
    assert gate.body_contains == "${NOT_A_VAR} and $HOME stay"
    # values from the environment are secrets; defaults written in the file are not
    assert loaded.secrets == frozenset({"shop", "api.internal", "t0ps3cret"})
    assert loaded.redact("GET https://api.internal/health Bearer t0ps3cret") == "GET https://***/health Bearer ***"
    assert "t0ps3cret" not in loaded.redact(repr(plan))
    # the file text keeps the references, never the values
    assert "${API_TOKEN}" in loaded.source_text


def test_environment_overrides_default_and_empty_uses_default() -> None:
    env = {"SERVICE": "shop", "API_HOST": "h", "API_TOKEN": "x", "BAKE": "30s", "HAPROXY_SOCKET": ""}
    plan = _parse(INTERP, env).plan
    assert plan.bake == 30.0
    assert plan.router.socket == "/run/haproxy/admin.sock"


def test_unset_variable_names_the_node_and_the_variable() -> None:
    with pytest.raises(PlanError) as info:
        _parse(INTERP, {"SERVICE": "shop", "API_HOST": "h"})
    err = info.value
    assert (err.line, err.column, err.field) == (15, 22, "normal_state[0].headers.Authorization")
    assert "API_TOKEN is not set" in str(err)
    assert "export API_TOKEN=" in str(err)


def test_secrets_are_redacted_from_error_messages() -> None:
    text = _edit("url: http://127.0.0.1:8081/health", "url: ${HEALTH_URL}")
    with pytest.raises(PlanError) as info:
        _parse(text, {"HEALTH_URL": "user:hunter2@host"})
    assert "hunter2" not in str(info.value)
    assert "not an http(s) URL" in str(info.value)


def test_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIFTOVER_TEST_SERVICE", "from-env")
    text = _edit("service: shop", "service: ${SHIFTOVER_TEST_SERVICE}")
    assert parse_plan_text(text).plan.service == "from-env"


@given(
    st.lists(st.text(alphabet="abc123", min_size=4, max_size=8), min_size=1, max_size=4),
    st.text(alphabet=" -/:", min_size=1, max_size=3),
)
def test_redact_leaves_no_secret_behind(secrets: list[str], filler: str) -> None:
    text = filler + filler.join(secrets) + filler
    out = redact(text, frozenset(secrets))
    assert not any(s in out for s in secrets)
    assert out.count("***") == len(secrets)


# --- bad plans: message, line, column -------------------------------------------

# (id, plan text, message fragment, line, column)
BAD: list[tuple[str, str, str, int, int]] = [
    ("missing field", _edit("bake: 1m\n", ""), "missing required field 'bake'", 1, 1),
    ("unknown field with suggestion", _edit("approvals: [50]", "aprovals: [50]"), "unknown field 'aprovals' — did you mean 'approvals'?", 14, 1),
    ("unknown gate field", _edit("    url: http://127.0.0.1:8081/health", "    url: http://127.0.0.1:8081/health\n    expect_stauts: 204"), "did you mean 'expect_status'?", 14, 5),
    ("field of another gate type", _edit("    url: http://127.0.0.1:8081/health", "    url: http://127.0.0.1:8081/health\n    query: up"), "'query' belongs to gate type datadog, prometheus", 14, 5),
    ("unknown gate type", _edit("type: http", "type: prometheos"), "unknown gate type 'prometheos' at normal_state[0].type; known types: cloudwatch, cloudwatch_alarms, command, compare, compare_latency, datadog, datadog_monitors, haproxy_stats, http, prometheus, prometheus_alerts", 12, 11),
    ("unknown router type", _edit("type: haproxy", "type: nginx"), "unknown router type 'nginx' at router.type; known types: alb, haproxy, route53", 3, 9),
    ("gate without type", _edit("    type: http\n", ""), "missing required field 'type'", 11, 5),
    ("gate missing field", _edit("    url: http://127.0.0.1:8081/health\n", ""), "missing required field 'url'", 11, 5),
    ("router missing field", _edit("  backend: web\n", ""), "missing required field 'backend'", 3, 3),
    ("bad duration", _edit("bake: 1m", "bake: 1 minute"), "'1 minute' is not a duration", 9, 7),
    ("wrong type int", _edit("    url: http://127.0.0.1:8081/health", "    url: http://127.0.0.1:8081/health\n    expect_status: ok"), "expected a whole number, got the text 'ok'", 14, 20),
    ("out of range status", _edit("    url: http://127.0.0.1:8081/health", "    url: http://127.0.0.1:8081/health\n    expect_status: 700"), "must be at most 599", 14, 20),
    ("steps not increasing", _edit("[10, 50, 100]", "[10, 5, 100]"), "steps must be strictly increasing: 5 comes after 10", 8, 13),
    ("step above 100", _edit("[10, 50, 100]", "[10, 50, 150]"), "step 150 is outside 0-100", 8, 17),
    ("step zero", _edit("[10, 50, 100]", "[0, 50, 100]"), "step 0 is outside 0-100", 8, 9),
    ("steps not ending at 100", _edit("[10, 50, 100]", "[10, 50, 90]"), "steps must end at 100", 8, 17),
    ("steps empty", _edit("[10, 50, 100]", "[]"), "steps must not be empty", 8, 8),
    ("steps not a list", _edit("[10, 50, 100]", "10"), "expected a list, got the number 10", 8, 8),
    ("step not a number", _edit("[10, 50, 100]", "[10, half, 100]"), "expected a number, got the text 'half'", 8, 13),
    ("approval not a step", _edit("approvals: [50]", "approvals: [50, 60]"), "approval 60 is not one of the steps (10, 50, 100)", 14, 17),
    ("on_failure typo", _edit("approvals: [50]", "approvals: [50]\non_failure: rollbak"), "'rollbak' is not allowed here; expected 'rollback' or 'pause'", 15, 13),
    ("failure_limit zero", _edit("bake: 1m", "bake: 1m\nfailure_limit: 0"), "failure_limit must be at least 1", 10, 16),
    ("duplicate key", _edit("approvals: [50]", "approvals: [50]\nbake: 2m"), "duplicate key 'bake' (first set at line 9, column 1)", 15, 1),
    ("yaml syntax error", _edit("  backend: web", "  backend: web: x"), "invalid YAML: mapping values are not allowed here", 5, 15),
    ("tab indentation", _edit("  backend: web", "\tbackend: web"), "YAML indents with spaces, not tabs", 5, 1),
    ("unclosed flow list", _edit("[10, 50, 100]", "[10, 50, 100"), "invalid YAML", 9, 5),
    ("empty file", "# nothing yet\n", "the plan file is empty", 1, 1),
    ("top level is a list", "- service: shop\n", "the top level of a plan must be a mapping", 1, 1),
    ("router is text", _edit("router:\n  type: haproxy\n  socket: /tmp/admin.sock\n  backend: web\n  old: ec2\n  new: eks\n", "router: haproxy\n"), "expected a mapping (name: value lines), got the text 'haproxy'", 2, 9),
    ("gate is text", _edit("normal_state:\n", "normal_state:\n  - http\n"), "expected a mapping", 11, 5),
    ("empty value", _edit("url: http://127.0.0.1:8081/health", "url:"), "expected text, got an empty value", 13, 5),
    ("url without scheme", _edit("url: http://127.0.0.1:8081/health", "url: 127.0.0.1:8081"), "'127.0.0.1:8081' is not an http(s) URL", 13, 10),
    ("service with a space", _edit("service: shop", "service: my shop"), "service name 'my shop' may only contain", 1, 10),
    ("service not text", _edit("service: shop", "service: 42"), "expected text, got the number 42", 1, 10),
    ("duplicate gate names", _edit("approvals: [50]", "  - {name: health, type: http, url: 'http://x'}\napprovals: [50]"), "gate names must be unique: 'health'", 14, 12),
    ("prometheus gate without threshold", _edit("    type: http\n    url: http://127.0.0.1:8081/health", "    type: prometheus\n    url: http://127.0.0.1:9090\n    query: up"), "needs a threshold", 11, 5),
    ("min above max", _edit("    type: http\n    url: http://127.0.0.1:8081/health", "    type: prometheus\n    url: http://127.0.0.1:9090\n    query: up\n    max: 1\n    min: 2"), "min 2 is above max 1", 16, 10),
    ("nan threshold", _edit("    type: http\n    url: http://127.0.0.1:8081/health", "    type: prometheus\n    url: http://127.0.0.1:9090\n    query: up\n    max: .nan"), "expected a finite number", 15, 10),
    ("same old and new server", _edit("new: eks", "new: ec2"), "old and new are the same server 'ec2'", 7, 8),
    ("zero timeout", _edit("    url: http://127.0.0.1:8081/health", "    url: http://127.0.0.1:8081/health\n    timeout: 0s"), "timeout must be greater than 0", 14, 14),
    ("label value not text", _edit("    type: http\n    url: http://127.0.0.1:8081/health", "    type: prometheus_alerts\n    url: http://127.0.0.1:9090\n    labels: {code: 500}"), "quote it to make it text", 14, 20),
    ("unknown YAML tag", _edit("bake: 1m", "bake: !env BAKE"), "unsupported YAML tag '!env'", 9, 7),
    ("bad variable reference", _edit("bake: 1m", "bake: ${1BAKE}"), "not a variable reference", 9, 7),
    ("unclosed variable", _edit("bake: 1m", "bake: ${BAKE"), "without a closing '}'", 9, 7),
    ("unset variable", _edit("bake: 1m", "bake: ${BAKE}"), "environment variable BAKE is not set", 9, 7),
    ("step below the router's smallest split", _edit("[10, 50, 100]", "[0.1, 50, 100]"), "step 0.1% is below the smallest split HAProxy's absolute weights 0-256 can set (0.3891%", 8, 9),
    ("two steps that are one split", _edit("[10, 50, 100]", "[33.3, 33.31, 50, 100]"), "steps 33.3 and 33.31 are the same split", 8, 15),
    ("min_samples on an http gate", _edit("    url: http://127.0.0.1:8081/health", "    url: http://127.0.0.1:8081/health\n    min_samples: 3"), "unknown field 'min_samples' ('min_samples' belongs to gate type cloudwatch, command, datadog, haproxy_stats, prometheus)", 14, 5),
    ("min_samples on an alerts gate", _edit("    type: http\n    url: http://127.0.0.1:8081/health", "    type: prometheus_alerts\n    url: http://127.0.0.1:9090\n    min_samples: 3"), "'min_samples' belongs to gate type cloudwatch, command, datadog, haproxy_stats, prometheus", 14, 5),
    ("min_samples without samples_query", _edit("    type: http\n    url: http://127.0.0.1:8081/health", "    type: prometheus\n    url: http://127.0.0.1:9090\n    query: up\n    max: 1\n    min_samples: 50"), "min_samples 50 needs a samples_query", 16, 18),
    ("interval of 1e308", _edit("bake: 1m", "bake: 1m\ninterval: 1e308"), "longer than a week", 10, 11),
    ("error_limit zero", _edit("bake: 1m", "bake: 1m\nerror_limit: 0"), "error_limit must be at least 1", 10, 14),
]


@pytest.mark.parametrize(("text", "fragment", "line", "column"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_plan(text: str, fragment: str, line: int, column: int) -> None:
    with pytest.raises(PlanError) as info:
        _parse(text)
    err = info.value
    assert fragment in str(err)
    assert (err.file, err.line, err.column) == ("plan.yaml", line, column), str(err)
    assert str(err).startswith(f"plan.yaml:{line}:{column}: "), str(err)
    assert err.exit_code == 2


def test_errors_name_the_field_path() -> None:
    text = _edit("    url: http://127.0.0.1:8081/health", "    url: http://127.0.0.1:8081/health\n    expect_status: 700")
    with pytest.raises(PlanError) as info:
        _parse(text)
    assert info.value.field == "normal_state[0].expect_status"
    assert "(field: normal_state[0].expect_status)" in str(info.value)


def test_several_problems_are_reported_together() -> None:
    text = _edit("bake: 1m", "bake: soon\nfailure_limit: 0")
    text = _edit("approvals: [50]", "aprovals: [50]", text)
    with pytest.raises(PlanError) as info:
        _parse(text)
    err = info.value
    lines = str(err).splitlines()
    assert lines[0] == "plan.yaml: 3 problems in the plan:"
    assert lines[1].startswith("  plan.yaml:9:7: 'soon' is not a duration")
    assert lines[2].startswith("  plan.yaml:10:16: failure_limit must be at least 1")
    assert lines[3] == ("      hint: e.g. failure_limit: 2 (the default: consecutive failed "
                        "checks before on_failure)")
    assert lines[4].startswith("  plan.yaml:15:1: unknown field 'aprovals'")
    assert (err.line, err.column, err.field) == (9, 7, "bake")


def test_unknown_type_suggests_the_closest() -> None:
    with pytest.raises(PlanError) as info:
        _parse(_edit("type: http", "type: prometheos"))
    assert info.value.hint == "did you mean 'prometheus'?"


# --- files ------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="plan file not found") as info:
        load_plan(tmp_path / "nope.yaml")
    assert info.value.file == str(tmp_path / "nope.yaml")


def test_non_utf8_file_points_at_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_bytes(b"service: shop\nbake: 5\xe9m\n")
    with pytest.raises(PlanError, match="not UTF-8") as info:
        load_plan(path)
    assert (info.value.line, info.value.column) == (2, 8)


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + SMALL.replace("\n", "\r\n").encode())
    assert load_plan(path, env={}).plan.service == "shop"


def test_anchors_and_merge_keys() -> None:
    text = """\
service: shop
router: {type: haproxy, socket: /s, backend: web, old: a, new: b}
steps: [100]
bake: 0
normal_state:
  - &probe {name: one, type: http, url: 'http://h/1', timeout: 1s}
  - <<: *probe
    name: two
"""
    gates = _parse(text).plan.normal_state
    assert [g.name for g in gates] == ["one", "two"]
    assert gates[1].timeout == 1.0


# --- JSON Schema --------------------------------------------------------------------


def test_json_schema_accepts_the_example_and_refuses_a_typo() -> None:
    schema = plan_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "shiftover plan"
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    data = YAML(typ="safe", pure=True).load(EXAMPLE_TEXT)
    assert list(validator.iter_errors(data)) == []
    data["bak"] = data.pop("bake")
    assert list(validator.iter_errors(data))


def test_models_still_validate_plain_dicts() -> None:
    plan = Plan.model_validate(YAML(typ="safe", pure=True).load(EXAMPLE_TEXT))
    assert plan == load_plan(EXAMPLE, env={}).plan


def test_a_step_the_router_cannot_express_is_mapped_at_or_below() -> None:
    plan = _parse(_edit("[10, 50, 100]", "[10, 33.3, 50, 100]")).plan
    mapped = plan.step_weights[1]
    assert mapped < Weights("33.3") and mapped.expressible(256)
    assert plan.step_weights[0] == Weights(10) and plan.step_weights[3] == Weights(100)


def test_values_too_short_to_be_secrets_are_not_masked() -> None:
    """`${REPLICAS}=1` must not turn every "1" of every message into "***"."""
    assert redact("step 1% of 10", frozenset({"1"})) == "step 1% of 10"
    assert redact("token abcd", frozenset({"abcd"})) == "token ***"


def test_a_secret_is_masked_in_its_escaped_forms_too() -> None:
    """`body_contains: ${TOK}` with a quote and a backslash leaked through the
    reasons that quote it with repr, and through the journal's JSON."""
    import json as _json
    secret = 's3cr3t"val\\ue'
    quoted = f"body does not contain {secret!r}"
    for text in (quoted, _json.dumps(quoted)):
        out = redact(text, frozenset({secret}))
        assert "s3cr3t" not in out, out


# --- several routers in lockstep -------------------------------------------------------

LOCKSTEP = _edit("""router:
  type: haproxy
  socket: /tmp/admin.sock
  backend: web
  old: ec2
  new: eks
""", """routers:
  - type: haproxy
    socket: /tmp/admin.sock
    backend: web
    old: ec2
    new: eks
  - type: haproxy
    socket: /tmp/other.sock
    backend: web
    old: ec2
    new: eks
""")


def _error(text: str) -> PlanError:
    with pytest.raises(PlanError) as info:
        _parse(text)
    return info.value


def test_a_lockstep_plan_loads_with_every_member() -> None:
    plan = _parse(LOCKSTEP).plan
    assert plan.router is None and [m.socket for m in plan.members] == ["/tmp/admin.sock", "/tmp/other.sock"]


def test_an_unknown_member_type_points_at_its_line() -> None:
    e = _error(_edit("  - type: haproxy\n    socket: /tmp/other.sock", "  - type: haproxi\n    socket: /tmp/other.sock", LOCKSTEP))
    assert (e.line, e.column) == (8, 11) and e.field == "routers[1].type"
    assert "known types" in e.reason and e.hint == "did you mean 'haproxy'?"


def test_router_and_routers_together_or_neither_are_refused() -> None:
    both = _error(LOCKSTEP.replace("routers:", "router: {type: haproxy, socket: /s, backend: w, old: a, new: b}\nrouters:"))
    assert "not both" in both.reason
    text = SMALL.split("router:")[0] + "steps:" + SMALL.split("steps:")[1]
    neither = _error(text)
    assert "no router" in neither.reason and neither.field == "router"


def test_a_lockstep_list_of_one_says_to_write_router() -> None:
    one = LOCKSTEP.split("  - type: haproxy\n    socket: /tmp/other.sock")[0] + "steps:" + LOCKSTEP.split("steps:")[1]
    e = _error(one)
    assert e.field == "routers" and "this list has 1" in e.reason and "router:" in (e.hint or "")


def test_steps_are_mapped_onto_every_members_scale() -> None:
    # 33% is not exact on 0-256 nor on 0-255: the step is the largest split both set exactly
    plan = _parse(_edit("steps: [10, 50, 100]", "steps: [33, 50, 100]", LOCKSTEP)).plan
    from shiftover.plan import step_weights

    both = step_weights([33], (256, 255))[0]
    assert both.expressible(256) and both.expressible(255) and both <= Weights(33)
    assert plan.step_weights[0] == step_weights([33], (256,))[0]  # two HAProxy members: one scale
    for w in (step_weights([s], (256, 255, 999))[0] for s in (0.5, 1, 2.5, 33, 66.6)):
        assert all(w.expressible(m) for m in (256, 255, 999))


def test_schema_lists_every_router_and_gate_type() -> None:
    schema = json.dumps(plan_json_schema())
    for name in (*ROUTERS, *GATE_MODELS):
        assert f'"const": "{name}"' in schema or f'"{name}"' in schema, name


@pytest.mark.parametrize("name", ["route53.yaml", "alb.yaml", "lockstep.yaml"])
def test_the_aws_examples_load(name: str) -> None:
    """examples/ holds an EC2-to-EKS plan for each AWS router (and both in lockstep),
    with CloudWatch and Datadog gates; each loads, and every step is exact on every
    router's scale."""
    plan = load_plan(EXAMPLE.parent / name, env={}).plan
    types = {g.type for g in plan.normal_state}
    assert types & {"cloudwatch", "cloudwatch_alarms"} and plan.members
    assert [w.new_percent for w in plan.step_weights] == [Fraction(str(s)) for s in plan.steps]
    if name == "lockstep.yaml":
        assert [m.type for m in plan.members] == ["route53", "alb"]
    else:
        assert types & {"datadog", "datadog_monitors"}


def test_a_lockstep_member_listed_twice_is_a_plan_error_at_its_line() -> None:
    twice = LOCKSTEP.replace("socket: /tmp/other.sock", "socket: /tmp/admin.sock")
    e = _error(twice)
    assert e.field == "routers[1]" and e.line == 8 and "same target as routers[0]" in e.reason
