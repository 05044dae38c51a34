"""Trace CSV loading: bucket detection, windows (reversed, empty, outside the trace), scaling, and errors that name file:line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from shiftover.errors import BadInput
from shiftover.scaling.trace import load_trace, parse_timestamp, parse_window

NASA = Path(__file__).resolve().parents[2] / "examples" / "data" / "nasa_ksc_jul1995_rpm.csv"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "trace.csv"
    p.write_text(text)
    return p


def test_per_minute_is_a_step_function_per_second(tmp_path: Path) -> None:
    p = write(tmp_path, "timestamp,requests\n2024-01-01T00:00:00Z,60\n2024-01-01T00:01:00Z,120\n")
    tr = load_trace(p)
    assert tr.step_seconds == 60
    assert tr.duration_seconds == 120
    rps = tr.requests_per_second()
    assert rps.shape == (120,)
    assert np.all(rps[:60] == 1.0) and np.all(rps[60:] == 2.0)
    assert rps.sum() == 180
    assert tr.jobs is None


def test_per_second_with_jobs(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "timestamp,requests,jobs\n2024-01-01T00:00:00,5,1\n2024-01-01T00:00:01,7,0\n2024-01-01T00:00:02,9,2\n",
    )
    tr = load_trace(p)
    assert tr.step_seconds == 1
    assert tr.requests_per_second().tolist() == [5, 7, 9]
    assert tr.jobs_per_second() is not None
    assert tr.jobs_per_second().tolist() == [1, 0, 2]  # type: ignore[union-attr]
    assert tr.start.isoformat() == "2024-01-01T00:00:00+00:00"  # naive is UTC


def test_scale_and_window(tmp_path: Path) -> None:
    rows = "".join(f"2024-01-01T00:{m:02d}:00Z,{m}\n" for m in range(10))
    tr = load_trace(
        write(tmp_path, "timestamp,requests\n" + rows),
        scale=2.5,
        start=parse_timestamp("2024-01-01T00:03:00Z"),
        end=parse_timestamp("2024-01-01T00:06:00Z"),
    )
    assert tr.requests.tolist() == [7.5, 10.0, 12.5]
    assert tr.start == parse_timestamp("2024-01-01T00:03:00Z")


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        (
            "timestamp,requests\n2024-01-01T00:00:00Z,1\n2024-01-01T00:01:00Z,x\n",
            ":3:",
            "not a number",
        ),
        ("timestamp,requests\n2024-01-01T00:00:00Z,1\n2024-01-01T00:01:00Z,-4\n", ":3:", ">= 0"),
        ("timestamp,requests\n2024-01-01T00:00:00Z,1\nyesterday,4\n", ":3:", "ISO 8601"),
        (
            "timestamp,requests\n2024-01-01T00:00:00Z,1\n2024-01-01T00:01:00Z,1\n2024-01-01T00:05:00Z,1\n",
            ":4:",
            "gap is not zero traffic",
        ),
        (
            "timestamp,requests\n2024-01-01T00:00:00Z,1\n2024-01-01T00:00:30Z,1\n",
            ":3:",
            "per minute (60 s) or per second",
        ),
        ("time,count\n2024-01-01T00:00:00Z,1\n", ":1:", "timestamp and requests"),
        ("timestamp,requests\n2024-01-01T00:00:00Z\n", ":2:", "expected 2 columns"),
        ("", ":1:", "empty"),
    ],
)
def test_bad_rows_name_the_line(tmp_path: Path, text: str, where: str, words: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(BadInput) as exc:
        load_trace(p)
    assert f"{p}{where}" in str(exc.value)
    assert words in str(exc.value)


def test_missing_file_and_empty_window(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="cannot read trace"):
        load_trace(tmp_path / "nope.csv")
    p = write(tmp_path, "timestamp,requests\n2024-01-01T00:00:00Z,1\n2024-01-01T00:01:00Z,1\n")
    with pytest.raises(BadInput, match="holds no rows"):
        load_trace(p, start=parse_timestamp("2025-01-01"))
    with pytest.raises(BadInput, match="--scale"):
        load_trace(p, scale=0)


def test_nasa_trace_matches_its_readme() -> None:
    if not NASA.exists():
        pytest.skip(f"the NASA trace is not at {NASA} (see examples/data/README.md)")
    tr = load_trace(NASA)
    assert tr.step_seconds == 60
    assert tr.buckets == 39692
    assert tr.requests.sum() == 1891672
    assert tr.requests.max() == 405
    assert tr.start == parse_timestamp("1995-07-01T04:00:00Z")


# --- the window: reversed or empty bounds, and a window outside the trace ---


def test_reversed_window_names_both_bounds_and_which_flag_is_which() -> None:
    with pytest.raises(BadInput) as exc:
        parse_window("1995-07-14", "1995-07-13")
    msg = str(exc.value)
    assert "--from 1995-07-14 (1995-07-14T00:00:00Z) is later than --to 1995-07-13 (1995-07-13T00:00:00Z)" in msg
    assert "--from is the start, --to the end" in msg
    assert "hint: swap them: --from 1995-07-13 --to 1995-07-14" in msg


def test_the_swap_hint_pastes_into_a_shell() -> None:
    with pytest.raises(BadInput) as exc:
        parse_window("1995-07-14 10:00", "1995-07-13 10:00")
    assert "swap them: --from '1995-07-13 10:00' --to '1995-07-14 10:00'" in str(exc.value)


def test_equal_bounds_are_an_empty_window_with_a_later_end_suggested() -> None:
    with pytest.raises(BadInput) as exc:
        parse_window("1995-07-13", "1995-07-13T00:00:00+00:00")
    msg = str(exc.value)
    assert "are the same moment" in msg and "--to exclusive" in msg
    assert "--from 1995-07-13 --to 1995-07-14" in msg
    with pytest.raises(BadInput, match="--to 1995-07-14T10:30:00Z"):
        parse_window("1995-07-13T10:30:00Z", "1995-07-13T10:30:00Z")


def test_a_good_or_open_window_passes() -> None:
    assert parse_window(None, None) == (None, None)
    assert parse_window("1995-07-13", None) == (parse_timestamp("1995-07-13"), None)
    t0, t1 = parse_window("1995-07-13", "1995-07-14")
    assert t0 is not None and t1 is not None and t1 - t0 == timedelta(days=1)
    with pytest.raises(BadInput, match="--to: 'tomorrow' is not an ISO 8601"):
        parse_window("1995-07-13", "tomorrow")


def test_trace_window_refuses_reversed_bounds_before_looking_at_rows(tmp_path: Path) -> None:
    p = write(tmp_path, "timestamp,requests\n2024-01-01T00:00:00Z,1\n2024-01-01T00:01:00Z,1\n")
    with pytest.raises(BadInput) as exc:
        load_trace(p, start=parse_timestamp("2024-01-01T00:01:00Z"), end=parse_timestamp("2024-01-01T00:00:00Z"))
    assert "start 2024-01-01T00:01:00Z is not before its end 2024-01-01T00:00:00Z" in str(exc.value)
    assert "holds no rows" not in str(exc.value)


def test_a_window_outside_the_trace_names_the_traces_span(tmp_path: Path) -> None:
    rows = "".join(f"2024-01-01T00:{m:02d}:00Z,1\n" for m in range(10))
    p = write(tmp_path, "timestamp,requests\n" + rows)
    with pytest.raises(BadInput) as exc:
        load_trace(p, start=parse_timestamp("2024-02-01"), end=parse_timestamp("2024-02-02"))
    msg = str(exc.value)
    assert "[2024-02-01T00:00:00Z, 2024-02-02T00:00:00Z) holds no rows" in msg
    assert "the trace covers 2024-01-01T00:00:00Z to 2024-01-01T00:10:00Z (end exclusive)" in msg
    # the example bounds are inside the trace (a day, or the whole trace when shorter)
    assert "--from 2024-01-01T00:00:00Z --to 2024-01-01T00:10:00Z" in msg
