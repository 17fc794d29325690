"""The one registry of typed tool functions that every surface adapts.

    from tools import REGISTRY, ToolContext, Caller
    answer = REGISTRY["triage"].call(ctx, {"lines": lines}, Caller(source="cli"))

`tools` imports no surface framework: LangChain, MCP and Slack adapters live with their surfaces.
"""

from tools.answer import Answer, Status
from tools.context import Caller, Explainer, ExplanationFailed, ToolContext, Uncertainty
from tools.errors import ToolFailedError, ToolInputError, UnknownIncidentError
from tools.inputs import (
    GetIncidentInput,
    RecordFeedbackInput,
    ScoreLogsInput,
    SearchSimilarInput,
    TriageInput,
)
from tools.limits import InputLimits, prepare_lines
from tools.registry import REGISTRY, TOOLS, ToolSpec, tool

__all__ = [
    "REGISTRY",
    "TOOLS",
    "Answer",
    "Caller",
    "ExplanationFailed",
    "Explainer",
    "GetIncidentInput",
    "InputLimits",
    "RecordFeedbackInput",
    "ScoreLogsInput",
    "SearchSimilarInput",
    "Status",
    "ToolContext",
    "ToolFailedError",
    "ToolInputError",
    "ToolSpec",
    "TriageInput",
    "Uncertainty",
    "UnknownIncidentError",
    "prepare_lines",
    "tool",
]
