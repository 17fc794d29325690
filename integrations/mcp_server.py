"""The MCP server: the tools registry as MCP tools, plus incident and model-card resources and a prompt.

Every tool is generated from `tools.registry.TOOLS`: its input schema is the registry's input model,
its output schema is `Answer`, its description the function's docstring, and its hints the entry's
side-effect flags. Nothing here reimplements a tool; a `Backend` runs each call either in this
process (`LocalBackend`, around a `ToolContext`) or on a running `logtriage serve`
(`integrations.mcp_proxy.RemoteBackend`), so one server definition serves both.

Errors follow the three kinds, as in the LangChain adapter: bad arguments and oversized input
come back as a tool error (isError) whose text says what to change; a failed backend comes back
as a tool error naming the tool and its parameters. Anything else is a bug: the SDK's top-level
handler logs it and answers a generic tool error, so a call never crashes the protocol.

The streamable HTTP endpoint (`mcp_endpoint`) lives in `integrations.mcp_http`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, Protocol

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer, UserMessage
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools.answer import Answer
from tools.context import Caller, ToolContext
from tools.errors import ToolFailedError, ToolInputError, UnknownIncidentError
from tools.registry import REGISTRY, TOOLS, ToolSpec

SERVER_NAME = "logtriage"
USER_HEADER = "X-Logtriage-User"
INCIDENT_URI = "incident://{incident_id}"
MODEL_CARD_URI = "logtriage://model-card"
MAX_USER_CHARS = 200
MAX_PROBLEMS = 5  # validation problems named in one tool error

INSTRUCTIONS = (
    "logtriage answers three questions about logs: is this anomalous, have we seen it before, what "
    "is it. Call `triage` with the log lines for the full answer (verdict, evidence lines, similar "
    "past incidents, explanation); `score_logs` for the verdict alone; `search_similar_incidents` to "
    "find past incidents; `get_incident` to show one. Call `record_feedback` only when the user says "
    "a verdict was right or wrong. Cite evidence lines as [L<n>] and incident ids as given."
)

NO_USER_OVER_HTTP = (
    f"record_feedback needs to know who is giving the feedback: add the header `{USER_HEADER}: <your "
    "name>` to this server's entry in your MCP client configuration (see docs/mcp.md), or use `logtriage "
    "mcp` over stdio, where your login is the user"
)

# Keys of an Answer that are large and rarely useful to a model reading the text content; the
# structured content keeps everything.
_TERSE_EXCLUDE: Any = {"experts": True, "incident": {"templates", "feedback"}}


class Backend(Protocol):
    """Where tool calls and resource reads run: in this process, or on a running `logtriage serve`."""

    async def call_tool(self, spec: ToolSpec, arguments: dict[str, Any], context: Context) -> CallToolResult:
        """The tool's result, an error result (isError) for anything the caller can act on."""
        ...

    async def read_incident(self, incident_id: str) -> str:
        """The stored incident as JSON. Raises `ResourceNotFoundError` for an unknown id."""
        ...

    async def model_card(self) -> str:
        """The detector's version, threshold, categories and evaluation figures as JSON."""
        ...


# -- who is calling -------------------------------------------------------------------------------


class CallerPolicy(Protocol):
    def caller(self, context: Context) -> Caller: ...


@dataclass(frozen=True)
class LocalUser:
    """stdio: the server runs as the engineer's own OS user, whose login authenticates them (as the CLI)."""

    name: str

    def caller(self, context: Context) -> Caller:
        return Caller(user=f"{self.name}@mcp", source="mcp", authenticated=True)


@dataclass(frozen=True)
class HeaderUser:
    """HTTP: the bearer token authenticated the client; the person is the `X-Logtriage-User` header.

    The header is set once in the client's configuration by the person who holds the token, never by
    the model, the same trust as the API's `user` field on /v1/feedback. Without it, reads work and
    feedback is refused with a message saying how to add it.
    """

    def caller(self, context: Context) -> Caller:
        name = header(context, USER_HEADER).strip()[:MAX_USER_CHARS]
        return Caller(user=f"{name}@mcp" if name else None, source="mcp", authenticated=True)


