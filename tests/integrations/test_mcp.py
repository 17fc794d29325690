"""The MCP server through the SDK's own client: in-process and over streamable HTTP.

In-process tests use the SDK's in-memory client against the real detector and an embedded store,
once over the in-memory JSON-RPC streams of the 2025 handshake and once over the 2026 direct path.
The HTTP tests serve `create_app` with uvicorn on loopback. `logtriage mcp` as a subprocess is in
test_mcp_stdio.py.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, CallToolResult, TextResourceContents

from detectors import Detector
from integrations.cli_mcp import store_lock
from integrations.mcp_http import UNAUTHORIZED, transport_security
from integrations.mcp_server import NO_USER_OVER_HTTP, LocalUser, local_server
from integrations.server import create_app
from integrations.server_deps import ServerDeps
from integrations.settings import Settings
from knowledge.store import IncidentStore
from tests.integrations.conftest import AUTH, TOKEN
from tests.integrations.loopback import serving
from tools import REGISTRY, TOOLS, Answer, Caller, ToolContext

pytestmark = pytest.mark.anyio
LOGTRIAGE = str(Path(sys.executable).with_name("logtriage"))
MODEL_CARD = "logtriage://model-card"
ENGINEER = Caller(user="ana@mcp", source="mcp", authenticated=True)
STARTUP_S = 30.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server(ctx: ToolContext) -> MCPServer:
    return local_server(lambda: ctx, LocalUser("ana"))


@pytest.fixture(params=["legacy", "auto"], ids=["2025-handshake", "2026-direct"])
async def client(request: pytest.FixtureRequest, server: MCPServer) -> AsyncIterator[Client]:
    async with Client(server, mode=request.param) as connected:
        yield connected


def answer_of(result: CallToolResult) -> Answer:
    assert not result.is_error, result.content
    return Answer.model_validate(result.structured_content)


def content_text(result: CallToolResult) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def error_text(result: CallToolResult) -> str:
    assert result.is_error and result.structured_content is None
    return content_text(result)


def text_of(contents: list[Any]) -> str:
    assert len(contents) == 1 and isinstance(contents[0], TextResourceContents)
    text: str = contents[0].text
    return text


# -- in-process: the surface is generated from the registry ---------------------------------------


async def test_tools_are_the_registry_with_its_schemas_descriptions_and_hints(client: Client) -> None:
    listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert list(listed) == [spec.name for spec in TOOLS]
    for spec in TOOLS:
        tool = listed[spec.name]
        assert tool.input_schema == spec.input_model.model_json_schema()
        assert tool.output_schema is not None and tool.output_schema["properties"].keys() == (
            Answer.model_json_schema()["properties"].keys()
        )
        assert tool.description == spec.description
        assert tool.annotations is not None and tool.annotations.read_only_hint is spec.read_only
    feedback = listed["record_feedback"].annotations
    assert feedback is not None and (feedback.idempotent_hint, feedback.destructive_hint) == (True, False)


async def test_score_logs_answers_exactly_as_the_bare_tool(
    client: Client, ctx: ToolContext, retry_storm: list[str]
) -> None:
    result = await client.call_tool("score_logs", {"lines": retry_storm})
    bare = REGISTRY["score_logs"].call(ctx, {"lines": retry_storm}, ENGINEER)
    assert answer_of(result) == bare and bare.verdict == "anomalous" and bare.category == "network_timeout"
    assert json.loads(content_text(result))["verdict"] == "anomalous"  # the text twin, for text-only clients


async def test_triage_explains_and_stores_nothing_unless_asked(
    client: Client, incident_store: IncidentStore, retry_storm: list[str]
) -> None:
    answer = answer_of(await client.call_tool("triage", {"lines": retry_storm}))
    assert answer.status == "ok" and answer.explanation and "[L" in answer.explanation
    assert incident_store.count() == 0 and answer.incident_id
    remembered = answer_of(await client.call_tool("triage", {"lines": retry_storm, "remember": True}))
    stored = incident_store.get(remembered.incident_id or "")
    assert stored is not None and stored.source == "mcp" and stored.verdict == "anomalous"


async def test_search_and_get_incident_find_what_triage_remembered(
    client: Client, retry_storm: list[str]
) -> None:
    iid = answer_of(await client.call_tool("triage", {"lines": retry_storm, "remember": True})).incident_id
    found = answer_of(await client.call_tool("search_similar_incidents", {"lines": retry_storm, "k": 3}))
    assert [hit.id for hit in found.similar] == [iid]
    shown = answer_of(await client.call_tool("get_incident", {"incident_id": iid}))
    assert shown.incident is not None and shown.incident.lines == retry_storm


async def test_feedback_is_recorded_as_the_local_user_and_flips_the_next_verdict(
    client: Client, retry_storm: list[str]
) -> None:
    arguments = {"lines": retry_storm, "correct": False, "note": "planned failover"}
    receipt = answer_of(await client.call_tool("record_feedback", arguments)).feedback
    assert receipt is not None and receipt.user == "ana@mcp" and receipt.label == 0
    again = answer_of(await client.call_tool("record_feedback", arguments)).feedback
    assert again is not None and again.changed is False  # idempotent
    rescored = answer_of(await client.call_tool("score_logs", {"lines": retry_storm}))
    assert rescored.verdict == "normal" and rescored.decided_by != "detector"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"lines": "not a list"}, "invalid arguments for score_logs: lines: Input should be a valid list"),
        ({}, "invalid arguments for score_logs: lines: Field required"),
        ({"lines": ["a"], "verdict": "normal"}, "verdict: Extra inputs are not permitted"),
        ({"lines": ["x" * 4_001]}, "line 1 has 4001 characters > 4000"),
        ({"lines": ["a"] * 5_001}, "too many lines: 5001 > 5000"),
        ({"lines": [" ", ""]}, "no log lines"),
        ({"lines": list(range(5_000))}, "lines.4: Input should be a valid string (and 4995 more)."),
    ],
    ids=["wrong-type", "missing", "unknown-argument", "long-line", "too-many-lines", "blank", "many-wrong"],
)
async def test_bad_or_oversized_arguments_are_a_tool_error_saying_what_to_fix(
    client: Client, arguments: dict[str, Any], message: str
) -> None:
    assert message in error_text(await client.call_tool("score_logs", arguments))


async def test_an_unknown_incident_is_a_tool_error_saying_where_ids_come_from(client: Client) -> None:
    result = await client.call_tool("get_incident", {"incident_id": "00000000-0000-0000-0000-000000000000"})
    assert "take ids from triage or search_similar_incidents" in error_text(result)


async def test_a_failed_backend_is_a_tool_error_naming_the_tool_and_its_parameters(
    shipped_detector: Detector,
) -> None:
    no_memory = local_server(lambda: ToolContext(detector=shipped_detector), LocalUser("ana"))
    async with Client(no_memory) as connected:
        result = await connected.call_tool("search_similar_incidents", {"incident_id": "x"})
    assert json.loads(error_text(result)) == {
        "error": "tool failed",
        "tool": "search_similar_incidents",
        "params": {},
        "reason": "incident memory is switched off for this surface",
    }


async def test_lines_sent_as_json_text_are_accepted(client: Client, retry_storm: list[str]) -> None:
    result = await client.call_tool("score_logs", {"lines": json.dumps(retry_storm)})
    assert answer_of(result).verdict == "anomalous"


async def test_resources_are_an_incident_template_and_the_model_card(
    client: Client, ctx: ToolContext, retry_storm: list[str]
) -> None:
    templates = (await client.list_resource_templates()).resource_templates
    assert [(t.uri_template, t.mime_type) for t in templates] == [
        ("incident://{incident_id}", "application/json")
    ]
    assert [str(r.uri) for r in (await client.list_resources()).resources] == [MODEL_CARD]
    card = json.loads(text_of((await client.read_resource(MODEL_CARD)).contents))
    assert card["version"] == ctx.detector.version and card["threshold"] == ctx.detector.calibration.threshold
    assert card["valid_metrics"] == ctx.detector.card["valid_metrics"]
    iid = answer_of(await client.call_tool("triage", {"lines": retry_storm, "remember": True})).incident_id
    incident = json.loads(text_of((await client.read_resource(f"incident://{iid}")).contents))
    assert incident["id"] == iid and incident["lines"] == retry_storm


async def test_reading_an_unknown_incident_is_an_invalid_params_error(client: Client) -> None:
    with pytest.raises(MCPError) as raised:
        await client.read_resource("incident://00000000-0000-0000-0000-000000000000")
    assert raised.value.error.code == INVALID_PARAMS and "no incident with id" in raised.value.error.message


async def test_the_triage_logs_prompt_asks_for_the_triage_tool_with_the_logs(client: Client) -> None:
    (prompt,) = (await client.list_prompts()).prompts
    arguments = [(a.name, a.required, bool(a.description)) for a in prompt.arguments or []]
    assert prompt.name == "triage_logs" and arguments == [("logs", True, True), ("context", False, True)]
    got = await client.get_prompt(
        "triage_logs", {"logs": "ERROR db down\nretrying", "context": "paged at 3am"}
    )
    (message,) = got.messages
    text = getattr(message.content, "text", "")
    assert "Call `triage`" in text and "ERROR db down\nretrying" in text and "paged at 3am" in text


def test_a_qdrant_server_store_is_never_held_so_stdio_runs_tools_itself() -> None:
    assert store_lock(Settings(qdrant_url="http://qdrant.invalid:6333")) is None


# -- streamable HTTP at /mcp in `logtriage serve` ---------------------------------------------------


@pytest.fixture
def server_url(server_settings: Settings, deps: ServerDeps) -> Iterator[str]:
    with serving(create_app(server_settings, deps)) as url:
        yield url


@asynccontextmanager
async def http_client(url: str, headers: dict[str, str]) -> AsyncIterator[Client]:
    """The SDK's client over streamable HTTP with these headers, on the 2025 handshake most IDEs use."""
    async with httpx2.AsyncClient(headers=headers) as http:
        transport = streamable_http_client(f"{url}/mcp", http_client=http)
        async with Client(transport, mode="legacy") as connected:
            yield connected


