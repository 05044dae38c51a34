"""shiftover.aws: errors say what failed without quoting secrets."""

from __future__ import annotations

import botocore.exceptions
import pytest

from shiftover.aws import call, describe_error
from shiftover.errors import RouterError


def test_an_endpoint_password_is_masked_in_messages() -> None:
    exc = botocore.exceptions.EndpointConnectionError(endpoint_url="http://u:s3cretpw@127.0.0.1:1/x")
    message, hint = describe_error(exc, "Route53 ListResourceRecordSets")
    assert "s3cretpw" not in message and "***@127.0.0.1" in message and hint


def test_an_answer_that_is_not_awss_is_a_clear_error() -> None:
    def broken() -> None:
        raise AttributeError("'int' object has no attribute 'get' (http://u:s3cretpw@h/)")

    with pytest.raises(RouterError) as info:
        call(broken, "ALB DescribeListeners", error=RouterError)
    assert "not AWS's" in info.value.message and "s3cretpw" not in str(info.value)