def header(context: Context, name: str) -> str:
    """A request header of an HTTP call ('' when absent, and always over stdio)."""
    headers = context.headers or {}
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), "")


# -- running the tools in this process ------------------------------------------------------------


def tool_result(answer: Answer) -> CallToolResult:
    """The answer as structured content, and as compact JSON text for clients that show only text."""
    terse = answer.model_dump_json(exclude=_TERSE_EXCLUDE, exclude_none=True)
    return CallToolResult(
        content=[TextContent(type="text", text=terse)], structured_content=answer.model_dump(mode="json")
    )


def tool_error(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def validation_message(name: str, err: ValidationError) -> str:
    errors = err.errors()
    # A few problems say what to fix; thousands (one per bad list item) would flood the model.
    problems = "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in errors[:MAX_PROBLEMS]
    )
    more = f" (and {len(errors) - MAX_PROBLEMS} more)" if len(errors) > MAX_PROBLEMS else ""
    return f"error: invalid arguments for {name}: {problems}{more}. Fix them and call again."


def run_tool(spec: ToolSpec, ctx: ToolContext, arguments: dict[str, Any], caller: Caller) -> CallToolResult:
    """Run one registry tool; every outcome the caller can act on is a result, never an exception."""
    if spec.side_effects and not caller.user:
        return tool_error(f"error: {NO_USER_OVER_HTTP}")
    try:
        return tool_result(spec.call(ctx, arguments, caller))
    except ValidationError as err:
        return tool_error(validation_message(spec.name, err))
    except ToolInputError as err:
        return tool_error(f"error: {err}")
    except ToolFailedError as err:
        failure = {"error": "tool failed", "tool": err.tool, "params": err.params, "reason": err.reason}
        return tool_error(json.dumps(failure, default=str))


def model_card_of(ctx: ToolContext) -> dict[str, Any]:
    detector = ctx.detector
    card = dict(detector.card)
    card.pop("train_config", None)  # hyperparameters: for retraining, not for judging answers
    return {
        "name": "logtriage detector",
        **card,
        "version": detector.version,
        "threshold": detector.calibration.threshold,
        "threshold_source": detector.calibration.threshold_source,
        "categories": detector.categories,
        "encoder": detector.saved.encoder.name,
    }


@dataclass(frozen=True)
class LocalBackend:
    """Runs tools in this process. `tools` is read per call: the HTTP app builds its context in its lifespan."""

    tools: Callable[[], ToolContext]
    callers: CallerPolicy

    async def call_tool(self, spec: ToolSpec, arguments: dict[str, Any], context: Context) -> CallToolResult:
        caller = self.callers.caller(context)
        # The tools are synchronous (torch, the store, an LLM): a worker thread keeps the event loop free.
        return await anyio.to_thread.run_sync(partial(run_tool, spec, self.tools(), arguments, caller))

    async def read_incident(self, incident_id: str) -> str:
        spec = REGISTRY["get_incident"]
        # Reading a resource is a read: no user is needed, whoever the caller is.
        caller = Caller(source="mcp", authenticated=True)
        try:
            answer = await anyio.to_thread.run_sync(
                partial(spec.call, self.tools(), {"incident_id": incident_id}, caller)
            )
        except (UnknownIncidentError, ValidationError) as err:
            raise ResourceNotFoundError(str(err)) from err
        except ToolFailedError as err:
            raise ResourceError(f"reading incident {incident_id!r} failed: {err.reason}") from err
        return answer.incident.model_dump_json(indent=2) if answer.incident else "null"

    async def model_card(self) -> str:
        return json.dumps(model_card_of(self.tools()), indent=2)


# -- the server -----------------------------------------------------------------------------------


class _RawArguments(ArgModelBase):
    """Hands the client's arguments through untouched, so the registry's input model validates them
    once and bad arguments come back in our words (what to fix), not as the SDK's generic error."""

    model_config = ConfigDict(extra="allow")

    def model_dump_one_level(self) -> dict[str, Any]:
        return {"arguments": dict(self.model_extra or {})}


def _list_fields(model: type[BaseModel]) -> frozenset[str]:
    """The arguments of `model` that take a JSON array (alone or among other types)."""
    properties = model.model_json_schema().get("properties", {})
    return frozenset(
        name
        for name, prop in properties.items()
        if prop.get("type") == "array" or any(arm.get("type") == "array" for arm in prop.get("anyOf", []))
    )


