"""Variable fields and timestamps for the synthetic log generator.

Every value a template can name (`{req}`, `{ip}`, `{ms}`, ...) is drawn here from the
sequence's seeded RNG. The point of the variety is that raw lines almost never repeat, so a
detector has to mask variables (see `detectors.templates`) to see the structure underneath.
Each generated value holds at least one digit: the masker only treats identifiers with a
digit as variables, and a digit-free id would leak into the template and fake a new event type.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

_HEX = "0123456789abcdef"
# The alphabet Kubernetes uses for pod suffixes: no vowels, so a random suffix never spells
# a word (and never an error keyword).
_POD_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_FIRST_NAMES = (
    "alice", "bruno", "chen", "dana", "emeka", "farah", "goran", "hana",
    "ivan", "jules", "kofi", "lena", "mateo", "nora", "omar", "priya",
)  # fmt: skip
_JOBS = ("reindex-2", "invoice-export-7", "cart-cleanup-3", "report-rollup-1", "ledger-close-4")
_SERVICES = ("order-service", "payment", "inventory", "auth-service", "cache", "api-gateway")

# The sequences start somewhere in March 2026; a seeded offset, never the wall clock.
_EPOCH = datetime(2026, 3, 1, tzinfo=UTC)
_SPAN_SECONDS = 30 * 24 * 3600


def _hex(rng: random.Random, length: int) -> str:
    """Random lowercase hex holding at least one digit and one letter.

    Both are needed for the masker to call it hex: all-digit runs become numbers and
    all-letter runs stay as words, either of which would split one template into several.
    """
    chars = [rng.choice(_HEX) for _ in range(length)]
    spots = rng.sample(range(length), 2)
    if not any(c.isdigit() for c in chars):
        chars[spots[0]] = rng.choice("0123456789")
    if not any(c.isalpha() for c in chars):
        chars[spots[1]] = rng.choice("abcdef")
    return "".join(chars)


def _pod(rng: random.Random) -> str:
    """The replica-set hash and pod suffix; templates put the deployment name in front."""
    suffix = "".join(rng.choice(_POD_ALPHABET) for _ in range(5))
    return f"{rng.randint(5, 9)}{_hex(rng, 8)[:7]}-{suffix}"


def _ip(rng: random.Random) -> str:
    return f"10.{rng.randint(0, 31)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}"


def _user(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST_NAMES)}.{rng.choice('abcdefghkmnprst')}{rng.randint(1, 9999)}"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _lsn(rng: random.Random) -> str:
    # Postgres writes LSNs as hex "hi/lo"; a decimal-only high part keeps it one mask shape.
    return f"{rng.randint(0, 9)}/{_hex(rng, 8).upper()}"


# One generator per field name. Templates use these names directly; appending "_f" to a
# name asks for a fresh value on every line instead of the sequence-wide one.
GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "req": lambda r: f"req-{_hex(r, 6)}",
    "trace": _uuid,
    "uuid": _uuid,
    "user": _user,
    "ip": _ip,
    "ip2": _ip,
    "order": lambda r: f"ord-{r.randint(100000, 999999)}",
    "txn": lambda r: f"ch_{_hex(r, 12)}",
    "txid": lambda r: str(r.randint(10_000, 99_999_999)),
    "sid": lambda r: f"sess-{_hex(r, 16)}",
    "pod": _pod,
    "service": lambda r: r.choice(_SERVICES),
    "node": lambda r: f"node-{r.randint(1, 48):02d}.cluster.internal",
    "sku": lambda r: f"SKU-{r.randint(1000, 99999)}",
    "host": lambda r: f"pg-replica-{r.randint(1, 6)}",
    "msgid": lambda r: f"msg-{_hex(r, 10)}",
    "job": lambda r: r.choice(_JOBS),
    "hex": lambda r: _hex(r, r.choice((8, 12, 16))),
    "ms": lambda r: str(r.randint(2, 950)),
    "slow_ms": lambda r: str(r.randint(1200, 9000)),
    "n": lambda r: str(r.randint(1, 50_000)),
    "n_small": lambda r: str(r.randint(1, 9)),
    "bytes": lambda r: str(r.randint(180, 524_288)),
    "pct": lambda r: str(r.randint(28, 74)),
    "pct_hi": lambda r: str(r.randint(91, 99)),
    "amount": lambda r: f"{r.randint(1, 899)}.{r.randint(0, 99):02d}",
    "offset": lambda r: str(r.randint(1_000, 9_999_999)),
    "lsn": _lsn,
    "walseg": lambda r: f"{r.randint(1, 3):08d}{_hex(r, 16).upper()}",
    "port": lambda r: str(r.choice((8080, 8443, 9090, 9102))),
    "ver": lambda r: f"{r.randint(1, 4)}.{r.randint(0, 30)}.{r.randint(0, 9)}",
    "pid": lambda r: str(r.randint(100, 65_000)),
    "code": lambda r: str(r.choice((0, 0, 0, 143))),
}

# Fields that name one thing for the whole sequence (the request, the user, the pod): a
# flow refers to the same request from its first line to its last, as real logs do.
STABLE_FIELDS = frozenset(
    {"req", "trace", "user", "ip", "ip2", "order", "txn", "txid", "sid", "pod", "node", "sku", "host"}
    | {"msgid", "job"}
)


class FieldBag(dict[str, str]):
    """The values one sequence's templates are filled from, drawn on first use.

    `str.format_map` looks each name up here; a missing name is drawn from the RNG and, if it
    is a stable field, remembered for the rest of the sequence.
    """

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self._rng = rng

    def __missing__(self, key: str) -> str:
        fresh = key.endswith("_f")
        base = key[:-2] if fresh else key
        value = GENERATORS[base](self._rng)
        if base in STABLE_FIELDS and not fresh:
            self[key] = value
        return value


class Clock:
    """Timestamps for one sequence: a seeded start, then strictly increasing steps."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._now = _EPOCH + timedelta(milliseconds=rng.randrange(_SPAN_SECONDS * 1000))

    def tick(self) -> str:
        """Advance by a plausible gap (mostly milliseconds, now and then seconds) and format."""
        gap = self._rng.randint(1, 450) if self._rng.random() < 0.9 else self._rng.randint(500, 4000)
        self._now += timedelta(milliseconds=gap)
        return self._now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self._now.microsecond // 1000:03d}Z"
