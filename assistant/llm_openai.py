"""The OpenAI-compatible LLM backend: vLLM (Qwen2.5, or a LoRA adapter served under its own model
name), Ollama (``http://localhost:11434/v1``), or any server speaking ``/v1/chat/completions``.

Errors the returned model raises. langchain-openai re-raises the openai client's errors as
classes deriving from both the openai class and a provider-neutral `langchain_core.exceptions`
class, so either name catches them:

* timeout past ``budget_s``: ``openai.APITimeoutError`` and ``ModelTimeoutError``
  (the concrete class is ``langchain_openai.chat_models.base.OpenAITimeoutError``);
* nothing listening at the URL: ``openai.APIConnectionError`` and ``ModelConnectionError``;
* HTTP 5xx: ``openai.InternalServerError`` and ``ModelAPIError``;
* HTTP 404, an unknown model name or a URL missing ``/v1``: ``openai.NotFoundError`` and
  ``ModelNotFoundError``; 400: ``openai.BadRequestError`` and ``ModelInvalidRequestError``.

Other statuses (409, 422, ...) come through as the bare ``openai.APIStatusError`` subclass, so a
caller that must degrade on any failure of this backend catches ``openai.OpenAIError``;
``langchain_core.exceptions.ModelError`` covers the cases above for every provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

# vLLM and Ollama accept any key unless started with one; the openai client insists on some value,
# and an explicit one keeps an ambient OPENAI_API_KEY from being sent to a third-party server.
NO_API_KEY = "not-needed"

_URL_HINT = "e.g. http://localhost:8000/v1 for vLLM, http://localhost:11434/v1 for Ollama"


@dataclass(frozen=True)
class OpenAIBackendConfig:
    """Where the model is served and how one call may spend its budget.

    `budget_s` bounds each wait on the server (connect, and each read: the whole reply when not
    streaming, the gap between chunks when streaming). `max_tokens` bounds the answer's length.
    """

    base_url: str
    model: str
    api_key: str | None = None
    budget_s: float = 20.0
    max_tokens: int = 256
    temperature: float = 0.0


def validate_config(config: OpenAIBackendConfig) -> None:
    """Raise ValueError, naming the setting to fix, when `config` cannot work."""
    _validate_url(config.base_url)
    if not config.model.strip():
        raise ValueError(
            "the openai LLM backend needs a model name as the server knows it (for vLLM, the "
            "--served-model-name or LoRA module name): set LOGTRIAGE_LLM_MODEL_NAME"
        )
    if not config.budget_s > 0:
        raise ValueError(
            f"the LLM time budget must be positive, got {config.budget_s}: set LOGTRIAGE_LLM_BUDGET_S"
        )
    if config.max_tokens < 1:
        raise ValueError(
            f"the LLM answer length must be at least 1 token, got {config.max_tokens}: "
            "set LOGTRIAGE_LLM_MAX_NEW_TOKENS"
        )
    if not 0.0 <= config.temperature <= 2.0:
        raise ValueError(f"the LLM temperature must be within 0..2, got {config.temperature}")


def _validate_url(url: str) -> None:
    def bad(why: str) -> ValueError:
        return ValueError(
            f"the openai LLM backend URL {url!r} {why}: set LOGTRIAGE_LLM_URL or pass --llm-url ({_URL_HINT})"
        )

    try:
        parts = urlsplit(url.strip())
        _ = parts.port  # parsing the port is what raises, on "host:abc" or "host:99999"
    except ValueError as error:
        raise bad(f"does not parse ({error})") from error
    if parts.scheme not in ("http", "https"):
        raise bad("must start with http:// or https://")
    if not parts.hostname:
        raise bad("has no host")
    if parts.query or parts.fragment:
        raise bad("must be a base URL without ?query or #fragment")


def openai_chat_model(config: OpenAIBackendConfig) -> BaseChatModel:
    """A chat model talking to `config.base_url`; validates first, creates the client, sends nothing."""
    validate_config(config)
    return ChatOpenAI(
        base_url=config.base_url.strip(),
        model=config.model.strip(),
        api_key=SecretStr(config.api_key or NO_API_KEY),
        timeout=config.budget_s,
        # No retries: budget_s is the whole budget of one call, and a retry would double it.
        max_retries=0,
        max_completion_tokens=config.max_tokens,  # what OpenAI and current vLLM read
        # Ollama and older vLLM read only the legacy `max_tokens`; both fields carry the same limit.
        extra_body={"max_tokens": config.max_tokens},
        temperature=config.temperature,
        # Chat Completions is what vLLM and Ollama serve in full; never route to /v1/responses.
        use_responses_api=False,
    )
