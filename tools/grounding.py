"""The grounded part of every answer: detector plus memory, the status rule, and a factual summary.

Nothing here calls an LLM. The summary cites the evidence lines and the similar incidents from
the tool outputs, so an answer is useful, and checkable, even when no LLM is available.
"""

from __future__ import annotations

from dataclasses import dataclass

from detectors import DetectorResult
from knowledge.backend import BackendError
from knowledge.blend import BlendedScore, blend
from knowledge.records import SimilarIncident
from knowledge.scoring import score_with_memory
from tools.answer import Answer, Status, ToolName
from tools.context import ToolContext, Uncertainty


@dataclass(frozen=True)
class Assessment:
    """The detector's result, the similar incidents, the blend, and why memory is missing if it is."""

    detector: DetectorResult
    similar: list[SimilarIncident]
    blended: BlendedScore
    memory_problem: str | None = None


def assess(ctx: ToolContext, lines: list[str], *, use_memory: bool) -> Assessment:
    """Score with the detector and, when there is a store, with the memory of past incidents.

    A failing store degrades the assessment to the detector alone instead of failing the call.
    """
    if use_memory and ctx.store is not None:
        try:
            (scored,) = score_with_memory(
                ctx.detector,
                ctx.store,
                [lines],
                k=ctx.similar_k,
                policy=ctx.blend_policy,
                top_k_evidence=ctx.evidence_k,
            )
            return Assessment(scored.detector, scored.similar, scored.blended)
        except BackendError as err:
            problem = f"incident memory unavailable: {err}"
    else:
        problem = None
    result = ctx.detector.score(lines, top_k=ctx.evidence_k)
    blended = blend(result.probability, result.threshold, [], ctx.blend_policy)
    return Assessment(result, [], blended, problem)


def is_unsure(probability: float, threshold: float, margin: float) -> bool:
    """Whether `probability` lies within `margin` (a share of the room on its side) of `threshold`."""
    room = threshold if probability < threshold else 1.0 - threshold
    return room <= 0 or abs(probability - threshold) < margin * room


def status_of(assessment: Assessment, rule: Uncertainty) -> tuple[Status, str | None]:
    if assessment.memory_problem:
        return "degraded", assessment.memory_problem
    blended = assessment.blended
    known = any(s.similarity >= rule.known_similarity for s in assessment.similar)
    if is_unsure(blended.probability, blended.threshold, rule.margin) and not known:
        return "inconclusive", (
            f"the detector is unsure (p={blended.probability:.2f} against a threshold of "
            f"{blended.threshold:.2f}) and no similar past incident is known"
        )
    return "ok", None


def verdict_answer(ctx: ToolContext, tool: ToolName, lines: list[str], assessment: Assessment) -> Answer:
    result, blended = assessment.detector, assessment.blended
    status, reason = status_of(assessment, ctx.uncertainty)
    category = result.category
    if blended.verdict != result.verdict:  # memory flipped the verdict: take the category from it
        category = _category_from_memory(assessment.similar, blended.verdict)
    return Answer(
        tool=tool,
        status=status,
        reason=reason,
        verdict=blended.verdict,
        probability=blended.probability,
        detector_probability=result.probability,
        threshold=blended.threshold,
        decided_by=blended.decided_by,
        category=category,
        category_probability=result.category_probability if category == result.category else None,
        evidence=result.evidence,
        similar=assessment.similar,
        experts=result.experts,
        n_lines=len(lines),
        model_version=result.model_version,
    )


def _category_from_memory(similar: list[SimilarIncident], verdict: str) -> str:
    if verdict == "normal":
        return "normal"
    for incident in similar:
        if incident.label == 1 and incident.category:
            return incident.category
    return "anomaly"


def grounded_summary(answer: Answer, max_evidence: int = 3, max_similar: int = 3) -> str:
    """A short factual explanation, citing evidence lines [L<n>] and similar incidents by id."""
    if answer.verdict is None or answer.probability is None:
        return ""
    parts: list[str] = []
    if answer.status == "inconclusive":
        parts.append(f"Inconclusive: {answer.reason}.")
    verdict = "anomalous" if answer.verdict == "anomalous" else "normal"
    what = f" ({answer.category})" if answer.verdict == "anomalous" and answer.category else ""
    parts.append(f"The sequence looks {verdict}{what}, p={answer.probability:.2f}.")
    if answer.decided_by in ("blend", "memory") and answer.detector_probability is not None:
        parts.append(
            f"Past incidents moved the detector's p={answer.detector_probability:.2f}"
            f"{' and decided the verdict' if answer.decided_by == 'memory' else ''}."
        )
    cited = [e for e in answer.evidence if e.contribution > 0][:max_evidence]
    if cited:
        quoted = "; ".join(f"[L{e.index + 1}] {_clip(e.line)}" for e in cited)
        parts.append(f"Lines that drove it: {quoted}.")
    if answer.similar:
        seen = "; ".join(_similar_text(s) for s in answer.similar[:max_similar])
        parts.append(f"Similar past incidents: {seen}.")
    else:
        parts.append("No similar past incident is known.")
    return " ".join(parts)


def _similar_text(incident: SimilarIncident) -> str:
    label = {1: "confirmed anomalous", 0: "confirmed normal", None: "unconfirmed"}[incident.label]
    text = f"{incident.id} (similarity {incident.similarity:.2f}, {label}"
    if incident.category and incident.label == 1:
        text += f", {incident.category}"
    if incident.resolution:
        text += f", resolved: {_clip(incident.resolution, 80)}"
    return text + ")"


def _clip(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
