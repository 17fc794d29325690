"""The `local` LLM backend: a transformers causal LM as a LangChain chat model, with tool calling.

`LocalChatModel` renders messages (and bound tools) with `assistant.hermes`, generates greedily
by default, and parses `<tool_call>` blocks back into `AIMessage.tool_calls`, for `invoke` and
`stream` alike. One model is shared by every worker of a server, so generation is serialised by
a lock, and each call has a time budget that includes waiting for that lock.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, PrivateAttr
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from assistant.hermes import StreamingSplitter, cut_at_stop, parse_tool_calls, render_prompt
from assistant.llm_errors import LLMBudgetExceeded, LLMError, LocalModelError
from assistant.local_model import (
    DEFAULT_MODEL_NAME,
    LoadedModel,
    LocalModelConfig,
    StatusCallback,
    load_local_models,
)

__all__ = [
    "LLMBudgetExceeded",
    "LLMError",
    "LocalChatModel",
    "LocalModelConfig",
    "LocalModelError",
    "load_local_chat_model",
    "message_from_text",
]

# Decoding options shared by the streamed and the whole-answer paths, so both give the same text.
_DECODE = {"skip_special_tokens": True, "clean_up_tokenization_spaces": False}


class _Deadline(StoppingCriteria):
    """Stops generation at the time budget, or when the consumer of a stream goes away.

    transformers calls it once per generated token, so it also counts the tokens.
    """

    def __init__(self, budget_s: float | None) -> None:
        self.budget_s = budget_s
        self._at = None if budget_s is None else time.monotonic() + budget_s
        self._cancelled = threading.Event()
        self.expired = False
        self.tokens = 0

    def remaining(self) -> float | None:
        return None if self._at is None else max(0.0, self._at - time.monotonic())

    def cancel(self) -> None:
        self._cancelled.set()

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        self.tokens += 1
        if self._at is not None and time.monotonic() >= self._at:
            self.expired = True
        done = self.expired or self._cancelled.is_set()
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]

    def check(self) -> None:
        if self.expired and self.budget_s is not None:
            raise LLMBudgetExceeded(self.budget_s, self.tokens)


def load_local_chat_model(
    config: LocalModelConfig, on_status: StatusCallback | None = None
) -> LocalChatModel:
    """Load the configured model (see `load_local_model`) as a chat model with its generation
    defaults; with a `tool_precision` of its own, also the copy that answers when tools are offered."""
    loaded, for_tools = load_local_models(config, on_status)
    return LocalChatModel(
        loaded, for_tools=for_tools, max_new_tokens=config.max_new_tokens, budget_s=config.budget_s
    )


def message_from_text(text: str, **fields: Any) -> AIMessage:
    """The AIMessage for a model's output text: `<tool_call>` blocks become `tool_calls`."""
    content, calls = parse_tool_calls(text)
    return AIMessage(content=content, tool_calls=calls, **fields)


