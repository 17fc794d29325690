"""A real MCP client on the wire: the MCP Inspector CLI against `logtriage mcp` (stdio) and /mcp (HTTP).

Each case is one Inspector run: tools/list, tools/call score_logs on a sample (checking the
structured result), resources/read of the model card, and a call with bad arguments that must
come back as a tool error. Over HTTP, a missing or forged bearer token must be refused.
Needs `npx` (Node.js 22+) and the npm registry, or a warm npx cache; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integrations.server import create_app
from integrations.server_deps import ServerDeps
from integrations.settings import Settings
from tests.integrations.conftest import TOKEN
from tests.integrations.test_mcp import LOGTRIAGE, serving

pytestmark = pytest.mark.slow  # each stdio run loads the real encoder; npx may fetch the Inspector

# Pinned, so CI runs the client these tests were written against.
INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"
TOOL_IS_ERROR = 5  # the Inspector's exit status for a tool result with isError: true
FETCH_S = 300
RUN_S = 180
# What `logtriage mcp` needs from this environment; the Inspector passes the server little else.
PASSED_ENV_PREFIXES = ("LOGTRIAGE_", "XDG_", "HF_", "TRANSFORMERS_", "PYTHONPATH")


@pytest.fixture(scope="module")
def inspector() -> list[str]:
    """The Inspector CLI command, fetched once; skips with the reason when it can't run here."""
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx not found: install Node.js 22+ to run the MCP Inspector CLI tests")
    command = [npx, "-y", INSPECTOR, "--cli"]
    try:
        probe = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=FETCH_S)
    except subprocess.TimeoutExpired:
        pytest.skip(f"npx could not fetch {INSPECTOR} within {FETCH_S} s (no npm registry?)")
    if probe.returncode != 0:
        pytest.skip(f"npx could not run {INSPECTOR}: {probe.stderr.strip()[-500:]}")
    return command


def inspect(command: list[str], *args: str) -> tuple[int, dict[str, Any]]:
    """Run the Inspector once; its exit status and its one JSON object (`result` or `error`)."""
    done = subprocess.run(
        [*command, "--format", "json", "--connect-timeout", str(RUN_S * 1000), *args],
        capture_output=True,
        text=True,
        timeout=RUN_S,
    )
    for stream in (done.stdout, done.stderr):
        for line in reversed(stream.splitlines()):
            if line.startswith("{"):
                return done.returncode, json.loads(line)
    raise AssertionError(f"no JSON from the Inspector (exit {done.returncode}):\n{done.stderr[-2000:]}")


def result_of(status: int, out: dict[str, Any]) -> dict[str, Any]:
    assert "result" in out, f"the Inspector failed (exit {status}): {out}"
    result: dict[str, Any] = out["result"]
    return result


@pytest.fixture
def stdio_target(tmp_path: Path) -> list[str]:
    """`logtriage mcp` as the Inspector should launch it: its own data dir, no LLM."""
    env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_ENV_PREFIXES)}
    env |= {"LOGTRIAGE_DATA_DIR": str(tmp_path / "stdio-data"), "LOGTRIAGE_LLM_BACKEND": "none"}
    return [*(part for key, value in env.items() for part in ("-e", f"{key}={value}")), LOGTRIAGE, "mcp"]


@pytest.fixture
def http_target(server_settings: Settings, deps: ServerDeps) -> Iterator[list[str]]:
    with serving(create_app(server_settings, deps)) as url:
        # Never start the Inspector's interactive OAuth: a refused token must fail the run.
        yield ["--transport", "http", "--server-url", f"{url}/mcp", "--stored-auth-only"]


AUTHORIZED = ["--header", f"Authorization: Bearer {TOKEN}"]


@pytest.fixture(params=["stdio", "http"])
def target(request: pytest.FixtureRequest) -> list[str]:
    if request.param == "stdio":
        stdio: list[str] = request.getfixturevalue("stdio_target")
        return stdio
    http: list[str] = request.getfixturevalue("http_target")
    return [*http, *AUTHORIZED]


def test_tools_list_shows_the_five_tools_with_output_schemas(inspector: list[str], target: list[str]) -> None:
    status, out = inspect(inspector, *target, "--method", "tools/list")
    tools = {tool["name"]: tool for tool in result_of(status, out)["tools"]}
    assert status == 0 and sorted(tools) == [
        "get_incident",
        "record_feedback",
        "score_logs",
        "search_similar_incidents",
        "triage",
    ]
    assert all(tool["outputSchema"]["type"] == "object" for tool in tools.values())
    assert tools["score_logs"]["annotations"]["readOnlyHint"] is True


def test_score_logs_on_the_sample_gives_the_structured_verdict(
    inspector: list[str], target: list[str], retry_storm: list[str]
) -> None:
    call = ["--method", "tools/call", "--tool-name", "score_logs"]
    status, out = inspect(inspector, *target, *call, "--tool-arg", f"lines={json.dumps(retry_storm)}")
    result = result_of(status, out)
    assert status == 0 and result["isError"] is False
    structured = result["structuredContent"]
    assert (structured["tool"], structured["verdict"], structured["category"]) == (
        "score_logs",
        "anomalous",
        "network_timeout",
    )
    assert structured["evidence"] and structured["model_version"].startswith("lt-det-")


def test_resources_read_gives_the_model_card(inspector: list[str], target: list[str]) -> None:
    status, out = inspect(inspector, *target, "--method", "resources/read", "--uri", "logtriage://model-card")
    (content,) = result_of(status, out)["contents"]
    card = json.loads(content["text"])
    assert status == 0 and content["mimeType"] == "application/json"
    assert card["version"].startswith("lt-det-") and card["valid_metrics"]["f1"] > 0.9


def test_bad_arguments_come_back_as_a_tool_error(inspector: list[str], target: list[str]) -> None:
    call = ["--method", "tools/call", "--tool-name", "score_logs", "--tool-arg", "lines=3"]
    status, out = inspect(inspector, *target, *call)
    assert status == TOOL_IS_ERROR and result_of(status, out)["isError"] is True
    assert "invalid arguments for score_logs: lines: Input should be a valid list" in json.dumps(out)


@pytest.mark.parametrize(
    "header", [[], ["--header", "Authorization: Bearer forged"]], ids=["missing", "forged"]
)
def test_http_refuses_a_missing_or_forged_token(
    inspector: list[str], http_target: list[str], header: list[str]
) -> None:
    status, out = inspect(inspector, *http_target, *header, "--method", "tools/list")
    assert status != 0 and out["error"]["code"] == "auth_required"
    assert "missing or invalid bearer token" in out["error"]["message"]
