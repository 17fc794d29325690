"""Builds the long-lived parts (detector, incident store) from Settings. Used by entry points only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from langchain_core.language_models import BaseChatModel

from assistant.explainer import LLMExplainer
from assistant.graph import AssistantDeps
from assistant.redaction import RedactionPolicy
from assistant.service import Assistant, sqlite_checkpointer
from detectors import Detector
from integrations.settings import ConfigError, Settings
from knowledge.embedding import PooledEmbedder, SequenceEmbedder, TemplateMeanEmbedder
from knowledge.open import StoreLocation, open_store
from knowledge.store import IncidentStore
from tools import InputLimits, ToolContext

if TYPE_CHECKING:  # the local model stack (torch, transformers) loads only when it is used
    from assistant.local_model import Precision


def load_detector(settings: Settings) -> Detector:
    return Detector.load(
        settings.model_dir,
        encoder_path=settings.encoder_path,
        cache_entries=settings.embedding_cache_entries,
        cache_path=settings.embedding_cache_path,
    )


def store_location(settings: Settings) -> StoreLocation:
    return StoreLocation(
        data_dir=settings.data_dir,
        collection=settings.qdrant_collection,
        engine=settings.embedded_store,
        qdrant_url=settings.qdrant_url,
        qdrant_api_key=settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None,
        shard_number=settings.qdrant_shards,
        replication_factor=settings.qdrant_replication,
        write_consistency_factor=settings.qdrant_write_consistency,
        timeout_s=settings.qdrant_timeout_s,
    )


def incident_embedder(settings: Settings, detector: Detector) -> SequenceEmbedder:
    if settings.incident_vector == "template-mean":
        return TemplateMeanEmbedder(detector.cache)
    return PooledEmbedder(detector)


def open_incident_store(settings: Settings, detector: Detector) -> IncidentStore:
    return open_store(store_location(settings), incident_embedder(settings, detector))


def input_limits(settings: Settings) -> InputLimits:
    return InputLimits(
        max_lines=settings.max_lines,
        max_line_chars=settings.max_line_chars,
        max_total_bytes=settings.max_input_bytes,
    )


def redaction_policy(settings: Settings) -> RedactionPolicy:
    return RedactionPolicy(redact_ips=settings.redact_ips)


def chat_model(settings: Settings, on_status: Callable[[str], None] | None = None) -> BaseChatModel | None:
    """The assistant's LLM as the settings choose it; None for `LOGTRIAGE_LLM_BACKEND=none`."""
    if settings.llm_backend == "none":
        return None
    if settings.llm_backend == "openai":
        from assistant.llm_openai import OpenAIBackendConfig, openai_chat_model

        if not settings.llm_url:
            raise ConfigError(
                "the openai LLM backend needs a URL: set LOGTRIAGE_LLM_URL or pass --llm-url "
                "(e.g. http://localhost:8000/v1 for vLLM, http://localhost:11434/v1 for Ollama)"
            )
        try:
            return openai_chat_model(
                OpenAIBackendConfig(
                    base_url=settings.llm_url,
                    model=settings.llm_model_name,
                    api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
                    budget_s=settings.llm_budget_s,
                    max_tokens=settings.llm_max_new_tokens,
                )
            )
        except ValueError as err:
            raise ConfigError(str(err)) from err
    from assistant.llm_local import LocalModelConfig, load_local_chat_model

    config = LocalModelConfig(
        model_path=settings.llm_model,
        adapter_dir=adapter_for(settings),
        cache_dir=settings.models_dir,
        precision=settings.llm_precision,
        tool_precision=tool_precision(settings),
        max_new_tokens=settings.llm_max_new_tokens,
        budget_s=settings.llm_budget_s,
    )
    return load_local_chat_model(config, on_status=on_status)


def tool_precision(settings: Settings) -> Precision:
    """The precision of the model copy that makes tool calls (`LOGTRIAGE_LLM_TOOL_PRECISION`)."""
    return default_tool_precision(settings.llm_tool_precision, settings.llm_model, settings.llm_precision)


def default_tool_precision(chosen: Precision | None, model: Path | None, precision: Precision) -> Precision:
    """`chosen`, else fp32 for the bundled model and `precision` for one of your own: the bundled
    135M model miscopies ids in int8 and a float copy of it costs ~0.5 GB, while a big model of
    your own is not copied unasked."""
    if chosen is not None:
        return chosen
    return "fp32" if model is None else precision


def adapter_for(settings: Settings) -> Path | None:
    """The LoRA adapter to merge: the one set, else the shipped one when the model is the bundled
    SmolLM2 it was trained for (an adapter only fits the model it was trained on)."""
    from assistant.local_model import DEFAULT_ADAPTER_DIR

    if settings.llm_adapter is not None:
        return settings.llm_adapter
    shipped = (DEFAULT_ADAPTER_DIR / "adapter_config.json").is_file()
    if settings.llm_model is None and settings.llm_default_adapter and shipped:
        return DEFAULT_ADAPTER_DIR
    return None


def tool_context(
    settings: Settings,
    detector: Detector,
    store: IncidentStore | None,
    model: BaseChatModel | None,
) -> ToolContext:
    explainer = LLMExplainer(model, redaction_policy(settings)) if model is not None else None
    return ToolContext(
        detector=detector,
        store=store,
        explainer=explainer,
        limits=input_limits(settings),
        similar_k=settings.similar_k,
    )


def build_assistant(
    settings: Settings,
    detector: Detector,
    store: IncidentStore | None,
    model: BaseChatModel | None,
) -> Assistant:
    deps = AssistantDeps(
        tools=tool_context(settings, detector, store, model),
        chat_model=model,
        redaction=redaction_policy(settings),
    )
    return Assistant(deps, sqlite_checkpointer(settings.threads_path))