class LocalChatModel(BaseChatModel):
    """A local transformers model (default: SmolLM2-135M-Instruct, int8) as a LangChain chat model.

    Build it with `load_local_chat_model(LocalModelConfig(...))`, or wrap an already loaded
    model with `LocalChatModel(loaded)`. `max_new_tokens` and `budget_s` can also be given per call,
    e.g. `model.invoke(messages, budget_s=5)`.
    """

    model_name: str = DEFAULT_MODEL_NAME
    precision: str = "fp32"
    tool_precision: str | None = None  # the copy answering when tools are offered; None: no copy
    max_new_tokens: int = Field(default=160, gt=0)
    budget_s: float | None = Field(default=None, ge=0)  # None: no limit (LOGTRIAGE_LLM_BUDGET_S)
    temperature: float = Field(default=0.0, ge=0)  # 0: greedy, so the same prompt gives the same answer
    repetition_penalty: float = Field(default=1.0, gt=0)

    _loaded: LoadedModel = PrivateAttr()
    _for_tools: LoadedModel | None = PrivateAttr(default=None)

    def __init__(self, loaded: LoadedModel, for_tools: LoadedModel | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("model_name", loaded.name)
        kwargs.setdefault("precision", loaded.precision)
        if for_tools is not None:
            kwargs.setdefault("tool_precision", for_tools.precision)
        super().__init__(**kwargs)
        self._loaded = loaded
        self._for_tools = for_tools

    def _answering(self, kwargs: dict[str, Any]) -> LoadedModel:
        """The model that answers this call: the tool copy when tools are offered and there is one."""
        return self._for_tools if kwargs.get("tools") and self._for_tools is not None else self._loaded

    @property
    def loaded(self) -> LoadedModel:
        return self._loaded

    @property
    def for_tools(self) -> LoadedModel | None:
        return self._for_tools

    @property
    def _llm_type(self) -> str:
        return "logtriage-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "precision": self.precision,
            "tool_precision": self.tool_precision,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
        }

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Offer `tools` to the model; they are rendered into the prompt.

        `tool_choice` is accepted for interface compatibility and ignored: a local model cannot be
        forced to call a tool, and callers must handle an answer without tool calls anyway.
        """
        return self.bind(tools=[convert_to_openai_tool(tool) for tool in tools], **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        deadline = _Deadline(kwargs.get("budget_s", self.budget_s))
        loaded = self._answering(kwargs)
        prompt = render_prompt(loaded.tokenizer, messages, kwargs.get("tools"))
        with self._exclusive(loaded, deadline):
            output = self._run(loaded, prompt, stop, deadline, kwargs, streamer=None)
        deadline.check()
        text, _ = cut_at_stop(loaded.tokenizer.decode(output, **_DECODE), stop or ())
        message = message_from_text(text, **self._metadata(deadline, kwargs))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        deadline = _Deadline(kwargs.get("budget_s", self.budget_s))
        loaded = self._answering(kwargs)
        prompt = render_prompt(loaded.tokenizer, messages, kwargs.get("tools"))
        streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, **_DECODE)  # type: ignore[arg-type]
        failures: list[BaseException] = []

        def work() -> None:
            try:
                with self._exclusive(loaded, deadline):
                    self._run(loaded, prompt, stop, deadline, kwargs, streamer=streamer)
            except BaseException as err:  # re-raised in the consumer's thread below
                failures.append(err)
                streamer.end()  # generate() did not reach its own end(); unblock the consumer

        worker = threading.Thread(target=work, name="logtriage-llm-generate", daemon=True)
        worker.start()
        splitter = StreamingSplitter(stop or ())
        try:
            for piece in streamer:
                text = splitter.feed(piece)
                if splitter.stopped:
                    deadline.cancel()
                if text:
                    yield self._chunk(AIMessageChunk(content=text), run_manager)
        finally:
            deadline.cancel()  # a consumer that stops early must not keep the shared model busy
            worker.join()
        if failures:
            raise failures[0]
        deadline.check()
        rest, calls = splitter.finish()
        chunks = [
            tool_call_chunk(name=call["name"], args=json.dumps(call["args"]), id=call["id"], index=i)
            for i, call in enumerate(calls)
        ]
        last = AIMessageChunk(
            content=rest, tool_call_chunks=chunks, chunk_position="last", **self._metadata(deadline, kwargs)
        )
        yield self._chunk(last, run_manager)

    def _chunk(
        self, message: AIMessageChunk, run_manager: CallbackManagerForLLMRun | None
    ) -> ChatGenerationChunk:
        chunk = ChatGenerationChunk(message=message)
        if run_manager is not None:
            run_manager.on_llm_new_token(str(message.content), chunk=chunk)
        return chunk

    @contextlib.contextmanager
    def _exclusive(self, loaded: LoadedModel, deadline: _Deadline) -> Iterator[None]:
        # Waiting for another request's generation counts against this call's budget.
        remaining = deadline.remaining()
        lock = loaded.lock
        if not lock.acquire(timeout=-1 if remaining is None else remaining):
            deadline.expired = True
            deadline.check()
        try:
            yield
        finally:
            lock.release()

    def _run(
        self,
        loaded: LoadedModel,
        prompt: str,
        stop: list[str] | None,
        deadline: _Deadline,
        kwargs: dict[str, Any],
        streamer: TextIteratorStreamer | None,
    ) -> torch.Tensor:
        """Generate for `prompt` with `loaded`; returns the new token ids."""
        encoded = loaded.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)  # template adds BOS
        prompt_len = encoded["input_ids"].shape[1]  # (1, T)
        max_new = int(kwargs.get("max_new_tokens", self.max_new_tokens))
        context = getattr(loaded.model.config, "max_position_embeddings", None)
        if isinstance(context, int) and prompt_len + max_new > context:
            raise LLMError(
                f"the prompt has {prompt_len} tokens; with {max_new} new ones it exceeds the "
                f"{context}-token context of {loaded.name}; send fewer log lines"
            )
        options: dict[str, Any] = {
            "stopping_criteria": StoppingCriteriaList([deadline]),
            "streamer": streamer,
        }
        if stop:
            options.update(stop_strings=list(stop), tokenizer=loaded.tokenizer)
        try:
            with torch.inference_mode():
                output = loaded.model.generate(  # type: ignore[operator]
                    input_ids=encoded["input_ids"],
                    attention_mask=encoded["attention_mask"],
                    generation_config=self._generation_config(loaded, max_new),
                    # Our config is complete: a model's generation_config.json (Qwen's samples at
                    # 0.7) must not fill in what we left at the defaults, such as do_sample=False.
                    use_model_defaults=False,
                    **options,
                )
        except (RuntimeError, ValueError, IndexError) as err:
            raise LLMError(f"local generation with {loaded.name} failed: {err}") from err
        return output[0, prompt_len:]  # (new_tokens,)

    def _generation_config(self, loaded: LoadedModel, max_new_tokens: int) -> GenerationConfig:
        sampling = self.temperature > 0
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=sampling,
            use_cache=True,
            eos_token_id=list(loaded.stop_token_ids),
            pad_token_id=loaded.pad_token_id,
            repetition_penalty=self.repetition_penalty,
        )
        if sampling:
            config.temperature = self.temperature
        return config

    def _metadata(self, deadline: _Deadline, kwargs: dict[str, Any]) -> dict[str, Any]:
        max_new = int(kwargs.get("max_new_tokens", self.max_new_tokens))
        return {
            "response_metadata": {
                "model_name": self.model_name,
                "finish_reason": "length" if deadline.tokens >= max_new else "stop",
            }
        }