async def test_http_serves_the_tools_with_a_token_and_counts_them_in_metrics(
    server_url: str, retry_storm: list[str]
) -> None:
    async with http_client(server_url, AUTH) as connected:
        assert [t.name for t in (await connected.list_tools()).tools] == [s.name for s in TOOLS]
        answer = answer_of(await connected.call_tool("score_logs", {"lines": retry_storm}))
    assert answer.verdict == "anomalous" and answer.category == "network_timeout"
    async with httpx2.AsyncClient() as http:
        metrics = (await http.get(f"{server_url}/metrics")).text
    assert 'logtriage_http_requests_total{method="POST",route="/mcp",status="200"}' in metrics


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer forged"}, {"Authorization": f"Basic {TOKEN}"}]
)
async def test_http_rejects_a_missing_or_forged_token(server_url: str, headers: dict[str, str]) -> None:
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            f"{server_url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=headers
        )
    assert response.status_code == 401 and response.json()["error"]["message"] == UNAUTHORIZED
    with pytest.raises(BaseExceptionGroup) as raised:
        async with http_client(server_url, headers):
            pass
    assert raised.group_contains(MCPError, match="missing or invalid bearer token")


@pytest.mark.parametrize(
    ("header", "status"),
    [({"Origin": "https://evil.example"}, 403), ({"Host": "evil.example:8080"}, 421)],
    ids=["foreign-origin", "rebound-host"],
)
async def test_http_rejects_foreign_origins_and_hosts(
    server_url: str, header: dict[str, str], status: int
) -> None:
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {**AUTH, "Accept": "application/json, text/event-stream", **header}
    async with httpx2.AsyncClient() as http:
        assert (await http.post(f"{server_url}/mcp", json=ping, headers=headers)).status_code == status