def _json_encoded_lists(arguments: dict[str, Any], list_fields: frozenset[str]) -> dict[str, Any]:
    """Decode list arguments sent as JSON text (`"[\\"a\\", \\"b\\"]"`), a habit of some MCP clients
    the SDK also forgives. Anything else is left for validation to accept or reject."""
    decoded = dict(arguments)
    for name in list_fields & arguments.keys():
        value = arguments[name]
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                parsed = json.loads(value)
            except ValueError:
                continue
            if isinstance(parsed, list):
                decoded[name] = parsed
    return decoded


def _title(spec: ToolSpec) -> str:
    return spec.name.replace("_", " ").capitalize()


def registry_tool(spec: ToolSpec, backend: Backend) -> Tool:
    """The MCP tool of one registry entry: the entry's schema, description and hints, run by `backend`."""

    list_fields = _list_fields(spec.input_model)

    async def call(arguments: dict[str, Any], context: Context) -> CallToolResult:
        return await backend.call_tool(spec, _json_encoded_lists(arguments, list_fields), context)

    return Tool(
        fn=call,
        name=spec.name,
        title=_title(spec),
        description=spec.description,
        parameters=spec.input_model.model_json_schema(),
        fn_metadata=FuncMetadata(arg_model=_RawArguments, output_model=Answer),
        is_async=True,
        context_kwarg="context",
        annotations=ToolAnnotations(
            title=_title(spec),
            read_only_hint=spec.read_only,
            # Nothing here deletes: feedback replaces only the same user's earlier opinion.
            destructive_hint=None if spec.read_only else False,
            idempotent_hint=spec.idempotent,
            open_world_hint=False,
        ),
    )


def triage_logs(
    logs: Annotated[str, Field(description="the log lines to triage, as pasted, oldest first")],
    context: Annotated[
        str, Field(description="what you know about them: the alert, the service, what changed")
    ] = "",
) -> list[UserMessage]:
    """Triage pasted logs with logtriage: verdict, evidence, similar past incidents, and what to do next."""
    about = f"\nWhat I know about them: {context.strip()}\n" if context.strip() else ""
    return [
        UserMessage(
            "Triage these logs with the logtriage tools.\n"
            "1. Call `triage` with `lines` set to the log lines below, one list entry per line, oldest first.\n"
            "2. Answer in this order: the verdict with its probability and category; the evidence lines "
            "it cites as [L<n>]; the most similar past incidents with their similarity, confirmed label "
            "and resolution; then what to check next. Say so plainly when the status is inconclusive "
            "or degraded, and do not add causes the evidence does not show.\n"
            "3. If I then say the verdict was right or wrong, call `record_feedback` with the "
            "`incident_id` from the triage answer.\n"
            f"{about}\nLogs:\n```\n{logs}\n```"
        )
    ]


def build_server(backend: Backend) -> MCPServer:
    """The logtriage MCP server over `backend`: five tools, two resources, one prompt."""
    server: MCPServer = MCPServer(
        SERVER_NAME,
        title="logtriage",
        instructions=INSTRUCTIONS,
        version="0.1.0",
        tools=[registry_tool(spec, backend) for spec in TOOLS],
        log_level="WARNING",
    )

    @server.resource(
        INCIDENT_URI,
        name="incident",
        title="Stored incident",
        description="One stored incident as JSON: lines, verdict, confirmed label, category, feedback, resolution.",
        mime_type="application/json",
    )
    async def incident(incident_id: str) -> str:
        return await backend.read_incident(incident_id)

    @server.resource(
        MODEL_CARD_URI,
        name="model-card",
        title="Detector model card",
        description="The detector's version, decision threshold, categories and validation figures.",
        mime_type="application/json",
    )
    async def model_card() -> str:
        return await backend.model_card()

    server.prompt(name="triage_logs", title="Triage logs")(triage_logs)
    return server


def local_server(tools: Callable[[], ToolContext], callers: CallerPolicy) -> MCPServer:
    """The server running tools in this process."""
    return build_server(LocalBackend(tools, callers))
