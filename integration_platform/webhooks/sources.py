"""Which systems may send webhooks, how they sign, and with which secrets — from the environment.

``WEBHOOK_SOURCES=maximo,upkeep`` declares the sources; each one is configured by variables
named after it (``maximo`` -> ``WEBHOOK_MAXIMO_...``):

- ``_SECRETS`` (required): comma-separated; several at once while rotating. ``whsec_<base64>``
  (Standard Webhooks' format) or the raw secret text.
- ``_SCHEME``: ``standard`` (Standard Webhooks, the default) or ``sha256`` (``X-Signature-256``).
- ``_FORMAT``: the message shape, ``common``, ``maximo``, ``upkeep`` or ``fiix``; default: the
  source's name when it is one of those, else ``common``.
- ``_RATE_LIMIT`` (events per second, default 50, ``0`` for none) and ``_BURST`` (default twice
  the rate).

Secrets are read once at start-up; a declared source without one is an error that names the
variable, so a receiver never runs with a source nobody can sign for.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from integration_platform.settings import ConfigError
from integration_platform.webhooks.signatures import SCHEMES, STANDARD, decode_secret

SOURCES_VAR = "WEBHOOK_SOURCES"
FORMATS: tuple[str, ...] = ("common", "maximo", "upkeep", "fiix")
DEFAULT_RATE_LIMIT = 50.0
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")


def source_var(name: str, suffix: str) -> str:
    """The environment variable for one setting of a source: ``WEBHOOK_<NAME>_<SUFFIX>``."""
    return f"WEBHOOK_{name.upper().replace('-', '_')}_{suffix}"


def fingerprint(secret: str) -> str:
    """A secret shown safely: its kind and the first hex digits of its SHA-256.

    Operators compare fingerprints between sender and receiver during a rotation without
    anyone printing the secret itself.
    """
    kind = "whsec" if secret.startswith("whsec_") else "raw"
    return f"{kind}:{hashlib.sha256(secret.encode('utf-8')).hexdigest()[:8]}"


@dataclass(frozen=True)
class WebhookSource:
    """One sending system: its name is the ``cmms_system_id`` its events are stored under."""

    name: str
    scheme: str
    format: str
    secrets: tuple[bytes, ...] = field(repr=False)
    """HMAC keys, newest first (the first one signs test messages)."""
    secret_fingerprints: tuple[str, ...]
    rate_limit: float
    """Events per second allowed in the long run; 0 means no limit."""
    burst: int


class WebhookSources(Mapping[str, WebhookSource]):
    """The configured sources by name."""

    def __init__(self, sources: Mapping[str, WebhookSource]) -> None:
        self._sources = dict(sources)

    def __getitem__(self, name: str) -> WebhookSource:
        return self._sources[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)

    def __repr__(self) -> str:
        return f"WebhookSources({list(self._sources.values())!r})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebhookSources:
        """Read every declared source; raises ``ConfigError`` naming the variable at fault."""
        env = os.environ if env is None else env
        declared = [part.strip().lower() for part in env.get(SOURCES_VAR, "").split(",")]
        names = [name for name in declared if name]
        if not names:
            raise ConfigError(
                f"{SOURCES_VAR} is not set: name the systems allowed to send webhooks, "
                f"e.g. {SOURCES_VAR}=maximo,upkeep, and give each its secrets in "
                "WEBHOOK_<SOURCE>_SECRETS"
            )
        sources: dict[str, WebhookSource] = {}
        for name in names:
            if not _NAME.fullmatch(name):
                raise ConfigError(
                    f"{SOURCES_VAR}: {name!r} is not a usable source name; use lower-case "
                    "letters, digits, '-' and '_', starting with a letter"
                )
            if name in sources:
                raise ConfigError(f"{SOURCES_VAR}: {name!r} is listed twice")
            sources[name] = _read_source(name, env)
        return cls(sources)


def _read_source(name: str, env: Mapping[str, str]) -> WebhookSource:
    secrets_var = source_var(name, "SECRETS")
    texts = [part.strip() for part in env.get(secrets_var, "").split(",") if part.strip()]
    if not texts:
        raise ConfigError(
            f"{secrets_var} is not set: the source {name!r} is declared in {SOURCES_VAR} but has "
            "no secret; give one (or several, comma-separated, while rotating), e.g. "
            f"{secrets_var}=whsec_<base64>"
        )
    keys = []
    for position, text in enumerate(texts, start=1):
        try:
            keys.append(decode_secret(text))
        except ValueError as exc:
            raise ConfigError(f"{secrets_var}: secret {position}: {exc}") from None

    scheme_var = source_var(name, "SCHEME")
    scheme = env.get(scheme_var, "").strip().lower() or STANDARD
    if scheme not in SCHEMES:
        raise ConfigError(f"{scheme_var}={scheme!r}: use one of {', '.join(SCHEMES)}")

    format_var = source_var(name, "FORMAT")
    default_format = name if name in FORMATS else "common"
    message_format = env.get(format_var, "").strip().lower() or default_format
    if message_format not in FORMATS:
        raise ConfigError(f"{format_var}={message_format!r}: use one of {', '.join(FORMATS)}")

    rate = _number(env, source_var(name, "RATE_LIMIT"), DEFAULT_RATE_LIMIT)
    burst = _number(env, source_var(name, "BURST"), max(1.0, 2 * rate))
    if rate > 0 and burst < 1:
        raise ConfigError(f"{source_var(name, 'BURST')} must be at least 1")
    return WebhookSource(
        name=name,
        scheme=scheme,
        format=message_format,
        secrets=tuple(keys),
        secret_fingerprints=tuple(fingerprint(text) for text in texts),
        rate_limit=rate,
        burst=int(burst),
    )


def _number(env: Mapping[str, str], var: str, default: float) -> float:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{var}={raw!r} must be a finite number, 0 or more")
    return value
