"""The answers fine-tuning teaches: written from tool outputs only, so every claim is grounded.

A triage explanation is the report line (`assistant.answer_format`) plus one or two sentences that
cite the evidence lines and a similar incident. Chat answers summarise a tool's result. Wording
varies by a hash of the example, so the model learns the format, not one sentence.
"""

from __future__ import annotations

import hashlib

from assistant.answer_format import (
    TriageReport,
    expected_category,
    expected_status,
    label_text,
    render_report,
)
from tools.answer import Answer

_CATEGORY_STORY = {
    "service_cascade_failure": "a failure in one service spreading to the services that call it",
    "authentication_failure": "logins or tokens being rejected",
    "resource_exhaustion": "a resource (memory, disk, connections or threads) running out",
    "network_timeout": "calls timing out on the network path to a dependency",
    "data_corruption": "data failing integrity checks or being read back inconsistently",
}
_NEXT_STEPS = {
    "service_cascade_failure": [
        "Find the first service that failed and check its health and recent deploys",
        "Check the upstream dependency's health, then shed load or open its circuit breaker",
    ],
    "authentication_failure": [
        "Check the identity provider and recent credential or certificate rotations",
        "Look for expired tokens or a clock skew between the services",
    ],
    "resource_exhaustion": [
        "Check memory, disk and connection-pool usage on the host, then scale or free capacity",
        "Look for a leak or a runaway job since the last deploy",
    ],
    "network_timeout": [
        "Check connectivity and latency to the dependency, and its health",
        "Check DNS, the load balancer and recent network changes on that path",
    ],
    "data_corruption": [
        "Stop writes to the affected data and verify checksums against a replica or backup",
        "Find the first bad record and the writer that produced it",
    ],
}
_NORMAL_STEPS = ["No action needed; keep watching the alert", "Nothing to do; close the alert if it fired"]
_GENERIC_STEPS = [
    "Compare with the last healthy run of these logs",
    "Check the service named in the cited lines",
]
_SETTLE = [
    "a few more minutes of logs, or an engineer's confirmation, would settle it",
    "more lines around the alert, or a labelled past incident like it, would settle it",
]


def pick(options: list[str], *key: object) -> str:
    digest = hashlib.sha256(repr(key).encode()).digest()
    return options[digest[0] % len(options)]


def short_id(incident_id: str) -> str:
    return incident_id[:8]


def evidence_refs(answer: Answer, n: int = 2) -> list[str]:
    return [f"L{e.index + 1}" for e in answer.evidence[:n]]


def triage_report(answer: Answer, key: object) -> TriageReport:
    status = expected_status(answer)
    category = expected_category(answer)
    if status == "normal":
        steps = [pick(_NORMAL_STEPS, key)]
    else:
        steps = [pick(_NEXT_STEPS.get(category, _GENERIC_STEPS), key)]
    return TriageReport(
        status=status, category=category, key_indicators=evidence_refs(answer), next_steps=steps
    )


def triage_prose(answer: Answer, key: object) -> str:
    status = expected_status(answer)
    refs = " and ".join(f"[{r}]" for r in evidence_refs(answer)) or "the lines shown"
    similar = _closest(answer)
    if status == "inconclusive":
        p = answer.probability if answer.probability is not None else 0.5
        threshold = answer.threshold if answer.threshold is not None else 0.5
        return (
            f"Inconclusive: the detector is unsure (p={p:.2f} against a threshold of {threshold:.2f}) "
            f"and nothing similar is confirmed; {refs} carry the most weight. {pick(_SETTLE, key).capitalize()}."
        )
    if status == "normal":
        text = f"These lines look like normal operation; {refs} are routine."
        if similar:
            text += f" Past incident {short_id(similar[0])} {similar[1]} looked the same."
        return text
    category = expected_category(answer)
    story = _CATEGORY_STORY.get(category, "an unusual sequence for this service")
    text = f"{refs} point to {story}."
    if similar:
        text += f" It resembles past incident {short_id(similar[0])} {similar[1]}."
    return text


def triage_target(answer: Answer, key: object) -> str:
    return f"{render_report(triage_report(answer, key))}\n{triage_prose(answer, key)}"


def _closest(answer: Answer) -> tuple[str, str] | None:
    """The best similar incident that agrees with the verdict, and how to describe it."""
    for hit in answer.similar[:3]:
        if hit.label == 1 and answer.verdict == "anomalous":
            return hit.id, f"({label_text(1, hit.category)})"
        if hit.label == 0 and answer.verdict == "normal":
            return hit.id, f"({label_text(0, None)})"
    return None


def why_answer(answer: Answer, key: object) -> str:
    """A chat reply to 'why?' or 'what should I do?' about the thread's triage, with no tool call."""
    report = triage_report(answer, key)
    return f"{triage_prose(answer, key)} Next step: {report.next_steps[0]}."


def feedback_answer(answer: Answer, correct: bool, category: str | None) -> str:
    target = short_id(answer.incident_id or "")
    if correct:
        return (
            f"Recorded: the verdict on incident {target} is confirmed. Similar logs will be judged with it."
        )
    right = f" as {category}" if category else ""
    return (
        f"Recorded: incident {target} is marked as wrong{right}. Later verdicts on similar logs use "
        "this at once, without retraining."
    )


def search_answer(found: Answer) -> str:
    if not found.similar:
        return "No similar past incidents are stored."
    parts = []
    for hit in found.similar[:3]:
        label = label_text(hit.label, hit.category)
        parts.append(f"{short_id(hit.id)} (similarity {hit.similarity:.2f}, {label})")
    return "The closest past incidents: " + "; ".join(parts) + "."


def incident_answer(found: Answer) -> str:
    incident = found.incident
    if incident is None:
        return "That incident is not stored."
    label = label_text(incident.label, incident.category)
    text = f"Incident {short_id(incident.id)}: {label}, {incident.n_lines} lines, stored {incident.created_at:%Y-%m-%d}."
    if incident.resolution:
        text += f" Resolution: {incident.resolution}"
    return text


def score_answer(scored: Answer) -> str:
    refs = ", ".join(f"[{r}]" for r in evidence_refs(scored)) or "no single line"
    return f"{scored.headline()}; the strongest evidence is {refs}."
