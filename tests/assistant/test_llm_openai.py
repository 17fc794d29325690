"""Tests for assistant.llm_openai against a loopback fake of an OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from langchain_core.exceptions import (
    ModelAPIError,
    ModelConnectionError,
    ModelNotFoundError,
    ModelTimeoutError,
)
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage

from assistant.llm_openai import NO_API_KEY, OpenAIBackendConfig, openai_chat_model, validate_config
from tests.assistant.fake_openai import (
    FakeOpenAIServer,
    FakeToolCall,
    error_reply,
    stalled_reply,
    text_reply,
    tool_reply,
)

MODEL = "qwen2.5-7b-instruct"
LORA_MODEL = "triage-lora"  # vLLM serves a LoRA adapter as a model of its own name


@pytest.fixture(autouse=True)
def no_ambient_client_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy from the environment would route loopback traffic away, and OPENAI_* variables are
    # exactly what the backend must not pick up.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_API_BASE",
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(models=(MODEL, LORA_MODEL)) as fake:
        yield fake


def config_for(server: FakeOpenAIServer, **overrides: object) -> OpenAIBackendConfig:
    fields: dict[str, object] = {
        "base_url": server.url,
        "model": MODEL,
        "api_key": "sk-local-test",
        "budget_s": 5.0,
    }
    fields.update(overrides)
    return OpenAIBackendConfig(**fields)  # type: ignore[arg-type]


def score_logs(text: str, window: int = 12) -> str:
    """Score log lines for anomalies.

    Args:
        text: the log text
        window: lines per scoring window
    """
    return text


def test_a_plain_reply_arrives_and_the_request_carries_model_key_messages_and_limits(
    server: FakeOpenAIServer,
) -> None:
    server.script(["The payment service timed out."])
    model = openai_chat_model(config_for(server, max_tokens=64))

    reply = model.invoke([SystemMessage("You triage logs."), HumanMessage("why did it fail?")])

    assert reply.content == "The payment service timed out."
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer sk-local-test"
    assert request.body == {
        "model": MODEL,
        "stream": False,
        "messages": [
            {"role": "system", "content": "You triage logs."},
            {"role": "user", "content": "why did it fail?"},
        ],
        "max_completion_tokens": 64,
        "max_tokens": 64,  # the legacy field, the only one Ollama reads
        "temperature": 0.0,
    }


def test_bound_tools_are_sent_as_a_schema_and_tool_calls_come_back_parsed(server: FakeOpenAIServer) -> None:
    server.script(
        [tool_reply(FakeToolCall("score_logs", {"text": "ERROR db timeout", "window": 8}, id="call_a"))]
    )
    model = openai_chat_model(config_for(server)).bind_tools([score_logs])

    reply = model.invoke("score this")

    assert isinstance(reply, AIMessage)
    assert reply.tool_calls == [
        {
            "name": "score_logs",
            "args": {"text": "ERROR db timeout", "window": 8},
            "id": "call_a",
            "type": "tool_call",
        }
    ]
    assert server.requests[0].body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "score_logs",
                "description": "Score log lines for anomalies.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string", "description": "the log text"},
                        "window": {
                            "type": "integer",
                            "default": 12,
                            "description": "lines per scoring window",
                        },
                    },
                    "required": ["text"],
                },
            },
        }
    ]


def test_a_tool_round_trip_sends_the_whole_history_in_openai_form(server: FakeOpenAIServer) -> None:
    server.script(["Two anomalous windows; the database timed out."])
    model = openai_chat_model(config_for(server))
    call = {"name": "score_logs", "args": {"text": "x"}, "id": "call_0", "type": "tool_call"}
    history = [
        HumanMessage("triage this"),
        AIMessage("", tool_calls=[call]),
        ToolMessage('{"anomalous_windows": 2}', tool_call_id="call_0"),
    ]

    model.invoke(history)

    assert server.requests[0].body["messages"] == [
        {"role": "user", "content": "triage this"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {"name": "score_logs", "arguments": '{"text": "x"}'},
                }
            ],
        },
        {"role": "tool", "content": '{"anomalous_windows": 2}', "tool_call_id": "call_0"},
    ]


def test_a_lora_adapter_is_addressed_by_its_served_model_name(server: FakeOpenAIServer) -> None:
    server.script(["ok"])
    openai_chat_model(config_for(server, model=LORA_MODEL)).invoke("hi")
    assert server.requests[0].body["model"] == LORA_MODEL


def test_streaming_yields_several_chunks_that_join_to_the_content(server: FakeOpenAIServer) -> None:
    server.script([text_reply("Disk full on node 7.", pieces=["Disk", " full", " on node", " 7."])])
    model = openai_chat_model(config_for(server))

    chunks = list(model.stream("why?"))

    texts = [chunk.content for chunk in chunks if chunk.content]
    assert texts == ["Disk", " full", " on node", " 7."]
    assert "".join(str(chunk.content) for chunk in chunks) == "Disk full on node 7."
    assert server.requests[0].body["stream"] is True


def test_streamed_tool_call_fragments_merge_into_one_call(server: FakeOpenAIServer) -> None:
    server.script([tool_reply(FakeToolCall("score_logs", {"text": "ERROR", "window": 4}))])
    model = openai_chat_model(config_for(server)).bind_tools([score_logs])

    merged = AIMessageChunk(content="")
    for chunk in model.stream("score"):
        merged = merged + chunk  # type: ignore[assignment]

    assert merged.tool_calls == [
        {"name": "score_logs", "args": {"text": "ERROR", "window": 4}, "id": "call_0", "type": "tool_call"}
    ]


def test_without_an_api_key_the_placeholder_is_sent_never_an_ambient_openai_key(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-openai-key-from-the-shell")
    server.script(["ok"])
    openai_chat_model(config_for(server, api_key=None)).invoke("hi")
    assert server.requests[0].headers["authorization"] == f"Bearer {NO_API_KEY}"


@pytest.mark.parametrize("streaming", [False, True], ids=["invoke", "stream"])
def test_a_server_slower_than_the_budget_raises_a_timeout(server: FakeOpenAIServer, streaming: bool) -> None:
    server.script([stalled_reply()])
    model = openai_chat_model(config_for(server, budget_s=0.5))

    # The concrete class is langchain-openai's OpenAITimeoutError, which is both of these.
    with pytest.raises(openai.APITimeoutError) as raised:
        if streaming:
            list(model.stream("hi"))
        else:
            model.invoke("hi")

    assert isinstance(raised.value, ModelTimeoutError)
    assert len(server.requests) == 1  # no retry: the budget is the whole budget


@pytest.mark.parametrize("streaming", [False, True], ids=["invoke", "stream"])
def test_a_500_raises_an_internal_server_error_carrying_the_server_message(
    server: FakeOpenAIServer, streaming: bool
) -> None:
    server.script([error_reply(500, "CUDA out of memory")])
    model = openai_chat_model(config_for(server))

    with pytest.raises(openai.InternalServerError, match="CUDA out of memory") as raised:
        if streaming:
            list(model.stream("hi"))
        else:
            model.invoke("hi")

    assert isinstance(raised.value, ModelAPIError)
    assert raised.value.status_code == 500
    assert len(server.requests) == 1


def test_an_unknown_model_name_raises_not_found(server: FakeOpenAIServer) -> None:
    message = "The model `qwen-typo` does not exist."
    server.script([error_reply(404, message)])
    with pytest.raises(openai.NotFoundError, match=message) as raised:
        openai_chat_model(config_for(server, model="qwen-typo")).invoke("hi")
    assert isinstance(raised.value, ModelNotFoundError)


def test_nothing_listening_at_the_url_raises_a_connection_error() -> None:
    with FakeOpenAIServer() as closed:
        url = closed.url  # the port is free again once the server has closed
    model = openai_chat_model(OpenAIBackendConfig(base_url=url, model=MODEL, budget_s=2.0))
    with pytest.raises(openai.APIConnectionError) as raised:
        model.invoke("hi")
    assert isinstance(raised.value, ModelConnectionError)


def test_the_fake_server_answers_500_once_its_script_runs_out(server: FakeOpenAIServer) -> None:
    with pytest.raises(openai.InternalServerError, match="no scripted reply left for completion request #0"):
        openai_chat_model(config_for(server)).invoke("hi")


def test_the_fake_server_lists_its_models(server: FakeOpenAIServer) -> None:
    client = openai.OpenAI(base_url=server.url, api_key="k", max_retries=0, timeout=5.0)
    assert [model.id for model in client.models.list()] == [MODEL, LORA_MODEL]
    assert server.requests[0].path == "/v1/models"


def test_building_the_model_sends_nothing(server: FakeOpenAIServer) -> None:
    openai_chat_model(config_for(server))
    assert server.requests == []


@pytest.mark.parametrize(
    ("base_url", "why"),
    [
        ("localhost:8000/v1", "must start with http:// or https://"),
        ("ftp://models.internal/v1", "must start with http:// or https://"),
        ("http:///v1", "has no host"),
        ("", "must start with http:// or https://"),
        ("http://vllm:abc/v1", "does not parse"),
        ("http://vllm:8000/v1?key=1", "without ?query"),
    ],
)
def test_a_bad_url_is_a_config_error_naming_the_env_var_and_the_flag(base_url: str, why: str) -> None:
    with pytest.raises(ValueError, match="LOGTRIAGE_LLM_URL or pass --llm-url") as raised:
        openai_chat_model(OpenAIBackendConfig(base_url=base_url, model=MODEL))
    assert why in str(raised.value)
    assert repr(base_url) in str(raised.value)


@pytest.mark.parametrize("model", ["", "   "])
def test_an_empty_model_name_is_a_config_error_naming_the_env_var(model: str) -> None:
    with pytest.raises(ValueError, match="LOGTRIAGE_LLM_MODEL_NAME"):
        openai_chat_model(OpenAIBackendConfig(base_url="http://localhost:11434/v1", model=model))


@pytest.mark.parametrize(
    ("overrides", "env_var"),
    [({"budget_s": 0.0}, "LOGTRIAGE_LLM_BUDGET_S"), ({"max_tokens": 0}, "LOGTRIAGE_LLM_MAX_NEW_TOKENS")],
)
def test_a_non_positive_budget_or_length_is_a_config_error(overrides: dict[str, float], env_var: str) -> None:
    config = OpenAIBackendConfig(base_url="http://localhost:8000/v1", model=MODEL, **overrides)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=env_var):
        validate_config(config)


def test_an_ollama_url_with_a_trailing_slash_is_accepted(server: FakeOpenAIServer) -> None:
    server.script(["ok"])
    openai_chat_model(config_for(server, base_url=server.url + "/")).invoke("hi")
    assert server.requests[0].path == "/v1/chat/completions"


def test_non_ascii_prompt_text_reaches_the_server_intact(server: FakeOpenAIServer) -> None:
    server.script(["ok"])
    openai_chat_model(config_for(server)).invoke("caf\u00e9 \u2603 \u65e5\u672c")
    assert server.requests[0].body["messages"] == [
        {"role": "user", "content": "caf\u00e9 \u2603 \u65e5\u672c"}
    ]