async def test_http_refuses_a_body_over_the_servers_limit_at_once(
    server_url: str, server_settings: Settings
) -> None:
    lines = ["x" * 1_000] * (server_settings.max_body_bytes // 1_000 + 1)
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "score_logs", "arguments": {"lines": lines}},
    }
    headers = {**AUTH, "Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.post(f"{server_url}/mcp", json=call, headers=headers)
    assert response.status_code == 413 and "LOGTRIAGE_MAX_BODY_BYTES" in response.text


def test_host_checks_admit_loopback_the_listen_address_and_configured_names() -> None:
    public = transport_security(Settings(host="10.1.2.3"), extra_hosts=["logtriage.example.com"])
    assert public.enable_dns_rebinding_protection
    assert public.allowed_hosts == [
        *("127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*"),
        *("10.1.2.3", "10.1.2.3:*", "logtriage.example.com"),
    ]
    everywhere = transport_security(Settings(host="0.0.0.0"))
    assert f"{socket.gethostname()}:*" in everywhere.allowed_hosts
    assert (
        "http://localhost:*" in everywhere.allowed_origins
        and "https://evil.example" not in everywhere.allowed_origins
    )


async def test_http_feedback_is_recorded_as_the_configured_user_and_refused_without_one(
    server_url: str, retry_storm: list[str]
) -> None:
    arguments = {"lines": retry_storm, "correct": False}
    async with http_client(server_url, AUTH) as anonymous:
        assert NO_USER_OVER_HTTP in error_text(await anonymous.call_tool("record_feedback", arguments))
    async with http_client(server_url, {**AUTH, "X-Logtriage-User": "ana"}) as named:
        receipt = answer_of(await named.call_tool("record_feedback", arguments)).feedback
    assert receipt is not None and receipt.user == "ana@mcp"
