"""Verifies the HMAC signature Grafana puts on webhook contact point requests.

What Grafana does (webhook contact point, "HMAC Signature" settings): with a secret configured it
computes HMAC-SHA256 with that secret and sends it hex-encoded in the signature header (default
`X-Grafana-Alerting-Signature`). When a timestamp header is also configured, it sends the Unix time
in seconds in that header and signs `timestamp + ":" + body` instead of the body alone. Grafana has no
default timestamp header name; its docs use `X-Grafana-Alerting-Signature-Timestamp`, so that is the
default here, and both names can be changed to match the contact point.

https://grafana.com/docs/grafana/latest/alerting/configure-notifications/manage-contact-points/integrations/webhook-notifier/#hmac-signature
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

from integrations.settings import ConfigError

SIGNATURE_HEADER = "X-Grafana-Alerting-Signature"
TIMESTAMP_HEADER = "X-Grafana-Alerting-Signature-Timestamp"
DEFAULT_TOLERANCE_S = 300.0


class SignatureError(ValueError):
    """The request is not signed as configured; the message says what was wrong. Answer 401."""


def grafana_signature(body: bytes, secret: str, timestamp: str | None = None) -> str:
    """The hex HMAC-SHA256 Grafana would send for `body` (signed with `timestamp` when given)."""
    message = body if timestamp is None else timestamp.encode("ascii") + b":" + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify_grafana_signature(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    signature_header: str = SIGNATURE_HEADER,
    timestamp_header: str = TIMESTAMP_HEADER,
    require_timestamp: bool = False,
) -> None:
    """Return if `body` carries a valid Grafana signature; raise SignatureError otherwise.

    `body` must be the raw request body, byte for byte: re-serialised JSON will not match.
    Header names are matched case-insensitively. When the timestamp header is present it is part
    of the signed message, and a timestamp more than `tolerance_s` seconds from `now` (default: the
    current time) is refused, which stops replays of old requests. Without a timestamp header a
    signed request stays valid forever; `require_timestamp` refuses such requests, for when the
    contact point is meant to send one.
    """
    if not secret:
        raise ConfigError(
            "the Grafana webhook secret is empty, so every signature would be checked against an empty "
            "key; configure the contact point's HMAC secret in logtriage too, or turn verification off"
        )
    if tolerance_s <= 0:
        raise ValueError(f"tolerance_s must be positive, got {tolerance_s}")
    lowered = {name.lower(): value for name, value in headers.items()}
    signature = lowered.get(signature_header.lower())
    if signature is None or not signature.strip():
        raise SignatureError(f"missing signature: the request has no {signature_header} header")
    timestamp = lowered.get(timestamp_header.lower())
    if timestamp is None and require_timestamp:
        raise SignatureError(f"missing timestamp: the request has no {timestamp_header} header")
    if timestamp is not None:
        timestamp = timestamp.strip()
        if not timestamp.isascii() or not timestamp.isdigit():
            raise SignatureError(
                f"bad timestamp: {timestamp_header} must be Unix seconds, got {timestamp[:40]!r}"
            )

    expected = grafana_signature(body, secret, timestamp).encode("ascii")
    given = signature.strip().lower().encode("utf-8", errors="replace")
    if not hmac.compare_digest(expected, given):
        where = f"{timestamp_header} and the body" if timestamp is not None else "the body"
        raise SignatureError(
            f"bad signature: {signature_header} is not the HMAC-SHA256 of {where} with the configured "
            "secret (check that the secret matches the contact point's)"
        )

    # Checked after the signature, so that only a request Grafana really signed learns about clocks.
    if timestamp is not None:
        current = time.time() if now is None else now
        age = current - int(timestamp)
        if age > tolerance_s:
            raise SignatureError(
                f"stale timestamp: {timestamp_header} is {age:.0f} s old, more than the {tolerance_s:g} s "
                "allowed (a replayed request, or clocks out of sync)"
            )
        if -age > tolerance_s:
            raise SignatureError(
                f"timestamp in the future: {timestamp_header} is {-age:.0f} s ahead, more than the "
                f"{tolerance_s:g} s allowed (clocks out of sync)"
            )
