"""Signature schemes, source configuration and rate limiting, without a server or database."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from integration_platform.settings import ConfigError
from integration_platform.webhooks.ratelimit import TokenBucket, retry_after_header
from integration_platform.webhooks.signatures import (
    SignatureError,
    decode_secret,
    sign_sha256,
    sign_standard,
    verify_sha256,
    verify_standard,
)
from integration_platform.webhooks.sources import WebhookSources, fingerprint

# The example from the Standard Webhooks specification's reference implementations.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
NOW = float(SPEC_TIMESTAMP)


def spec_headers(**overrides: str) -> dict[str, str]:
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    headers.update(overrides)
    return headers


def test_standard_webhooks_reference_vector() -> None:
    key = decode_secret(SPEC_SECRET)
    assert sign_standard(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY, [key]) == SPEC_SIGNATURE
    verified = verify_standard(spec_headers(), SPEC_BODY, [key], now=NOW)
    assert (verified.event_id, verified.timestamp) == (SPEC_ID, SPEC_TIMESTAMP)


def test_any_of_several_signatures_and_secrets_may_match() -> None:
    key = decode_secret(SPEC_SECRET)
    other = b"another key"
    header = f"v1a,ignored-asymmetric v1,{base64.b64encode(b'0' * 32).decode()} {SPEC_SIGNATURE}"
    verify_standard(spec_headers(**{"webhook-signature": header}), SPEC_BODY, [other, key], now=NOW)
    with pytest.raises(SignatureError) as error:
        verify_standard(spec_headers(), SPEC_BODY, [other], now=NOW)
    assert error.value.reason == "bad_signature"


@pytest.mark.parametrize("offset", [-301, 301, -10_000, 10_000])
def test_timestamp_outside_five_minutes_either_way_is_refused(offset: int) -> None:
    key = decode_secret(SPEC_SECRET)
    with pytest.raises(SignatureError) as error:
        verify_standard(spec_headers(), SPEC_BODY, [key], now=NOW - offset)
    assert error.value.reason == "timestamp_out_of_tolerance"


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_timestamp_within_five_minutes_is_accepted(offset: int) -> None:
    verify_standard(spec_headers(), SPEC_BODY, [decode_secret(SPEC_SECRET)], now=NOW - offset)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"webhook-id": ""}, "missing_headers"),
        ({"webhook-id": "has space"}, "bad_headers"),
        ({"webhook-id": "x" * 201}, "bad_headers"),
        ({"webhook-timestamp": "1614265330.5"}, "bad_headers"),
        ({"webhook-timestamp": "-1"}, "bad_headers"),
        ({"webhook-signature": "v2,abc"}, "bad_signature"),
        ({"webhook-signature": "v1,\u00e9\u00e9"}, "bad_signature"),
        ({"webhook-signature": "v1," + "A" * 10_000}, "bad_signature"),
    ],
)
def test_malformed_headers_are_refused_without_errors(headers: dict[str, str], reason: str) -> None:
    with pytest.raises(SignatureError) as error:
        verify_standard(spec_headers(**headers), SPEC_BODY, [decode_secret(SPEC_SECRET)], now=NOW)
    assert error.value.reason == reason


def test_body_signature_matches_github_style_hex() -> None:
    body = b'{"wonum": "1001"}'
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign_sha256(body, b"s3cret") == expected
    assert verify_sha256(
        {"x-signature-256": expected.upper().replace("SHA256", "sha256")}, body, [b"s3cret"]
    )
    for header in ["", "sha1=" + "0" * 64, "sha256=zz", expected[:-1]]:
        with pytest.raises(SignatureError):
            verify_sha256({"x-signature-256": header}, body, [b"s3cret"])
    with pytest.raises(SignatureError):
        verify_sha256({"x-signature-256": expected}, body + b" ", [b"s3cret"])


def test_secret_formats() -> None:
    assert decode_secret("whsec_" + base64.b64encode(b"\x00\x01key").decode()) == b"\x00\x01key"
    assert decode_secret("plain secret") == b"plain secret"
    for bad in ["whsec_not base64!", "whsec_", ""]:
        with pytest.raises(ValueError):
            decode_secret(bad)


def test_sources_from_environment() -> None:
    env = {
        "WEBHOOK_SOURCES": " Maximo , plant-2 ",
        "WEBHOOK_MAXIMO_SECRETS": f"{SPEC_SECRET}, older-raw-secret",
        "WEBHOOK_PLANT_2_SECRETS": "raw",
        "WEBHOOK_PLANT_2_SCHEME": "SHA256",
        "WEBHOOK_PLANT_2_RATE_LIMIT": "0",
    }
    sources = WebhookSources.from_env(env)
    assert list(sources) == ["maximo", "plant-2"]
    maximo = sources["maximo"]
    assert (maximo.scheme, maximo.format, maximo.rate_limit, maximo.burst) == (
        "standard",
        "maximo",
        50.0,
        100,
    )
    assert maximo.secrets == (decode_secret(SPEC_SECRET), b"older-raw-secret")
    assert maximo.secret_fingerprints[0] == fingerprint(SPEC_SECRET)
    assert SPEC_SECRET not in repr(sources) and "older-raw-secret" not in repr(sources)
    plant = sources["plant-2"]
    assert (plant.scheme, plant.format, plant.rate_limit) == ("sha256", "common", 0.0)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, "WEBHOOK_SOURCES"),
        ({"WEBHOOK_SOURCES": "maximo"}, "WEBHOOK_MAXIMO_SECRETS"),
        ({"WEBHOOK_SOURCES": "maximo", "WEBHOOK_MAXIMO_SECRETS": " , "}, "WEBHOOK_MAXIMO_SECRETS"),
        ({"WEBHOOK_SOURCES": "a", "WEBHOOK_A_SECRETS": "whsec_%%"}, "WEBHOOK_A_SECRETS"),
        (
            {"WEBHOOK_SOURCES": "a", "WEBHOOK_A_SECRETS": "s", "WEBHOOK_A_SCHEME": "md5"},
            "WEBHOOK_A_SCHEME",
        ),
        (
            {"WEBHOOK_SOURCES": "a", "WEBHOOK_A_SECRETS": "s", "WEBHOOK_A_FORMAT": "sap"},
            "WEBHOOK_A_FORMAT",
        ),
        (
            {"WEBHOOK_SOURCES": "a", "WEBHOOK_A_SECRETS": "s", "WEBHOOK_A_RATE_LIMIT": "fast"},
            "WEBHOOK_A_RATE_LIMIT",
        ),
        (
            {"WEBHOOK_SOURCES": "a", "WEBHOOK_A_SECRETS": "s", "WEBHOOK_A_BURST": "-1"},
            "WEBHOOK_A_BURST",
        ),
        ({"WEBHOOK_SOURCES": "a,a", "WEBHOOK_A_SECRETS": "s"}, "WEBHOOK_SOURCES"),
        ({"WEBHOOK_SOURCES": "9lives"}, "WEBHOOK_SOURCES"),
    ],
)
def test_configuration_errors_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        WebhookSources.from_env(env)


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    now = [100.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = bucket.take()
    assert wait == pytest.approx(0.5)
    assert retry_after_header(wait) == "1"
    now[0] += 0.5
    assert bucket.take() == 0.0
    now[0] += 60  # refills up to the burst only
    assert [bucket.take() for _ in range(4)][-1] > 0
    unlimited = TokenBucket(rate=0, burst=1)
    assert all(unlimited.take() == 0.0 for _ in range(1000))
