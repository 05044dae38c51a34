"""AWS clients for the Route53 and ALB routers and the CloudWatch gates, built one way.

- **The standard boto3 way, nothing of our own.** ``boto3.session.Session()`` reads
  the usual credential chain, ``AWS_PROFILE``, ``AWS_REGION`` /
  ``AWS_DEFAULT_REGION`` and the endpoint variables (``AWS_ENDPOINT_URL``,
  ``AWS_ENDPOINT_URL_ROUTE_53``, ``AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2``,
  ``AWS_ENDPOINT_URL_CLOUDWATCH``: botocore's names, from each service id): that is also how the tests reach the local
  AWS double. A plan may name a ``region`` (and a ``profile``); nothing else.
- **Bounded time.** Connect and read timeouts come from the plan's ``timeout``;
  botocore's own retries are off (``max_attempts=1``) so that :func:`call` decides
  how often, how long and which errors to retry: throttling and
  ``PriorRequestNotComplete`` with full-jitter exponential backoff, never a
  validation or permission error. Every retry sleeps; the whole call gives up
  at its deadline.
- **A rate limit per account and service.** Route53 allows 5 requests a second
  per account: :class:`RateLimiter` keeps our calls (per process) under it, in
  any one-second window, even while a run polls GetChange.
- **Clear errors.** botocore's exceptions become one line that says what failed
  and how to fix it (no credentials, endpoint unreachable, access denied with
  the action to allow), raised as the caller's error class (RouterError for
  routers, ProviderError for gates). Credentials never appear in messages.

boto3 is imported on first use: loading a plan imports every backend's spec
module, and a plan that uses HAProxy only should not pay for boto3.
"""

from __future__ import annotations

import collections
import os
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from shiftover.errors import ShiftoverError

T = TypeVar("T")

RETRYABLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
    "TooManyRequestsException", "PriorRequestNotComplete", "RequestThrottled",
    "RequestThrottledException", "SlowDown", "ServiceUnavailable", "InternalFailure",
    "InternalError",
})


