"""HMAC-SHA256 webhook signatures: Standard Webhooks and a plain body signature.

Both check the raw bytes as received, before anything parses them, and compare in constant
time. Every signature in a header is tried against every active secret, so a sender and the
receiver can rotate secrets without a moment where one side's only secret is unknown to the
other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

STANDARD = "standard"
"""Standard Webhooks: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<b64>``."""
SHA256 = "sha256"
"""Body only: ``X-Signature-256: sha256=<hex>`` (GitHub style, for senders that can do no more)."""
SCHEMES: tuple[str, ...] = (STANDARD, SHA256)

TOLERANCE_SECONDS = 300
SECRET_PREFIX = "whsec_"
# A header with more candidates than this is an attempt to make the receiver work, not rotation.
MAX_SIGNATURES = 16
MAX_EVENT_ID_LENGTH = 200

WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"
X_SIGNATURE_256 = "x-signature-256"

# Visible ASCII only: the id goes into the signed content and into the database as text.
_EVENT_ID = re.compile(r"[\x21-\x7e]{1,200}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class SignatureError(Exception):
    """The request does not prove it comes from the source; ``reason`` is a short metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Verified:
    """What a valid signature vouches for."""

    scheme: str
    signature: str
    """The signature header as received (kept with the event as evidence)."""
    event_id: str | None = None
    """The signed delivery id (Standard Webhooks); ``None`` for a body-only signature."""
    timestamp: int | None = None


def decode_secret(secret: str) -> bytes:
    """The HMAC key: ``whsec_<base64>`` decoded (Standard Webhooks' format), else the text as is.

    Raises ``ValueError`` for a ``whsec_`` secret that is not valid base64.
    """
    if secret.startswith(SECRET_PREFIX):
        try:
            key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error:
            raise ValueError("a whsec_ secret must be followed by base64") from None
        if not key:
            raise ValueError("the whsec_ secret is empty")
        return key
    if not secret:
        raise ValueError("the secret is empty")
    return secret.encode("utf-8")


def _header_bytes(value: str) -> bytes:
    # Starlette decodes header bytes as latin-1; encoding back gives the bytes that were sent.
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", errors="surrogatepass")


def _standard_digest(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    content = _header_bytes(msg_id) + b"." + _header_bytes(timestamp) + b"." + body
    return hmac.new(key, content, hashlib.sha256).digest()


def sign_standard(msg_id: str, timestamp: int, body: bytes, secrets: Sequence[bytes]) -> str:
    """A ``webhook-signature`` value: one ``v1,<base64>`` per secret, space-separated."""
    return " ".join(
        "v1," + base64.b64encode(_standard_digest(key, msg_id, str(timestamp), body)).decode()
        for key in secrets
    )


def sign_sha256(body: bytes, secret: bytes) -> str:
    """An ``X-Signature-256`` value for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_standard(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[bytes],
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> Verified:
    """Check a Standard Webhooks signature; raises ``SignatureError`` when it does not hold.

    ``headers`` must answer lower-case names (Starlette's ``Headers`` does, whatever the case
    on the wire). The timestamp must lie within ``tolerance`` seconds of ``now`` in either
    direction: an old one is a replay, a future one would stay replayable for longer.
    """
    msg_id = headers.get(WEBHOOK_ID)
    stamp = headers.get(WEBHOOK_TIMESTAMP)
    header = headers.get(WEBHOOK_SIGNATURE)
    missing = [
        name
        for name, value in (
            (WEBHOOK_ID, msg_id),
            (WEBHOOK_TIMESTAMP, stamp),
            (WEBHOOK_SIGNATURE, header),
        )
        if not value
    ]
    if missing:
        raise SignatureError("missing_headers", f"missing header(s): {', '.join(missing)}")
    assert msg_id is not None and stamp is not None and header is not None
    if not _EVENT_ID.fullmatch(msg_id):
        raise SignatureError(
            "bad_headers",
            f"{WEBHOOK_ID} must be 1 to {MAX_EVENT_ID_LENGTH} visible ASCII characters",
        )
    if not _TIMESTAMP.fullmatch(stamp):
        raise SignatureError("bad_headers", f"{WEBHOOK_TIMESTAMP} must be Unix seconds")
    now = time.time() if now is None else now
    skew = int(stamp) - now
    if abs(skew) > tolerance:
        direction = "in the future" if skew > 0 else "old"
        raise SignatureError(
            "timestamp_out_of_tolerance",
            f"{WEBHOOK_TIMESTAMP} is {abs(skew):.0f} s {direction}; at most {tolerance} s "
            "either way is accepted (check the sender's clock)",
        )
    candidates = []
    for part in header.split()[:MAX_SIGNATURES]:
        version, _, value = part.partition(",")
        if version == "v1" and value:
            candidates.append(_header_bytes(value))
    if not candidates:
        raise SignatureError("bad_signature", f"{WEBHOOK_SIGNATURE} holds no v1,<base64> signature")
    for key in secrets:
        expected = base64.b64encode(_standard_digest(key, msg_id, stamp, body))
        for candidate in candidates:
            if hmac.compare_digest(expected, candidate):
                return Verified(STANDARD, header, event_id=msg_id, timestamp=int(stamp))
    raise SignatureError("bad_signature", "no signature matches an active secret")


def verify_sha256(headers: Mapping[str, str], body: bytes, secrets: Sequence[bytes]) -> Verified:
    """Check ``X-Signature-256: sha256=<hex>`` over the body; raises ``SignatureError``.

    There is no timestamp, so a captured request can be replayed; the inbox's de-duplication
    by event id makes a replay of the same event harmless.
    """
    header = headers.get(X_SIGNATURE_256)
    if not header:
        raise SignatureError("missing_headers", "missing header: X-Signature-256")
    prefix, _, value = header.strip().partition("=")
    if prefix.lower() != "sha256" or not _HEX_SHA256.fullmatch(value):
        raise SignatureError("bad_headers", "X-Signature-256 must look like sha256=<64 hex digits>")
    candidate = value.lower().encode("ascii")
    for key in secrets:
        expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode("ascii")
        if hmac.compare_digest(expected, candidate):
            return Verified(SHA256, header)
    raise SignatureError("bad_signature", "the signature matches no active secret")


def verify(
    scheme: str,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[bytes],
    *,
    now: float | None = None,
) -> Verified:
    """Check the signature the source's scheme prescribes."""
    if scheme == STANDARD:
        return verify_standard(headers, body, secrets, now=now)
    if scheme == SHA256:
        return verify_sha256(headers, body, secrets)
    raise ValueError(f"unknown signature scheme {scheme!r}; known: {', '.join(SCHEMES)}")
