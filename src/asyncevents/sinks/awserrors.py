"""What an AWS call's failure means for a delivery, told without leaking credentials.

Used by the EventBridge sink: a failed call becomes a ``DeliveryResult``,
retryable for throttling, 5xx, expired tokens, connection trouble and
missing credentials (an operator can fix those while the retries run),
permanent for everything AWS refuses on purpose (access denied, no such
resource, validation).
"""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import (
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
)

from asyncevents.core.sink import DeliveryResult

__all__ = ["RETRYABLE_ERROR_CODES", "call_failure", "redact"]

#: Error codes of a whole call that are worth another try.
RETRYABLE_ERROR_CODES = frozenset({
    "ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "InternalFailure", "InternalException", "InternalServerError",
    "ServiceUnavailable", "ServiceUnavailableException", "RequestTimeout",
    "RequestTimeoutException", "ExpiredToken", "ExpiredTokenException", "RequestExpired",
})
_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA|ANPA|AGPA|AIPA)[A-Z0-9]{12,}\b")
_SIGNED = re.compile(r"((?:X-Amz-Security-Token|X-Amz-Signature|X-Amz-Credential|Signature|"
                     r"Credential)=)[^&\s,\"']+", re.IGNORECASE)


def redact(text: str, session: Any) -> str:
    """``text`` without the session's keys, secret or token, any access key id or signature."""
    try:
        credentials = session.get_credentials()  # cached by the session once resolved
        frozen = credentials.get_frozen_credentials() if credentials else None
    except Exception:  # never let redaction itself fail a delivery
        frozen = None
    if frozen is not None:
        for secret in (frozen.secret_key, frozen.token, frozen.access_key):
            if secret:
                text = text.replace(secret, "***")
    text = _KEY_ID.sub("***", text)
    return _SIGNED.sub(r"\1***", text)


def call_failure(exc: Exception, session: Any, operation: str) -> DeliveryResult:
    """The result for a delivery whose ``operation`` call raised ``exc``."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        status = status if isinstance(status, int) else None
        retryable = code in RETRYABLE_ERROR_CODES or (
            status is not None and (status >= 500 or status == 429))
        message = redact(str(error.get("Message") or ""), session)
        return DeliveryResult.failed(
            f"{operation} failed: {code}" + (f": {message}" if message else ""),
            retryable=retryable, status_code=status,
        )
    if isinstance(exc, NoCredentialsError):
        return DeliveryResult.failed(
            "no AWS credentials found (boto3's default chain: environment, shared "
            "files, container or instance role)")
    if isinstance(exc, NoRegionError):
        return DeliveryResult.failed("no AWS region: set AWS_REGION or the sink's region setting")
    if isinstance(exc, ParamValidationError):
        return DeliveryResult.failed(
            f"{operation} refused its parameters: {redact(str(exc), session)}", retryable=False)
    # Connection refused, timeouts, closed connections (BotoCoreError), anything else.
    return DeliveryResult.failed(f"{type(exc).__name__}: {redact(str(exc), session)}")
