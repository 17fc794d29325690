"""The tool functions. Each takes the context, its typed input and the caller, and returns an Answer.

Docstrings are the tool descriptions that users and LLMs see; keep them about what the tool
does and when to use it.
"""

from __future__ import annotations

from collections.abc import Callable

from detectors.templates import mask_lines
from knowledge.backend import BackendError
from knowledge.records import (
    IncidentFilter,
    IncidentNotFoundError,
    NewIncident,
    NoVerdictToJudgeError,
    incident_id,
)
from knowledge.store import IncidentStore
from tools.answer import Answer
from tools.context import Caller, ExplanationFailed, ToolContext
from tools.errors import ToolFailedError, ToolInputError, UnknownIncidentError
from tools.grounding import assess, grounded_summary, verdict_answer
from tools.inputs import (
    GetIncidentInput,
    RecordFeedbackInput,
    ScoreLogsInput,
    SearchSimilarInput,
    TriageInput,
)
from tools.limits import prepare_lines


def score_logs(ctx: ToolContext, args: ScoreLogsInput, caller: Caller) -> Answer:
    """Is this log sequence anomalous? Scores log lines with the learned detector.

    Returns the verdict, the calibrated probability, the category, the lines that drove the
    verdict, and (unless use_memory is false) the similar past incidents whose confirmed labels
    were blended into the probability. Read-only.
    """
    lines = prepare_lines(args.lines, ctx.limits)
    assessment = assess(ctx, lines, use_memory=args.use_memory)
    return verdict_answer(ctx, "score_logs", lines, assessment)


def search_similar_incidents(ctx: ToolContext, args: SearchSimilarInput, caller: Caller) -> Answer:
    """Have we seen this before? Finds the most similar past incidents to log lines or an incident.

    Each result has its similarity (1.0 = the same pattern), its confirmed label and category if
    an engineer gave one, its resolution, and a preview of its lines. Read-only.
    """
    store = _store(ctx, "search_similar_incidents")
    filters = IncidentFilter(category=args.category, confirmed_only=args.confirmed_only, source=args.source)
    params = args.model_dump(exclude={"lines"}, exclude_none=True)
    try:
        if args.incident_id is not None:
            incident = store.get(args.incident_id)
            if incident is None:
                raise UnknownIncidentError(_not_found(args.incident_id))
            query = incident.lines
            found = [s for s in store.similar(query, args.k + 1, filters) if s.id != incident.id][: args.k]
        else:
            query = prepare_lines(args.lines or [], ctx.limits)
            found = store.similar(query, args.k, filters)
    except BackendError as err:
        raise ToolFailedError("search_similar_incidents", params, str(err)) from err
    return Answer(tool="search_similar_incidents", status="ok", similar=found, n_lines=len(query))


def get_incident(ctx: ToolContext, args: GetIncidentInput, caller: Caller) -> Answer:
    """Show one stored incident: its lines, verdict, confirmed label, category, feedback and resolution.

    Use an id from triage or search results. Read-only.
    """
    store = _store(ctx, "get_incident")
    try:
        incident = store.get(args.incident_id)
    except BackendError as err:
        raise ToolFailedError("get_incident", args.model_dump(), str(err)) from err
    if incident is None:
        raise UnknownIncidentError(_not_found(args.incident_id))
    return Answer(
        tool="get_incident",
        status="ok",
        incident_id=incident.id,
        incident=incident,
        verdict=incident.verdict,
        probability=incident.probability,
        category=incident.category,
        n_lines=incident.n_lines,
    )


