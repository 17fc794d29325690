"""The one place the environment is read. Instantiated only by entry points (CLI, server).

Precedence, highest first: command-line flags (applied by the CLI), `LOGTRIAGE_*` environment
variables, the TOML file (`--config`, `LOGTRIAGE_CONFIG`, or ~/.config/logtriage/config.toml),
then the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def default_data_dir() -> Path:
    """The XDG data directory: $XDG_DATA_HOME/logtriage, else ~/.local/share/logtriage."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "logtriage"


def default_config_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "logtriage" / "config.toml"


class ConfigError(RuntimeError):
    """Configuration is missing or wrong. The message names the env var and the flag."""


class Settings(BaseSettings):
    """logtriage settings. Every field is also `LOGTRIAGE_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="LOGTRIAGE_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir, description="caches, incidents, state")
    model_dir: Path | None = Field(
        default=None, description="detector model directory; default: shipped model"
    )
    encoder_path: Path | None = Field(
        default=None, description="BERT-family encoder directory; default: the model's own reference"
    )
    embedding_cache_entries: int = Field(default=100_000, ge=1, description="templates kept in memory")
    persist_embedding_cache: bool = Field(default=True, description="keep template embeddings on disk")

    # Incident memory. Embedded in-process by default; a URL switches to a Qdrant server or cluster.
    qdrant_url: str | None = Field(
        default=None, description="Qdrant server or cluster URL; default: embedded"
    )
    qdrant_api_key: SecretStr | None = Field(default=None, description="API key for the Qdrant server")
    qdrant_collection: str = Field(default="incidents", min_length=1, description="collection name")
    qdrant_shards: int | None = Field(default=None, ge=1, description="shard_number for a new collection")
    qdrant_replication: int | None = Field(
        default=None, ge=1, description="replication_factor, new collection"
    )
    qdrant_write_consistency: int | None = Field(
        default=None, ge=1, description="write_consistency_factor for a new collection"
    )
    qdrant_timeout_s: float = Field(default=10.0, gt=0, description="per-request timeout for the server")
    embedded_store: Literal["edge", "qdrant-local"] = Field(
        default="edge", description="embedded engine: Qdrant Edge (HNSW) or qdrant-client local mode"
    )
    incident_vector: Literal["pooled", "template-mean"] = Field(
        default="template-mean",
        description="incident vectors: detector pooled state or mean template embedding",
    )
    similar_k: int = Field(default=5, ge=1, le=100, description="similar incidents shown and voting")

    # Input limits, enforced by the tools for every surface.
    max_lines: int = Field(default=5_000, ge=1, description="log lines one request may carry")
    max_line_chars: int = Field(default=4_000, ge=1, description="characters in one log line")
    max_input_bytes: int = Field(default=2_000_000, ge=1, description="bytes of log text in one request")

    # The assistant's LLM. `local` runs a transformers model in-process (SmolLM2-135M by default);
    # `openai` talks to any OpenAI-compatible server (vLLM, Ollama); `none` gives grounded answers only.
    llm_backend: Literal["local", "openai", "none"] = Field(default="local", description="the LLM backend")
    llm_model: Path | None = Field(
        default=None, description="local model directory (Qwen2.5, ...); default: SmolLM2-135M-Instruct"
    )
    llm_adapter: Path | None = Field(
        default=None, description="peft LoRA adapter directory for the local model"
    )
    llm_default_adapter: bool = Field(
        default=True,
        description=(
            "with the bundled SmolLM2 and no llm_adapter, merge the shipped logtriage LoRA adapter "
            "(assistant/adapters/smollm2-logtriage); false: the untuned model"
        ),
    )
    llm_precision: Literal["fp32", "bf16", "int8"] = Field(
        default="int8", description="local model weights: int8 dynamic quantisation is fastest on CPU"
    )
    llm_tool_precision: Literal["fp32", "bf16", "int8"] | None = Field(
        default=None,
        description=(
            "local model weights when tools are offered (chat), kept in a second copy: tool calls "
            "copy incident ids exactly, which int8 breaks on small models. Default: fp32 for the "
            "bundled SmolLM2, llm_precision for a model of your own"
        ),
    )
    llm_max_new_tokens: int = Field(default=160, ge=8, le=4096, description="longest LLM answer, in tokens")
    llm_budget_s: float = Field(default=20.0, gt=0, description="time budget of one LLM call, in seconds")
    llm_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL, e.g. http://vllm:8000/v1"
    )
    llm_model_name: str = Field(default="Qwen/Qwen2.5-7B-Instruct", description="model name at llm_url")
    llm_api_key: SecretStr | None = Field(default=None, description="API key for llm_url")
    redact_ips: bool = Field(default=False, description="also redact IP addresses before LLM calls")

    # The server (`logtriage serve`) and its alert webhooks.
    api_token: SecretStr | None = Field(
        default=None, description="bearer token(s) for the API and webhooks, comma-separated"
    )
    grafana_webhook_secret: SecretStr | None = Field(
        default=None, min_length=1, description="HMAC secret of the Grafana contact point"
    )
    host: str = Field(default="127.0.0.1", description="address `logtriage serve` listens on")
    port: int = Field(default=8080, ge=0, le=65535, description="port `logtriage serve` listens on")
    max_body_bytes: int = Field(default=4_000_000, ge=1_000, description="largest request body accepted")
    alert_workers: int = Field(default=2, ge=1, le=64, description="threads triaging queued alerts")
    alert_queue_capacity: int = Field(default=10_000, ge=1, description="pending alerts before 503")
    alert_dedupe_window_s: float = Field(
        default=300.0, ge=0, description="repeated alerts in this window: once"
    )
    alert_explain: bool = Field(default=True, description="LLM explanations for alerts (off: grounded only)")
    alert_log_glob: str | None = Field(default=None, description="log files read around the alert time")
    loki_url: str | None = Field(default=None, description="Loki base URL for alert logs")
    loki_query: str = Field(
        default='{app="{app}"}', description="LogQL over alert labels; {label} placeholders inside quotes"
    )
    mcp_allowed_hosts: str | None = Field(
        default=None, description="extra Host names for /mcp (reverse proxy, DNS name), comma-separated"
    )
    mcp_allowed_origins: str | None = Field(
        default=None, description="extra browser Origins for /mcp, comma-separated"
    )
    callback_url: str | None = Field(default=None, description="POST each alert incident's result here")

    # Slack: `logtriage serve` mounts /slack/* when the bot token is set; `logtriage slack --socket`
    # uses Socket Mode instead. Secrets have no flags, so they never appear on a command line.
    slack_bot_token: SecretStr | None = Field(default=None, description="bot token (xoxb-...); set: Slack on")
    slack_signing_secret: SecretStr | None = Field(
        default=None, description="the Slack app's signing secret; verifies every request (HTTP mode)"
    )
    slack_app_token: SecretStr | None = Field(
        default=None, description="app-level token (xapp-...) with connections:write, for Socket Mode"
    )
    slack_api_url: str = Field(default="https://slack.com/api/", description="the Slack Web API base URL")
    slack_alert_channel: str | None = Field(
        default=None, description="channel id where alert groups become threads; unset: no alert threads"
    )
    slack_allowed_teams: str | None = Field(
        default=None, description="workspace (team) ids served, comma-separated; unset: any"
    )
    slack_allowed_channels: str | None = Field(
        default=None, description="channel ids served, comma-separated (list DMs too); unset: any"
    )
    slack_correct_reactions: str = Field(
        default="white_check_mark,+1", description="reactions meaning 'the verdict is correct'"
    )
    slack_wrong_reactions: str = Field(default="x,-1", description="reactions meaning 'the verdict is wrong'")
    slack_incident_url: str | None = Field(
        default=None,
        description="link for an incident id in Slack, with {id}, e.g. https://host/v1/incidents/{id}",
    )
    slack_max_retry_after_s: float = Field(
        default=30.0, ge=0, description="longest Retry-After waited for on a 429 before giving up"
    )

    # The TOML path is set per load by `load_settings`; a class attribute keeps pydantic out of it.
    _toml_file: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        # Outside load_settings the class attribute is pydantic's private-attribute marker, not a path.
        if isinstance(cls._toml_file, Path):
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_file))
        return tuple(sources)

    @property
    def threads_path(self) -> Path:
        """The assistant's thread memory (LangGraph checkpoints)."""
        return self.data_dir / "assistant" / "threads.sqlite"

    @property
    def models_dir(self) -> Path:
        """Converted LLM weights (the float rebuild of the GGUF default)."""
        return self.data_dir / "models"

    @property
    def embedding_cache_path(self) -> Path | None:
        return (
            self.data_dir / "cache" / "template_embeddings.sqlite" if self.persist_embedding_cache else None
        )


def load_settings(config_file: Path | None = None, **overrides: object) -> Settings:
    """Build Settings from flags (`overrides`, None values ignored), env, and the TOML file."""
    explicit = config_file or (
        Path(os.environ["LOGTRIAGE_CONFIG"]) if os.environ.get("LOGTRIAGE_CONFIG") else None
    )
    if explicit is not None and not explicit.is_file():
        raise ConfigError(f"config file {explicit} does not exist (set by --config or LOGTRIAGE_CONFIG)")
    toml_file = explicit or (default_config_file() if default_config_file().is_file() else None)
    Settings._toml_file = toml_file
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    finally:
        Settings._toml_file = None