class RateLimiter:
    """At most ``per_second`` calls in any one-second window from this process.

    A sliding window, not an even spacing: an idle account's first calls go out at
    once (a rollback's read, write and read back are not spaced 0.2 s apart), and
    no second ever holds more than ``per_second`` calls."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.per_second = max(1, int(per_second))
        self.window = self.per_second / per_second  # 1 s when per_second is whole
        self._sent: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def wait(self, sleep: Callable[[float], None] = time.sleep) -> None:
        while True:
            with self._lock:
                now = self.clock()
                while self._sent and now - self._sent[0] >= self.window:
                    self._sent.popleft()
                if len(self._sent) < self.per_second:
                    self._sent.append(now)
                    return
                delay = self.window - (now - self._sent[0])
            sleep(max(delay, 0.001))


# Route53's documented limit is 5 requests/s per account; one limiter per process.
ROUTE53_RATE = RateLimiter(5.0)


def client(service: str, *, region: str | None = None, profile: str | None = None,
           timeout: float = 5.0, error: type[ShiftoverError] = ShiftoverError) -> Any:
    """A boto3 client built the standard way (see the module docstring)."""
    try:
        import boto3
        import botocore.config
        import botocore.exceptions
    except ImportError as exc:  # pragma: no cover - a runtime dependency
        raise error(f"boto3 is not installed ({exc})",
                    hint="install shiftover with its dependencies: pip install shiftover") from None
    try:
        # AWS_REGION is what the SDKs document; some botocore releases read only
        # AWS_DEFAULT_REGION, so it is passed on explicitly
        region = region or os.environ.get("AWS_REGION") or None
        session = boto3.session.Session(profile_name=profile, region_name=region)
        if session.region_name is None and service != "route53":
            raise error(f"no AWS region for {service}: set AWS_REGION (or region: in the plan)",
                        hint="export AWS_REGION=eu-west-1")
        config = botocore.config.Config(
            connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1},
            user_agent_extra="shiftover")
        return session.client(service, region_name=session.region_name or "us-east-1",
                              config=config)
    except botocore.exceptions.ProfileNotFound as exc:
        raise error(f"AWS profile not found: {exc}",
                    hint="check AWS_PROFILE (or profile: in the plan) against ~/.aws/config") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise error(f"cannot build the AWS {service} client: {exc}") from None


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


_USERINFO = re.compile(r"(?<=//)[^/@\s]+@")


def describe_error(exc: BaseException, action: str) -> tuple[str, str | None]:
    """(message, hint) for a botocore exception raised by ``action``; a user and
    password in an endpoint URL (botocore quotes it) is masked."""
    message, hint = _describe(exc, action)
    return _USERINFO.sub("***@", message), hint


def _describe(exc: BaseException, action: str) -> tuple[str, str | None]:
    import botocore.exceptions

    code = error_code(exc)
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return (f"{action}: no AWS credentials found",
                "set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run on a role")
    if isinstance(exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectTimeoutError):
        return (f"{action}: cannot reach the AWS endpoint ({exc})",
                "check the network, AWS_REGION and any AWS_ENDPOINT_URL* variable")
    if isinstance(exc, botocore.exceptions.ConnectionClosedError | botocore.exceptions.ProxyConnectionError):
        return (f"{action}: the connection to the AWS endpoint was closed ({exc})",
                "check the network and any AWS_ENDPOINT_URL* or HTTPS_PROXY variable")
    if isinstance(exc, botocore.exceptions.ReadTimeoutError):
        return f"{action}: AWS did not answer in time ({exc})", "raise the router's or gate's timeout"
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
        return (f"{action}: access denied by IAM ({_message(exc)})",
                "grant the permissions listed in the README's IAM section to the role you run as")
    if code in ("ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId",
                "UnrecognizedClientException", "SignatureDoesNotMatch"):
        return (f"{action}: AWS refused the credentials ({code})",
                "refresh the session (aws sso login, or new keys)")
    if code:
        return f"{action}: {code}: {_message(exc)}", None
    return f"{action}: {type(exc).__name__}: {exc}", None


def _message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Message") or "")
    return str(exc)


def call(
    fn: Callable[..., T],
    action: str,
    *,
    error: type[ShiftoverError],
    deadline: float | None = None,
    limiter: RateLimiter | None = None,
    sleep: Callable[[float], None] = time.sleep,
    base: float = 0.2,
    cap: float = 5.0,
    **kwargs: Any,
) -> T:
    """``fn(**kwargs)``, retried on throttling with full-jitter backoff until
    ``deadline`` (``time.monotonic()``; default: 30 s from now). Any other AWS
    error, or the deadline, raises ``error`` with a clear message."""
    import botocore.exceptions

    end = time.monotonic() + 30.0 if deadline is None else deadline
    attempt = 0
    while True:
        if limiter is not None:
            limiter.wait(sleep)
        try:
            return fn(**kwargs)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            code = error_code(exc)
            if code in RETRYABLE_CODES:
                delay = random.uniform(0, min(cap, base * 2 ** attempt))
                attempt += 1
                if time.monotonic() + delay < end:
                    sleep(delay)
                    continue
                message, hint = describe_error(exc, action)
                raise error(f"{message} (still throttled after {attempt} attempts)",
                            hint=hint or "AWS is throttling this account: try again shortly") from None
            message, hint = describe_error(exc, action)
            raise error(message, hint=hint) from None
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            # botocore parsing an answer that is not AWS's (a proxy's page, a body of
            # the wrong shape) fails with plain Python errors
            raise error(f"{action}: the endpoint's answer is not AWS's ({type(exc).__name__}: "
                        + _USERINFO.sub("***@", str(exc)) + ")",
                        hint="check AWS_ENDPOINT_URL* and any proxy between here and AWS") from None


__all__ = ["ROUTE53_RATE", "RateLimiter", "call", "client", "describe_error", "error_code"]
