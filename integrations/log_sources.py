"""Where the logs of an alert come from: its annotations, log files on disk, or Loki.

Each source is a small frozen object with `fetch(event) -> list[str]`, which returns an empty list
when it has nothing for the alert and raises `LogSourceError` when its backend fails. They are
built once (in `logtriage serve`'s lifespan) and shared across requests.
"""

from __future__ import annotations

import glob
import heapq
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, Protocol

import httpx

from integrations.alerts import AlertEvent

logger = logging.getLogger(__name__)


class LogSourceError(RuntimeError):
    """A log backend failed. Names the operation and its parameters (never credentials)."""

    def __init__(
        self,
        source: str,
        operation: str,
        params: Mapping[str, object],
        reason: str,
        status: int | None = None,
    ) -> None:
        self.source = source
        self.operation = operation
        self.params = dict(params)
        self.reason = reason
        self.status = status  # the upstream HTTP status, when there was one
        details = ", ".join(f"{key}={value!r}" for key, value in self.params.items())
        super().__init__(f"{source} {operation} failed ({reason}); {details}")


class LogSource(Protocol):
    def fetch(self, event: AlertEvent) -> list[str]:
        """The log lines for `event`, oldest first; [] when this source has none."""
        ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _window(
    event: AlertEvent, clock: Callable[[], datetime], before_s: float, after_s: float
) -> tuple[datetime, datetime, datetime]:
    """(start, anchor, end) around the alert's start, or around now when the alert has none."""
    anchor = event.starts_at or clock()
    if anchor.tzinfo is None:  # a generic alert may give a naive time; senders mean UTC
        anchor = anchor.replace(tzinfo=UTC)
    return anchor - timedelta(seconds=before_s), anchor, anchor + timedelta(seconds=after_s)


# -- annotations --


@dataclass(frozen=True)
class AnnotationLogs:
    """Logs carried by the alert itself: the first of `keys` that has any non-blank lines."""

    keys: tuple[str, ...] = ("logs", "log_excerpt", "description")

    def fetch(self, event: AlertEvent) -> list[str]:
        for key in self.keys:
            lines = [line for line in event.annotations.get(key, "").splitlines() if line.strip()]
            if lines:
                return lines
        return []


# -- files --

