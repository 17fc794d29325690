"""The structured explanation the assistant's LLM writes for a triage, and how it is read back.

The model answers in two parts: one line of JSON, then one or two sentences of prose.

    {"status": "anomalous", "category": "network_timeout", "key_indicators": ["L4", "L7"], "next_steps": ["..."]}
    Retries to the database [L4] end in a timeout [L7], as in past incident 3f2a9c1e.

The JSON makes the answer machine-checkable (fine-tuning evaluates it, surfaces can render it);
the prose is what a person reads. The verdict belongs to the detector: a report whose status or
category disagrees with the grounded answer is dropped, never shown as a second opinion.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools.answer import Answer

ReportStatus = Literal["anomalous", "normal", "inconclusive"]

# Which evidence lines an answer cites: "[L4]" in prose, "L4" in key_indicators.
_CITATION = re.compile(r"\bL(\d{1,4})\b")


class TriageReport(BaseModel):
    """The JSON line of an explanation."""

    model_config = ConfigDict(extra="forbid")

    status: ReportStatus
    category: str = Field(min_length=1)
    key_indicators: list[str] = Field(description="evidence line references, e.g. 'L4'")
    next_steps: list[str] = Field(min_length=1)


def expected_status(answer: Answer) -> ReportStatus:
    """The status the report must carry for this grounded answer."""
    if answer.status == "inconclusive" or answer.verdict is None:
        return "inconclusive"
    return "anomalous" if answer.verdict == "anomalous" else "normal"


def expected_category(answer: Answer) -> str:
    return answer.category or ("normal" if answer.verdict == "normal" else "unknown")


def split_report(text: str) -> tuple[TriageReport | None, str]:
    """The report on the first JSON line of `text` (None if missing or invalid) and the prose after it."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None, stripped
    first, _, rest = stripped.partition("\n")
    try:
        report = TriageReport.model_validate(json.loads(first))
    except (json.JSONDecodeError, ValidationError):
        return None, rest.strip() if first.rstrip().endswith("}") else stripped
    return report, rest.strip()


def cited_lines(text: str) -> set[int]:
    """1-based line numbers cited as L<n> anywhere in `text`."""
    return {int(n) for n in _CITATION.findall(text)}


def render_report(report: TriageReport) -> str:
    """The JSON line exactly as the model is trained to write it (compact, keys in schema order)."""
    return json.dumps(report.model_dump(), ensure_ascii=False)


def label_text(label: int | None, category: str | None) -> str:
    """How a past incident's label reads in an answer."""
    return {1: f"confirmed {category or 'anomalous'}", 0: "confirmed normal", None: "unconfirmed"}[label]


# "9fc3b3e8 (confirmed network_timeout)": an incident id, or its first 8 characters, and a label.
_LABEL_CLAIM = re.compile(
    r"\b([0-9a-f]{8})((?:-[0-9a-f]{4}){3}-[0-9a-f]{12})?(\s*)\(((?:un)?confirmed[^)]*)\)"
)


# The end of a text that may still become a label claim: an id (or its start), then "(label".
_OPEN_CLAIM = re.compile(r"\b[0-9a-f]{1,8}(?:-[0-9a-f-]*)?(?:\s*(?:\([^)]*)?)?$")


def true_incident_labels(prose: str, answer: Answer) -> str:
    """`prose` with each label claimed for a similar incident set to that incident's own label.

    A small model can pair the top match's id with the label of the next one, calling an
    unconfirmed incident confirmed. An id that is not among the similar incidents is marked so.
    """

    def fix(match: re.Match[str]) -> str:
        prefix, rest, space = match.group(1), match.group(2) or "", match.group(3)
        hits = [h for h in answer.similar if h.id.startswith(prefix + rest)]
        label = label_text(hits[0].label, hits[0].category) if len(hits) == 1 else "not a similar incident"
        return f"{prefix}{rest}{space}({label})"

    return _LABEL_CLAIM.sub(fix, prose)


def readable_explanation(text: str, answer: Answer, tidy: Callable[[str], str] | None = None) -> str:
    """What a person is shown: the prose (passed through `tidy`, its incident labels checked) and
    the next step, with a report that contradicts the grounded verdict left out (the LLM explains
    verdicts, never changes them)."""
    report, prose = split_report(text)
    if tidy is not None:
        prose = tidy(prose)
    prose = true_incident_labels(prose, answer)
    if report is None:
        return prose
    agrees = report.status == expected_status(answer) and (
        report.status != "anomalous" or report.category == expected_category(answer)
    )
    if not agrees:
        return prose
    steps = "; ".join(step.strip() for step in report.next_steps if step.strip())
    return f"{prose}\nNext step: {steps}" if steps else prose


class ProseStream:
    """Passes streamed tokens on, holding back a leading JSON report line (surfaces show prose;
    the next step from the report is added once the whole answer is known)."""

    def __init__(
        self, on_token: Callable[[str], None] | None, fix: Callable[[str], str] | None = None
    ) -> None:
        self.on_token = on_token
        self.fix = fix  # applied to prose before it is sent; an unfinished label claim is held back
        self.buffer = ""
        self.sent = ""
        self.in_report: bool | None = None  # None: not known yet

    def feed(self, text: str) -> None:
        if self.on_token is None:
            return
        self.buffer += text
        if self.in_report is None:
            head = self.buffer.lstrip()
            if not head:
                return
            self.in_report = head.startswith("{")
        if self.in_report:
            if "\n" not in self.buffer:
                return
            self.buffer = self.buffer.split("\n", 1)[1].lstrip()
            self.in_report = False
        if self.buffer:
            ready = self.buffer
            if self.fix is not None:  # hold back an id whose label may still be coming
                unfinished = _OPEN_CLAIM.search(ready)
                ready, self.buffer = (
                    (ready[: unfinished.start()], ready[unfinished.start() :]) if unfinished else (ready, "")
                )
                ready = self.fix(ready)
            else:
                self.buffer = ""
            if ready:
                self._send(ready)

    def finish(self, final: str) -> None:
        """Send whatever of `final` has not been shown yet (the next step, or held-back text)."""
        if self.on_token is not None and final.startswith(self.sent) and len(final) > len(self.sent):
            self._send(final[len(self.sent) :])

    def _send(self, text: str) -> None:
        assert self.on_token is not None
        self.on_token(text)
        self.sent += text
