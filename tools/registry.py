"""The one registry of tools. Every surface (LangChain, MCP, Slack, HTTP) adapts these entries.

An entry is the function plus what a surface needs to expose it: its input model (the schema),
its description (the docstring), and hints about side effects.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from tools.answer import Answer
from tools.context import Caller, ToolContext
from tools.functions import get_incident, record_feedback, score_logs, search_similar_incidents, triage
from tools.inputs import (
    GetIncidentInput,
    RecordFeedbackInput,
    ScoreLogsInput,
    SearchSimilarInput,
    TriageInput,
)

ToolFunction = Callable[[ToolContext, BaseModel, Caller], Answer]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    function: Callable[..., Answer]
    input_model: type[BaseModel]
    read_only: bool
    idempotent: bool
    side_effects: bool  # writes something a later call can see; needs an authenticated caller

    @property
    def description(self) -> str:
        return inspect.cleandoc(self.function.__doc__ or "")

    @property
    def summary(self) -> str:
        """The first line of the description."""
        return self.description.splitlines()[0] if self.description else self.name

    def call(self, ctx: ToolContext, arguments: dict[str, object] | BaseModel, caller: Caller) -> Answer:
        """Validate `arguments` against the input model and run the tool.

        Raises pydantic.ValidationError (bad arguments), ToolInputError or ToolFailedError.
        """
        args = (
            arguments
            if isinstance(arguments, self.input_model)
            else self.input_model.model_validate(arguments)
        )
        return self.function(ctx, args, caller)


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec("score_logs", score_logs, ScoreLogsInput, read_only=True, idempotent=True, side_effects=False),
    ToolSpec(
        "search_similar_incidents",
        search_similar_incidents,
        SearchSimilarInput,
        read_only=True,
        idempotent=True,
        side_effects=False,
    ),
    ToolSpec(
        "get_incident", get_incident, GetIncidentInput, read_only=True, idempotent=True, side_effects=False
    ),
    ToolSpec(
        "record_feedback",
        record_feedback,
        RecordFeedbackInput,
        read_only=False,
        idempotent=True,
        side_effects=True,
    ),
    # Read-only unless remember=True; surfaces that let an LLM call it never set remember.
    ToolSpec("triage", triage, TriageInput, read_only=False, idempotent=True, side_effects=False),
)

REGISTRY: dict[str, ToolSpec] = {spec.name: spec for spec in TOOLS}


def tool(name: str) -> ToolSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"no tool named {name!r}; known: {', '.join(REGISTRY)}") from None
