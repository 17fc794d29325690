"""Reader for plain log text, cut into fixed windows of consecutive lines."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Iterator
from typing import NamedTuple, TextIO

from detectors.readers_common import MAX_LINE_CHARS, clean_line, iter_raw_lines
from detectors.sequences import NORMAL_CATEGORY, LabelledSequence

# BGL marks a normal line with "-" in the first column; any other token names the alert.
BGL_NORMAL_TOKEN = "-"


class _LogLine(NamedTuple):
    position: int  # position among non-blank lines, which is what windows count
    line_no: int  # physical 1-based line number, for source ids
    text: str
    alert: str | None  # BGL alert category, None for a normal or unlabelled line


def _log_lines(text: TextIO, label_first_token: bool) -> Iterator[_LogLine]:
    index = 0
    # +1 so that a line of exactly MAX_LINE_CHARS characters plus its newline is not "cut".
    for raw in iter_raw_lines(text, MAX_LINE_CHARS + 1):
        line = clean_line(raw.text)
        if not line.strip():
            continue  # blank lines carry no event; don't let them pad windows
        alert: str | None = None
        if label_first_token:
            token, _, rest = line.lstrip().partition(" ")
            alert = None if token == BGL_NORMAL_TOKEN else token
            line = rest.lstrip()
        yield _LogLine(index, raw.line_no, line, alert)
        index += 1


def _window_sequence(window: Iterable[_LogLine], source: str, labelled: bool) -> LabelledSequence:
    items = list(window)
    label: int | None = None
    category: str | None = None
    if labelled:
        alerts = Counter(item.alert for item in items if item.alert is not None)
        label = 1 if alerts else 0
        category = alerts.most_common(1)[0][0] if alerts else NORMAL_CATEGORY
    return LabelledSequence(
        lines=tuple(item.text for item in items),
        label=label,
        category=category,
        source_id=f"{source}:{items[0].line_no}-{items[-1].line_no}",
    )


def read_raw(
    text: TextIO, source: str, *, window: int, step: int, label_first_token: bool
) -> Iterator[LabelledSequence]:
    """Windows of `window` non-blank lines every `step` lines; a final partial window is kept.

    Only the current window is held in memory (a deque), so any file size streams.
    """
    buffer: deque[_LogLine] = deque()
    next_start = 0  # index of the first line of the next window
    last_emitted = -1  # index of the last line already covered by an emitted window
    for item in _log_lines(text, label_first_token):
        if item.position < next_start:
            continue  # step > window leaves gaps between windows
        buffer.append(item)
        if len(buffer) == window:
            yield _window_sequence(buffer, source, label_first_token)
            last_emitted = item.position
            next_start += step
            while buffer and buffer[0].position < next_start:
                buffer.popleft()
    # The tail is worth a window only if it holds lines no earlier window covered.
    if buffer and buffer[-1].position > last_emitted:
        yield _window_sequence(buffer, source, label_first_token)
