"""The LangChain adapter of the tools registry: one StructuredTool per registry entry.

The caller (who is asking, through which surface) travels in the run config under
`configurable.caller`, never in the tool arguments, so an LLM cannot choose whose feedback it
writes. Errors follow the three kinds: bad arguments go back to the LLM as text it can act on;
a failed backend comes back as a structured result naming the tool and its parameters.
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tools.answer import Answer
from tools.context import Caller, ToolContext
from tools.errors import ToolFailedError, ToolInputError
from tools.inputs import ScoreLogsInput
from tools.registry import REGISTRY, TOOLS, ToolSpec

# Keys of an Answer that are large and rarely useful to an LLM reading a tool result (every token
# of a tool result is paid again on each later turn of the thread).
_TERSE_EXCLUDE = {
    "experts": True,
    "model_version": True,
    "evidence": {"__all__": {"template"}},
    "incident": {"templates", "feedback"},
}


def caller_from(config: RunnableConfig | None) -> Caller:
    configurable = (config or {}).get("configurable", {})
    caller = configurable.get("caller")
    return caller if isinstance(caller, Caller) else Caller()


def answer_for_llm(answer: Answer) -> str:
    """A compact JSON rendering of an answer for a ToolMessage."""
    return answer.model_dump_json(exclude=_TERSE_EXCLUDE, exclude_none=True)  # type: ignore[arg-type]


def _validation_message(name: str, err: ValidationError) -> str:
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in err.errors())
    return f"error: invalid arguments for {name}: {problems}. Fix them and call again."


def run_tool(spec: ToolSpec, ctx: ToolContext, arguments: dict[str, Any], caller: Caller) -> str:
    """Run one registry tool and render its outcome as ToolMessage text, whatever happens."""
    try:
        return answer_for_llm(spec.call(ctx, arguments, caller))
    except ValidationError as err:
        return _validation_message(spec.name, err)
    except ToolInputError as err:
        return f"error: {err}"
    except ToolFailedError as err:
        return json.dumps(
            {"error": "tool failed", "tool": err.tool, "params": err.params, "reason": err.reason}
        )


def langchain_tool(spec: ToolSpec, ctx: ToolContext) -> BaseTool:
    def call(config: RunnableConfig, **arguments: Any) -> str:
        return run_tool(spec, ctx, arguments, caller_from(config))

    return StructuredTool.from_function(
        func=call,
        name=spec.name,
        description=spec.description,
        args_schema=spec.input_model,
        infer_schema=False,
        # Arguments are validated against args_schema before `call` runs; the LLM gets to retry.
        handle_validation_error=lambda err: _validation_message(spec.name, err),
    )


def langchain_tools(ctx: ToolContext, names: tuple[str, ...] | None = None) -> list[BaseTool]:
    """LangChain tools for the registry entries in `names` (all of them by default)."""
    return [langchain_tool(spec, ctx) for spec in TOOLS if names is None or spec.name in names]


class ChatScoreLogsInput(BaseModel):
    """score_logs as the chat path offers it: the lines a user pasted can be named, not repeated.

    Echoing pasted lines through the LLM costs a token per character, and a small model drops
    or merges lines on the way; `pasted` hands the detector the user's own text instead.
    """

    model_config = ConfigDict(extra="forbid")

    pasted: bool = Field(
        default=False,
        description="score the log lines the user pasted in their message (in a ``` block); "
        "use this instead of repeating them in lines",
    )
    lines: list[str] | None = Field(
        default=None, description=str(ScoreLogsInput.model_fields["lines"].description) + "; or set pasted"
    )
    use_memory: bool = Field(
        default=True, description=str(ScoreLogsInput.model_fields["use_memory"].description)
    )

    @model_validator(mode="after")
    def _one_source(self) -> ChatScoreLogsInput:
        if self.pasted == (self.lines is not None):
            raise ValueError("give exactly one of pasted=true and lines")
        return self


PASTED_ONLY_IN_CHAT = "error: pasted=true needs a chat message with pasted log lines; pass the lines instead"


def chat_score_tool(ctx: ToolContext) -> BaseTool:
    """The chat path's score_logs. The graph replaces `pasted` with the user's lines before the
    call (`assistant.graph`); anything still saying `pasted` here had no message to take them from."""
    spec = REGISTRY["score_logs"]

    def call(config: RunnableConfig, **arguments: Any) -> str:
        if arguments.pop("pasted", False):
            return PASTED_ONLY_IN_CHAT
        return run_tool(spec, ctx, arguments, caller_from(config))

    return StructuredTool.from_function(
        func=call,
        name=spec.name,
        description=spec.description,
        args_schema=ChatScoreLogsInput,
        infer_schema=False,
        handle_validation_error=lambda err: _validation_message(spec.name, err),
    )


def chat_tools(ctx: ToolContext, names: tuple[str, ...]) -> list[BaseTool]:
    """The tools the chat LLM is offered: the registry's, with score_logs in its chat form."""
    return [chat_score_tool(ctx) if t.name == "score_logs" else t for t in langchain_tools(ctx, names)]
