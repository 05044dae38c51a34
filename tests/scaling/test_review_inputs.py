"""Inputs a new user gets wrong, found by review: each is exit 2 naming the flag, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from shiftover.cli_scale import _recommend_command, scale_app
from shiftover.errors import BadInput
from shiftover.scaling.recommend import Grid
from shiftover.scaling.trace import load_trace

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "scaling.yaml"
NASA = ROOT / "examples" / "data" / "nasa_ksc_jul1995_rpm.csv"
runner = CliRunner()


def test_an_infinite_scale_is_refused(tmp_path: Path) -> None:
    res = runner.invoke(scale_app, ["simulate", "--trace", str(NASA), "--config", str(EXAMPLE), "--scale", "inf",
                                    "--from", "1995-07-13", "--to", "1995-07-13T01:00", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    assert "--scale" in res.output and "finite" in res.output
    assert not (tmp_path / "r").exists()


def test_a_byte_order_mark_before_the_header_is_read(tmp_path: Path) -> None:
    # Excel's "CSV UTF-8" starts the file with a BOM; the header is still timestamp,requests
    p = tmp_path / "excel.csv"
    p.write_bytes("\ufefftimestamp,requests\r\n2024-01-01T00:00:00Z,60\r\n2024-01-01T00:01:00Z,120\r\n".encode())
    assert load_trace(p).requests.tolist() == [60.0, 120.0]


@pytest.mark.parametrize("flag", ["--targets", "--target-fractions"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_target_that_is_not_finite_names_its_flag(flag: str, value: str) -> None:
    res = runner.invoke(scale_app, ["recommend", "--trace", str(NASA), "--config", str(EXAMPLE), "--jobs", "1",
                                    "--from", "1995-07-13", "--to", "1995-07-13T01:00", flag, value])
    assert res.exit_code == 2, res.output
    assert flag in res.output and value in res.output
    assert "HPASpec" not in res.output


def test_a_target_below_the_resolution_is_quoted_as_given() -> None:
    with pytest.raises(BadInput, match=r"0\.0001") as exc:
        Grid(min_replicas=(3,), targets=(0.0001, 35.0), scale_down_windows=(300,), headroom_pods=(0,))
    assert "--targets 0," not in str(exc.value)


def test_a_namespace_is_a_dns_label_without_dots() -> None:
    # a namespace name is a DNS-1123 label (no '.'): the API server refuses "shop.prod"
    res = runner.invoke(scale_app, ["manifests", "--config", str(EXAMPLE), "--namespace", "shop.prod"])
    assert res.exit_code == 2, res.output
    assert "namespace" in res.output and "shop.prod" in res.output
    res = runner.invoke(scale_app, ["manifests", "--config", str(EXAMPLE), "--namespace", "a" * 64])
    assert res.exit_code == 2, res.output


def test_a_bad_trigger_auth_name_names_the_flag() -> None:
    res = runner.invoke(scale_app, ["manifests", "--config", str(EXAMPLE), "--flavor", "keda",
                                    "--trigger-auth", "Datadog_Auth"])
    assert res.exit_code == 2, res.output
    assert "--trigger-auth" in res.output and "keda_auth_name" not in res.output


@pytest.mark.parametrize("scale", [1234567.0, 0.1234567, 200.0])
def test_a_pasted_command_keeps_the_scale_exactly(scale: float) -> None:
    grid = Grid(min_replicas=(3,), targets=(35.0,), scale_down_windows=(300,), headroom_pods=(0,))
    cmd = _recommend_command(NASA, EXAMPLE, scale, None, None, 0, None, grid, None, False).split()
    assert float(cmd[cmd.index("--scale") + 1]) == scale


def test_a_secret_name_that_looks_like_a_datadog_key_is_refused_unechoed() -> None:
    key = "0123456789abcdef0123456789abcdef"
    res = runner.invoke(scale_app, ["manifests", "--config", str(EXAMPLE), "--flavor", "keda", "--secret-name", key])
    assert res.exit_code == 2, res.output
    assert key not in res.output and "--secret-name" in res.output
