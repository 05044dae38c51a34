"""HttpProvider against a real (stdlib) HTTP server: what it reports, and how it fails."""

from __future__ import annotations

from typing import Any

import pytest

from shiftover.errors import NoData, ProviderError
from shiftover.providers import build_provider
from shiftover.providers.http import BODY_LIMIT, HttpGate, HttpProvider, redact_url


def probe(url: str, **extra: Any) -> HttpProvider:
    return HttpProvider.from_spec(HttpGate(type="http", name="probe", url=url, **extra))


def test_200_reports_status_and_details(http_target: Any) -> None:
    m = probe(http_target.url + "/ok").measure(now=42.0)
    assert m.value == 200.0
    assert m.at == 42.0
    assert m.samples == 1
    assert m.details["status"] == 200
    assert m.details["body_match"] is None  # the gate asks for no body check
    assert m.details["url"] == http_target.url + "/ok"
    assert m.details["elapsed_ms"] >= 0


def test_503_is_a_measurement_not_an_error(http_target: Any) -> None:
    m = probe(http_target.url + "/status/503").measure(now=1.0)
    assert m.value == 503.0
    assert m.details["status"] == 503


def test_body_substring(http_target: Any) -> None:
    assert (
        probe(http_target.url + "/ok", body_contains="healthy")
        .measure(now=1.0)
        .details["body_match"]
        is True
    )
    assert (
        probe(http_target.url + "/ok", body_contains="broken")
        .measure(now=1.0)
        .details["body_match"]
        is False
    )


def test_body_read_is_capped(http_target: Any) -> None:
    # NEEDLE sits after 1 MiB: past the cap, so it is not seen
    m = probe(http_target.url + "/big", body_contains="NEEDLE").measure(now=1.0)
    assert BODY_LIMIT < 1024 * 1024
    assert m.details["body_match"] is False
    assert (
        probe(http_target.url + "/big", body_contains="xxxx").measure(now=1.0).details["body_match"]
        is True
    )


def test_headers_method_and_redirects(http_target: Any) -> None:
    m = probe(
        http_target.url + "/headers", headers={"X-Probe": "abc"}, body_contains="probe=abc"
    ).measure(now=1.0)
    assert m.details["body_match"] is True
    assert "X-Probe" not in repr(m)  # headers are sent, never reported
    assert probe(http_target.url + "/ok", method="HEAD").measure(now=1.0).value == 200.0
    assert probe(http_target.url + "/ok", method="POST").measure(now=1.0).value == 200.0
    assert probe(http_target.url + "/redirect").measure(now=1.0).value == 302.0  # not followed


def test_timeout_is_an_error(http_target: Any) -> None:
    with pytest.raises(ProviderError) as info:
        probe(http_target.url + "/slow?delay=5", timeout="300ms").measure(now=1.0)
    assert not isinstance(info.value, NoData)
    assert "did not complete within 0.3s" in str(info.value)


def test_timeout_bounds_a_trickling_body(http_target: Any) -> None:
    # a byte every 0.2 s: each read is quick, the whole body is not
    with pytest.raises(ProviderError, match=r"did not complete within 0\.5s"):
        probe(http_target.url + "/trickle", timeout="500ms").measure(now=1.0)


def test_connection_refused_is_an_error(http_refused_url: str) -> None:
    with pytest.raises(ProviderError) as info:
        probe(http_refused_url).measure(now=1.0)
    assert not isinstance(info.value, NoData)
    assert http_refused_url in str(info.value)
    assert "check the gate's url" in str(info.value)


def test_credentials_never_reported(http_target: Any, http_refused_url: str) -> None:
    secret_url = http_target.url.replace("http://", "http://user:pa55word@") + "/ok"
    m = probe(secret_url).measure(now=1.0)
    assert "pa55word" not in repr(m)
    with pytest.raises(ProviderError) as info:
        probe(http_refused_url.replace("http://", "http://user:pa55word@")).measure(now=1.0)
    assert "pa55word" not in str(info.value)


def test_bad_url_is_a_provider_error() -> None:
    # the plan refuses these; a provider built by hand must still fail cleanly
    for url in ("not a url", "ftp://127.0.0.1/x", "http://"):
        with pytest.raises(ProviderError):
            HttpProvider(url=url).measure(now=1.0)


def test_redact_url() -> None:
    assert redact_url("http://u:p@h:1/x?q=1") == "http://***@h:1/x?q=1"
    assert redact_url("http://h:1/x") == "http://h:1/x"


def test_built_by_the_registry(http_target: Any) -> None:
    p = build_provider(HttpGate(type="http", name="p", url=http_target.url + "/ok"))
    assert isinstance(p, HttpProvider)
    assert p.measure(now=5.0).at == 5.0
