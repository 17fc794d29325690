"""The unit every part of the detector exchanges: a sequence of log lines, maybe labelled."""

from __future__ import annotations

from dataclasses import dataclass, field

NORMAL_CATEGORY = "normal"
# Used when a sequence is labelled anomalous but its source names no category (HDFS, BGL).
UNSPECIFIED_ANOMALY = "anomaly"


@dataclass(frozen=True, slots=True)
class LabelledSequence:
    """Log lines in order, with an optional label (0 normal, 1 anomalous) and category.

    `source_id` says where the sequence came from (file and line number, window offset,
    HDFS row), so error messages and incidents can point back at it.
    """

    lines: tuple[str, ...]
    label: int | None = None
    category: str | None = None
    source_id: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.label not in (None, 0, 1):
            raise ValueError(f"label must be 0, 1 or None, got {self.label!r}")

    @property
    def effective_category(self) -> str | None:
        """The category to train on: the given one, else one implied by the label."""
        if self.category:
            return self.category
        if self.label == 0:
            return NORMAL_CATEGORY
        if self.label == 1:
            return UNSPECIFIED_ANOMALY
        return None


class InputFormatError(ValueError):
    """A malformed input file. The message names the file, the line and what to fix.

    The CLI turns this into a message on stderr and exit code 2.
    """

    def __init__(self, source: str, line_no: int | None, problem: str) -> None:
        where = f"{source}:{line_no}" if line_no is not None else source
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.line_no = line_no
        self.problem = problem
