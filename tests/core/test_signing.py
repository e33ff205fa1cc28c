from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from asyncevents.core.sink import sign, signing_key

MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
BODY = b'{"test":2432232314}'
TIMESTAMP = 1674087231


def test_matches_the_standard_webhooks_test_vector() -> None:
    # The vector every Standard Webhooks / Svix reference library tests against:
    # reproducing it proves interoperability, not mere self-consistency.
    token = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    signature = sign(token, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize(
    "token",
    [
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "whsec_" + base64.b64encode(b"sixteen byte key").decode(),
        # Unpadded base64, as some providers hand secrets out.
        "whsec_" + base64.b64encode(b"seventeen byte ky").decode().rstrip("="),
    ],
)
def test_whsec_token_agrees_with_the_reference_library(token: str) -> None:
    expected = Webhook(token).sign(MSG_ID, datetime.fromtimestamp(TIMESTAMP, UTC), BODY.decode())
    assert sign(token, MSG_ID, TIMESTAMP, BODY) == expected


def test_raw_token_is_the_utf8_key() -> None:
    token = "plain secret ü"
    assert signing_key(token) == token.encode("utf-8")
    expected = Webhook(token.encode("utf-8")).sign(
        MSG_ID, datetime.fromtimestamp(TIMESTAMP, UTC), BODY.decode()
    )
    assert sign(token, MSG_ID, TIMESTAMP, BODY) == expected


def test_whsec_key_is_base64_decoded() -> None:
    assert signing_key("whsec_" + base64.b64encode(b"key bytes").decode()) == b"key bytes"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "whsec_",
        "whsec_not*base64!",
        "whsec_a",  # one character short of any valid base64 length
    ],
)
def test_unusable_tokens_raise_without_echoing_the_token(token: str) -> None:
    with pytest.raises(ValueError) as caught:
        signing_key(token)
    if len(token) > len("whsec_"):
        assert token not in str(caught.value)