_ISO_TIME = re.compile(
    r"\s*\[?(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SYSLOG_TIME = re.compile(rf"\s*({'|'.join(_MONTHS)}) +(\d{{1,2}}) (\d{{2}}):(\d{{2}}):(\d{{2}})")


def parse_leading_time(line: str, naive_tz: tzinfo, near: datetime) -> datetime | None:
    """The timestamp a log line starts with, or None.

    ISO-8601 / RFC 3339 (`2024-05-01T12:00:00.123Z`, `2024-05-01 12:00:00,123`) and syslog
    (`May  1 12:00:00`) are recognised. A time without a zone is taken to be in `naive_tz`. Syslog
    has no year, so the one that puts the time nearest `near` is chosen (a December line read on an
    alert in January belongs to the year before).
    """
    try:
        if iso := _ISO_TIME.match(line):
            year, month, day, hour, minute, second = (int(part) for part in iso.group(1, 2, 3, 4, 5, 6))
            micros = int((iso.group(7) or "0")[:6].ljust(6, "0"))
            zone = _zone(iso.group(8)) or naive_tz
            return datetime(year, month, day, hour, minute, second, micros, tzinfo=zone)
        if syslog := _SYSLOG_TIME.match(line):
            month = _MONTHS.index(syslog.group(1)) + 1
            day, hour, minute, second = (int(part) for part in syslog.group(2, 3, 4, 5))
            candidates = []
            for year in (near.year - 1, near.year, near.year + 1):
                try:
                    candidates.append(datetime(year, month, day, hour, minute, second, tzinfo=naive_tz))
                except ValueError:  # 29 February outside a leap year
                    continue
            return min(candidates, key=lambda moment: abs(moment - near), default=None)
    except ValueError:  # looked like a timestamp but is no date, e.g. month 13
        return None
    return None


def _zone(text: str | None) -> tzinfo | None:
    if not text:
        return None
    if text.upper() == "Z":
        return UTC
    digits = text[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return timezone(-offset if text[0] == "-" else offset)


def _read_lines(path: str, max_line_bytes: int) -> Iterator[str]:
    """The file's lines, streamed; an over-long line keeps its first `max_line_bytes` bytes."""
    with open(path, "rb") as handle:
        while chunk := handle.readline(max_line_bytes):
            if not chunk.endswith(b"\n"):
                # Skip the rest of an over-long line, a chunk at a time, so memory stays bounded.
                while (rest := handle.readline(max_line_bytes)) and not rest.endswith(b"\n"):
                    pass
            yield chunk.decode("utf-8", errors="replace").rstrip("\r\n")


@dataclass(frozen=True)
class FileGlobLogs:
    """Lines from the files matching `pattern` whose time is within the alert's window.

    The window is [starts_at - before_s, starts_at + after_s] (now instead of starts_at when the alert
    has none). A line without a leading timestamp (a stack trace, a continuation) takes the time of
    the line before it; lines before a file's first timestamp are dropped, as their time is unknown.
    Files are streamed line by line; undecodable bytes become U+FFFD. At most `max_lines` lines are
    returned, the ones nearest the alert's start, in time order (file order among equal times).
    Files last modified before the window starts are skipped unread.
    """

    pattern: str  # absolute; `**` matches across directories
    before_s: float = 300.0
    after_s: float = 60.0
    max_lines: int = 2000
    max_line_bytes: int = 16_384
    naive_tz: tzinfo = UTC  # the zone of timestamps that name none
    clock: Callable[[], datetime] = field(default=_utc_now, repr=False)

    def __post_init__(self) -> None:
        if not os.path.isabs(os.path.expanduser(self.pattern)):
            raise ValueError(f"the log file pattern must be an absolute path, got {self.pattern!r}")
        if self.before_s < 0 or self.after_s < 0:
            raise ValueError(f"before_s and after_s must be >= 0, got {self.before_s} and {self.after_s}")
        if self.max_lines < 1 or self.max_line_bytes < 1:
            raise ValueError(
                f"max_lines and max_line_bytes must be >= 1, got {self.max_lines}, {self.max_line_bytes}"
            )

    def fetch(self, event: AlertEvent) -> list[str]:
        start, anchor, end = _window(event, self.clock, self.before_s, self.after_s)
        # A heap of the kept lines, farthest from the anchor on top, so the cap drops the farthest.
        nearest: list[tuple[float, int, datetime, str]] = []
        seq = 0
        for path in sorted(glob.glob(os.path.expanduser(self.pattern), recursive=True)):
            for moment, line in self._timed_lines(path, anchor, start):
                seq += 1
                if start <= moment <= end:
                    entry = (-abs((moment - anchor).total_seconds()), -seq, moment, line)
                    if len(nearest) < self.max_lines:
                        heapq.heappush(nearest, entry)
                    else:
                        heapq.heappushpop(nearest, entry)
        return [line for _, _, _, line in sorted(nearest, key=lambda entry: (entry[2], -entry[1]))]

    def _timed_lines(self, path: str, anchor: datetime, start: datetime) -> Iterator[tuple[datetime, str]]:
        try:
            if not os.path.isfile(path) or os.path.getmtime(path) < start.timestamp():
                return
            current: datetime | None = None
            for line in _read_lines(path, self.max_line_bytes):
                current = parse_leading_time(line, self.naive_tz, anchor) or current
                if current is not None and line.strip():
                    yield current, line
        except FileNotFoundError:  # rotated away between the glob and the read
            return
        except OSError as exc:
            raise LogSourceError("files", "read", {"path": path, "pattern": self.pattern}, str(exc)) from exc


# -- Loki --

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _placeholders_outside_double_quotes(template: str) -> list[str]:
    """Placeholders that are not inside a "..." string, where escaping would not make values safe."""
    outside: list[str] = []
    quote: str | None = None  # '"', '`' (a raw string) or None
    i = 0
    while i < len(template):
        char = template[i]
        if quote == '"' and char == "\\":
            i += 2
            continue
        if char in '"`' and quote in (None, char):
            quote = None if quote else char
        elif quote != '"' and (placeholder := _PLACEHOLDER.match(template, i)):
            outside.append(placeholder.group(1))
        i += 1
    return outside


def logql_string_escape(value: str) -> str:
    """`value` escaped for a double-quoted LogQL string (Go string literal rules)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def _nanoseconds(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def _redacted(url: str) -> str:
    return str(httpx.URL(url).copy_with(username=None, password=None))


@dataclass(frozen=True)
class LokiLogs:
    """Log lines from Loki's `query_range` API, in the alert's window.

    `query_template` is LogQL with `{label}` placeholders filled from the alert's labels, e.g.
    `{namespace="{namespace}", app="{app}"} |= "error"`. Placeholders must sit inside double-quoted
    strings, where values are escaped (`"` and `\\`); a template with one elsewhere is refused here.
    When the alert lacks a label the template needs, fetch logs a warning and returns [] (so a
    `ChainedLogs` falls through to its next source) rather than run a query that means something
    else. Credentials may be given in `base_url` (basic auth) or `headers`; errors never show them.
    """

    base_url: str = field(repr=False)
    query_template: str
    before_s: float = 300.0
    after_s: float = 60.0
    limit: int = 500
    timeout_s: float = 5.0
    headers: Mapping[str, str] | None = field(default=None, repr=False)
    clock: Callable[[], datetime] = field(default=_utc_now, repr=False)

    def __post_init__(self) -> None:
        if httpx.URL(self.base_url).scheme not in ("http", "https"):
            raise ValueError(
                f"the Loki URL must start with http:// or https://, got {_redacted(self.base_url)!r}"
            )
        if outside := _placeholders_outside_double_quotes(self.query_template):
            raise ValueError(
                f"the Loki query template has placeholders outside double-quoted strings ({', '.join(outside)}); "
                'put each inside "...", e.g. {app="{app}"}'
            )
        if self.limit < 1 or self.timeout_s <= 0 or self.before_s < 0 or self.after_s < 0:
            raise ValueError("limit and timeout_s must be positive, before_s and after_s >= 0")

    def query_for(self, event: AlertEvent) -> str | None:
        """The LogQL for `event`, or None when it lacks a label the template needs."""
        missing = sorted(set(_PLACEHOLDER.findall(self.query_template)) - event.labels.keys())
        if missing:
            logger.warning(
                "Loki query skipped for alert %s (%s): it has no label %s, which the query template needs",
                event.name,
                event.fingerprint,
                ", ".join(missing),
            )
            return None
        return _PLACEHOLDER.sub(
            lambda found: logql_string_escape(event.labels[found.group(1)]), self.query_template
        )

    def fetch(self, event: AlertEvent) -> list[str]:
        query = self.query_for(event)
        if query is None:
            return []
        start, _, end = _window(event, self.clock, self.before_s, self.after_s)
        url = self.base_url.rstrip("/") + "/loki/api/v1/query_range"
        params = {
            "query": query,
            "start": str(_nanoseconds(start)),
            "end": str(_nanoseconds(end)),
            "limit": str(self.limit),
            "direction": "forward",
        }
        context = {"url": _redacted(url), "query": query, "start": start.isoformat(), "end": end.isoformat()}
        try:
            with httpx.Client(timeout=self.timeout_s, headers=dict(self.headers or {})) as client:
                response = client.get(url, params=params)
        except httpx.TimeoutException as exc:
            raise LogSourceError(
                "loki", "query_range", context, f"timed out after {self.timeout_s:g} s"
            ) from exc
        except httpx.HTTPError as exc:
            raise LogSourceError("loki", "query_range", context, f"{type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            reason = f"HTTP {response.status_code}: {response.text[:300].strip()}"
            raise LogSourceError("loki", "query_range", context, reason, response.status_code)
        try:
            return _stream_lines(response.json())
        except ValueError as exc:  # JSONDecodeError is one
            raise LogSourceError(
                "loki", "query_range", context, f"unexpected response: {exc}", response.status_code
            ) from exc


def _stream_lines(body: Any) -> list[str]:
    """The lines of every stream in a query_range response, merged in timestamp order."""
    if (
        not isinstance(body, dict)
        or body.get("status") != "success"
        or not isinstance(body.get("data"), dict)
    ):
        raise ValueError("expected {'status': 'success', 'data': {...}}")
    result_type = body["data"].get("resultType")
    if result_type != "streams":
        raise ValueError(
            f"resultType is {result_type!r}, not 'streams': the query template must be a log query, not a metric query"
        )
    entries: list[tuple[int, int, int, str]] = []
    try:
        for stream_index, stream in enumerate(body["data"]["result"]):
            # Each value is [<unix ns as a string>, <line>] (newer Loki may add structured metadata).
            for value_index, value in enumerate(stream["values"]):
                entries.append((int(value[0]), stream_index, value_index, str(value[1])))
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"a stream is malformed ({type(exc).__name__}: {exc})") from exc
    entries.sort()
    return [line for *_, line in entries]


# -- fallbacks --


@dataclass(frozen=True)
class ChainedLogs:
    """Asks each source in turn; the first that returns lines wins.

    A source that fails is logged and skipped, so Loki being down falls back to, say, annotations.
    If no source has lines and one failed, the first failure is raised: "no logs" would hide it.
    """

    sources: Sequence[LogSource]

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))

    def fetch(self, event: AlertEvent) -> list[str]:
        failures: list[LogSourceError] = []
        for source in self.sources:
            try:
                lines = source.fetch(event)
            except LogSourceError as exc:
                logger.warning(
                    "log source %s failed for alert %s; trying the next: %s",
                    type(source).__name__,
                    event.fingerprint,
                    exc,
                )
                failures.append(exc)
                continue
            if lines:
                return lines
        if failures:
            raise failures[0]
        return []