def record_feedback(ctx: ToolContext, args: RecordFeedbackInput, caller: Caller) -> Answer:
    """Record whether logtriage's verdict on an incident was right; later verdicts learn from it.

    Use it only when the user asks to, e.g. "mark this as a false positive" (correct=false on
    an anomalous verdict). Idempotent per user: repeating the same feedback changes nothing, and
    a new opinion replaces the user's previous one. Takes effect at once, without retraining.
    """
    if not (caller.authenticated and caller.user):
        raise ToolInputError(
            "feedback needs an authenticated user; record it from Slack, the CLI, or the API with a token"
        )
    store = _store(ctx, "record_feedback")
    lines = prepare_lines(args.lines, ctx.limits) if args.lines is not None else None
    verdict = probability = None
    if lines is not None:  # new logs: store them with the verdict the user is judging
        result = ctx.detector.score(lines, top_k=1)
        verdict, probability = result.verdict, result.probability
    try:
        receipt = store.record_feedback(
            user=caller.user,
            correct=args.correct,
            source=caller.source,
            incident_id=args.incident_id,
            lines=lines,
            verdict=verdict,
            probability=probability,
            category=args.category,
            note=args.note,
        )
    except IncidentNotFoundError as err:
        raise UnknownIncidentError(_not_found(args.incident_id or "")) from err
    except NoVerdictToJudgeError as err:
        raise ToolInputError(
            f"incident {args.incident_id} was imported with a label and has no verdict of logtriage's "
            "to judge; feedback applies to triaged incidents"
        ) from err
    except BackendError as err:
        raise ToolFailedError("record_feedback", args.model_dump(exclude={"lines"}), str(err)) from err
    return Answer(
        tool="record_feedback",
        status="ok",
        incident_id=receipt.incident_id,
        feedback=receipt,
        category=receipt.category,
    )


def triage(
    ctx: ToolContext,
    args: TriageInput,
    caller: Caller,
    on_token: Callable[[str], None] | None = None,
) -> Answer:
    """Is this log anomalous, have we seen it before, what is it? The full answer in one call.

    Scores the lines, finds similar past incidents, and explains the verdict citing the evidence
    lines and the similar incidents. The status is "inconclusive" when the detector is unsure and
    nothing similar is known, and "degraded" (with the reason) when the explanation or the
    incident memory failed; the verdict is still given.
    """
    lines = prepare_lines(args.lines, ctx.limits)
    answer = verdict_answer(ctx, "triage", lines, assess(ctx, lines, use_memory=True))
    answer = remember_if_asked(ctx, answer, lines, args, caller)
    return explain(ctx, answer, lines, on_token)


def remember_if_asked(
    ctx: ToolContext, answer: Answer, lines: list[str], args: TriageInput, caller: Caller
) -> Answer:
    """Give the answer its incident id, and store the incident when `remember` is set."""
    answer = answer.model_copy(update={"incident_id": incident_id(mask_lines(lines), args.source_id)})
    if not args.remember or ctx.store is None:
        return answer
    try:
        ctx.store.add(
            [
                NewIncident(
                    lines=lines,
                    verdict=answer.verdict,
                    probability=answer.probability,
                    source=caller.source,
                    source_id=args.source_id,
                )
            ]
        )
    except BackendError as err:
        return _degrade(answer, f"the incident could not be stored: {err}")
    return answer


def explain(
    ctx: ToolContext, answer: Answer, lines: list[str], on_token: Callable[[str], None] | None = None
) -> Answer:
    """Add the explanation: the explainer's text after the grounded summary, or the summary alone."""
    summary = grounded_summary(answer)
    if ctx.explainer is None:
        return answer.model_copy(update={"explanation": summary})
    try:
        text = ctx.explainer.explain(answer, lines, on_token).strip()
    except ExplanationFailed as err:
        degraded = _degrade(answer, f"no LLM explanation: {err}")
        return degraded.model_copy(update={"explanation": summary})
    return answer.model_copy(update={"explanation": f"{summary}\n\n{text}" if text else summary})


def _degrade(answer: Answer, reason: str) -> Answer:
    reasons = "; ".join(r for r in (answer.reason, reason) if r)
    return answer.model_copy(update={"status": "degraded", "reason": reasons})


def _store(ctx: ToolContext, tool: str) -> IncidentStore:
    if ctx.store is None:
        raise ToolFailedError(tool, {}, "incident memory is switched off for this surface")
    return ctx.store


def _not_found(iid: str) -> str:
    return f"no incident with id {iid!r}; take ids from triage or search_similar_incidents results"
