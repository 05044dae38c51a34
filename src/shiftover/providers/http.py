"""HTTP probes: does an endpoint answer, with which status, with the expected body?

A probe is the simplest part of a normal state ("the health check of the new
environment answers 200", "the payments dependency is reachable"). The
provider reports what it saw and never judges: ``value`` is the status code as
a float, ``details`` carries ``status``, ``body_match`` (None when the gate
asks for no body check), ``elapsed_ms`` and the (credential-free) ``url``.

A connection error or a timeout raises :class:`~shiftover.errors.ProviderError`
with the reason; the judge turns an http gate's ProviderError into FAIL (an
endpoint that does not answer is not normal), which is not this module's call.

Decisions:

- ``timeout`` bounds the whole probe, not each socket operation: httpx's
  per-operation timeout would let a server that trickles a byte a second run
  on for ever, so the body read also checks a deadline.
- The body is read up to 64 KiB: enough for any health page, and a probe must
  not pull a large download into memory every interval.
- Redirects are not followed: a 301 from a health URL is itself a finding,
  and the gate's ``expect_status`` can ask for it.
- Headers (often an ``Authorization``) are sent but never reported.
"""

from __future__ import annotations

import functools
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
from pydantic import Field

from shiftover.errors import ProviderError
from shiftover.spec import GateSpecBase, Timeout, Url
from shiftover.types import Measurement

BODY_LIMIT = 64 * 1024


class HttpGate(GateSpecBase):
    """An HTTP probe: status, optional body substring. A connection error is FAIL."""

    JUDGE: ClassVar[str] = "probe"

    type: Literal["http"]
    url: Url
    expect_status: int = Field(default=200, ge=100, le=599)
    body_contains: str | None = None
    method: Literal["GET", "HEAD", "POST"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Timeout = 2.0


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """httpx's default TLS context, built once: building it reads the CA bundle
    (~85 ms), which would otherwise be paid on every measurement."""
    return httpx.create_ssl_context()


def client(timeout: float, transport: httpx.BaseTransport | None) -> httpx.Client:
    """An httpx client for one measurement: no redirects, shared TLS context."""
    return httpx.Client(
        timeout=timeout, transport=transport, verify=shared_ssl_context(), follow_redirects=False
    )


@dataclass
class HttpProvider:
    """One HTTP request per ``measure`` (see the module docstring)."""

    Spec: ClassVar[type[HttpGate]] = HttpGate
    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    body_contains: str | None = None
    timeout: float = 2.0
    transport: httpx.BaseTransport | None = field(default=None, repr=False)

    @classmethod
    def from_spec(
        cls, spec: HttpGate, *, transport: httpx.BaseTransport | None = None
    ) -> HttpProvider:
        return cls(
            url=spec.url,
            method=spec.method,
            headers=dict(spec.headers),
            body_contains=spec.body_contains,
            timeout=spec.timeout,
            transport=transport,
        )

    def describe(self) -> str:
        return f"http {self.method} {redact_url(self.url)}"

    def measure(self, *, now: float) -> Measurement:
        shown = redact_url(self.url)
        start = time.monotonic()
        deadline = start + self.timeout
        try:
            with (
                client(self.timeout, self.transport) as http,
                http.stream(self.method, self.url, headers=self.headers) as response,
            ):
                body = bytearray()
                if self.method != "HEAD":
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) >= BODY_LIMIT:
                            del body[BODY_LIMIT:]
                            break
                        if time.monotonic() > deadline:
                            raise httpx.ReadTimeout("body not read within the timeout")
                status = response.status_code
        except httpx.TimeoutException as exc:
            raise ProviderError(
                f"{self.method} {shown} did not complete within {self.timeout:g}s ({type(exc).__name__})",
                hint="the endpoint is down, overloaded or unreachable; if it is just slow, raise the gate's timeout",
            ) from None
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"{self.method} {shown} failed: {_reason(exc, self.url)}",
                hint="check the gate's url (scheme, host, port) and that the endpoint is up",
            ) from None
        except (httpx.InvalidURL, ValueError) as exc:
            raise ProviderError(
                f"cannot request {shown}: {_reason(exc, self.url)}",
                hint="the gate's url must be absolute, e.g. http://127.0.0.1:8080/healthz",
            ) from None
        elapsed_ms = (time.monotonic() - start) * 1000.0
        body_match: bool | None = None
        if self.body_contains is not None:
            body_match = self.body_contains in body.decode("utf-8", errors="replace")
        details: dict[str, Any] = {
            "status": status,
            "body_match": body_match,
            "elapsed_ms": round(elapsed_ms, 3),
            "url": shown,
        }
        return Measurement(value=float(status), at=now, samples=1, details=details)


def _reason(exc: Exception, url: str) -> str:
    return scrub_userinfo(str(exc) or type(exc).__name__, url)


def redact_url(url: str) -> str:
    """``url`` without user info: ``http://u:p@h:9090/x`` -> ``http://***@h:9090/x``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def scrub_userinfo(text: str, url: str) -> str:
    """Remove a URL's password from any text an exception produced."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return text
    if parts.password:
        for secret in {parts.password, unquote(parts.password)}:
            text = text.replace(secret, "***")
    return text


__all__ = [
    "BODY_LIMIT",
    "HttpProvider",
    "client",
    "redact_url",
    "scrub_userinfo",
    "shared_ssl_context",
]
