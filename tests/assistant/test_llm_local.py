"""Tests for the local LLM backend on a tiny Llama trained in-test, and one marked real-model test.

The tiny model (32-dim, 2 layers, a 300-token byte-level BPE) is overfitted in about a second on
two conversations: a plain answer and a tool call, each rendered exactly as the backend renders
its prompt. So the real generate, streaming, parsing and budget paths run on CPU in milliseconds,
with outputs that are known in advance.
"""

from __future__ import annotations

import copy
import json
import os
import re
import string
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from assistant.hermes import render_prompt
from assistant.llm_local import (
    LLMBudgetExceeded,
    LLMError,
    LocalChatModel,
    LocalModelConfig,
    LocalModelError,
    load_local_chat_model,
)
from assistant.local_model import DEFAULT_MODEL_NAME, LoadedModel, load_local_model, prepare_model
from assistant.quantize import int8_plan
from tests.finetune.tiny import save_model_dir

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CAPITAL_QUESTION = [SystemMessage("Answer briefly."), HumanMessage("What is the capital of France?")]
CAPITAL_ANSWER = "The capital of France is Paris. It is on the Seine."
WEATHER_QUESTION = [HumanMessage("What is the weather in Paris?")]
WEATHER_ANSWER = (
    'Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
)


@tool
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"sunny in {city}"


WEATHER_TOOLS = [convert_to_openai_tool(get_weather)]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|im_end|>", "<|im_start|>", "<|endoftext|>"], show_progress=False
    )
    bpe.train_from_iterator([string.printable, CAPITAL_ANSWER, WEATHER_ANSWER] * 3, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|im_end|>", chat_template=CHATML
    )


def train_tiny_model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        vocab_size=len(tokenizer),
        max_position_embeddings=1024,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    examples = []
    for messages, tools, answer in [
        (CAPITAL_QUESTION, None, CAPITAL_ANSWER),
        (WEATHER_QUESTION, WEATHER_TOOLS, WEATHER_ANSWER),
    ]:
        prompt_ids = tokenizer(render_prompt(tokenizer, messages, tools), add_special_tokens=False)[
            "input_ids"
        ]
        answer_ids = tokenizer(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt_ids + answer_ids])  # (1, T)
        labels = ids.clone()
        labels[0, : len(prompt_ids)] = -100  # learn the answer, not the prompt
        examples.append((ids, labels))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-2, weight_decay=0.0)
    for _ in range(300):
        losses = [model(input_ids=ids, labels=labels).loss for ids, labels in examples]
        loss = torch.stack(losses).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if max(x.item() for x in losses) < 0.005:
            break
    return model.eval()


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def trained(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    return train_tiny_model(tokenizer)


@pytest.fixture
def loaded(trained: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast) -> LoadedModel:
    return prepare_model(trained, tokenizer, name="tiny", precision="fp32")


@pytest.fixture
def chat(loaded: LoadedModel) -> LocalChatModel:
    return LocalChatModel(loaded, max_new_tokens=60)


def aggregate(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total


def comparable(message: BaseMessage) -> dict[str, Any]:
    """The parts of a message that are the model's answer (ids and run metadata vary per call)."""
    calls = [{k: v for k, v in call.items() if k != "id"} for call in getattr(message, "tool_calls", [])]
    return {"content": message.content, "tool_calls": calls}


def test_invoke_returns_the_learned_answer_as_an_ai_message(chat: LocalChatModel) -> None:
    message = chat.invoke(CAPITAL_QUESTION)

    assert isinstance(message, AIMessage)
    assert comparable(message) == {"content": CAPITAL_ANSWER, "tool_calls": []}
    assert message.response_metadata == {"model_name": "tiny", "finish_reason": "stop"}


def test_stream_yields_several_chunks_that_add_up_to_the_invoked_answer(chat: LocalChatModel) -> None:
    chunks = list(chat.stream(CAPITAL_QUESTION))

    assert len([c for c in chunks if c.content]) > 3
    assert "".join(str(c.content) for c in chunks) == CAPITAL_ANSWER
    assert comparable(aggregate(chunks)) == comparable(chat.invoke(CAPITAL_QUESTION))


def test_bound_tools_are_offered_and_the_tool_call_comes_back_parsed(chat: LocalChatModel) -> None:
    message = chat.bind_tools([get_weather]).invoke(WEATHER_QUESTION)

    assert comparable(message) == {
        "content": "Checking.",
        "tool_calls": [{"name": "get_weather", "args": {"city": "Paris"}, "type": "tool_call"}],
    }
    assert re.fullmatch(r"call_0_[0-9a-f]{8}", message.tool_calls[0]["id"] or "")


def test_streamed_tool_call_aggregates_to_the_same_message_as_invoke(chat: LocalChatModel) -> None:
    bound = chat.bind(tools=WEATHER_TOOLS)

    chunks = list(bound.stream(WEATHER_QUESTION))
    streamed = aggregate(chunks)

    assert "<tool_call>" not in "".join(str(c.content) for c in chunks)
    assert comparable(streamed) == comparable(bound.invoke(WEATHER_QUESTION))
    assert comparable(streamed)["tool_calls"] == [
        {"name": "get_weather", "args": {"city": "Paris"}, "type": "tool_call"}
    ]


def test_a_budget_of_zero_raises_llm_budget_exceeded_naming_the_setting(chat: LocalChatModel) -> None:
    with pytest.raises(LLMBudgetExceeded, match=r"budget of 0 s.*LOGTRIAGE_LLM_BUDGET_S"):
        chat.invoke(CAPITAL_QUESTION, budget_s=0.0)
    with pytest.raises(LLMBudgetExceeded, match="LOGTRIAGE_LLM_BUDGET_S"):
        list(chat.stream(CAPITAL_QUESTION, budget_s=0.0))


def test_waiting_for_a_busy_model_counts_against_the_budget(
    chat: LocalChatModel, loaded: LoadedModel
) -> None:
    assert loaded.lock.acquire(timeout=5)  # another request is generating
    try:
        started = time.monotonic()
        with pytest.raises(LLMBudgetExceeded, match="after 0 tokens"):
            chat.invoke(CAPITAL_QUESTION, budget_s=0.05)
        assert time.monotonic() - started < 5
    finally:
        loaded.lock.release()


def test_closing_a_stream_early_frees_the_model_for_the_next_call(
    chat: LocalChatModel, loaded: LoadedModel
) -> None:
    stream = chat.stream(CAPITAL_QUESTION)
    assert next(stream).content
    stream.close()

    assert loaded.lock.acquire(timeout=5)
    loaded.lock.release()
    assert chat.invoke(CAPITAL_QUESTION).content == CAPITAL_ANSWER


def test_a_stop_string_cuts_the_answer_in_invoke_and_stream(chat: LocalChatModel) -> None:
    invoked = chat.invoke(CAPITAL_QUESTION, stop=[" is Paris"])
    streamed = aggregate(list(chat.stream(CAPITAL_QUESTION, stop=[" is Paris"])))

    assert invoked.content == streamed.content == "The capital of France"


def test_max_new_tokens_cuts_the_answer_with_finish_reason_length(chat: LocalChatModel) -> None:
    message = chat.invoke(CAPITAL_QUESTION, max_new_tokens=3)

    assert CAPITAL_ANSWER.startswith(str(message.content))
    assert len(str(message.content)) < len(CAPITAL_ANSWER)
    assert message.response_metadata["finish_reason"] == "length"


def test_a_prompt_longer_than_the_context_raises_llm_error(chat: LocalChatModel) -> None:
    with pytest.raises(LLMError, match="exceeds the 1024-token context of tiny"):
        chat.invoke([HumanMessage("word " * 1200)])
    with pytest.raises(LLMError, match="exceeds the 1024-token context of tiny"):
        list(chat.stream([HumanMessage("word " * 1200)]))


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_a_quantised_model_still_gives_the_learned_answers(
    precision: Any, trained: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast
) -> None:
    chat = LocalChatModel(prepare_model(copy.deepcopy(trained), tokenizer, name="tiny", precision=precision))

    assert chat.invoke(CAPITAL_QUESTION).content == CAPITAL_ANSWER
    assert chat.bind(tools=WEATHER_TOOLS).invoke(WEATHER_QUESTION).tool_calls[0]["args"] == {"city": "Paris"}
    if precision == "int8":
        layer = chat.loaded.model.model.layers[0]
        assert type(layer.self_attn.q_proj) is torch.ao.nn.quantized.dynamic.Linear
        assert type(chat.loaded.model.lm_head) is torch.ao.nn.quantized.dynamic.Linear
    else:
        assert chat.loaded.model.lm_head.weight.dtype == torch.bfloat16


def test_int8_keeps_in_float_the_layers_whose_inputs_carry_activation_outliers(
    trained: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast
) -> None:
    model = copy.deepcopy(trained)
    with torch.no_grad():  # one up-projection channel 10,000x larger: an outlier into down_proj
        model.model.layers[1].mlp.up_proj.weight[3] *= 10_000
    plan = int8_plan(model, tokenizer)
    assert "model.layers.1.mlp.down_proj" not in plan
    assert "model.layers.0.mlp.down_proj" in plan and "lm_head" in plan
    prepared = prepare_model(model, tokenizer, name="tiny", precision="int8")
    assert type(prepared.model.model.layers[1].mlp.down_proj) is torch.nn.Linear
    assert type(prepared.model.model.layers[0].mlp.down_proj) is torch.ao.nn.quantized.dynamic.Linear


def test_loader_reads_a_model_directory_and_merges_a_lora_adapter(
    trained: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    model_dir = save_model_dir(trained, tokenizer, tmp_path / "tiny-model")
    torch.manual_seed(1)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(copy.deepcopy(trained), lora)
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = tokenizer("What is the weather?", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        expected = peft_model(ids).logits

    chat = load_local_chat_model(
        LocalModelConfig(
            model_path=model_dir, adapter_dir=tmp_path / "adapter", precision="fp32", budget_s=9.0
        )
    )

    assert (chat.model_name, chat.precision, chat.budget_s) == ("tiny-model+adapter", "fp32", 9.0)
    assert not any("lora" in name for name, _ in chat.loaded.model.named_modules())  # merged, not wrapped
    with torch.inference_mode():
        torch.testing.assert_close(chat.loaded.model(ids).logits, expected, atol=1e-4, rtol=1e-4)


def chat_from_dir(
    trained: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    path: Path,
    precision: Any,
    tool_precision: Any,
) -> LocalChatModel:
    model_dir = save_model_dir(trained, tokenizer, path / "tiny-model")
    return load_local_chat_model(
        LocalModelConfig(model_path=model_dir, precision=precision, tool_precision=tool_precision)
    )


def test_tool_calls_come_from_a_float_copy_while_plain_answers_use_int8(
    trained: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    chat = chat_from_dir(trained, tokenizer, tmp_path, "int8", "fp32")
    assert chat.for_tools is not None
    assert (chat.precision, chat.tool_precision) == ("int8", "fp32")
    quantized = torch.ao.nn.quantized.dynamic.Linear
    assert (
        type(chat.loaded.model.lm_head) is quantized and type(chat.for_tools.model.lm_head) is torch.nn.Linear
    )
    forwards = {"int8": 0, "fp32": 0}
    for name, copy_ in (("int8", chat.loaded), ("fp32", chat.for_tools)):
        copy_.model.register_forward_hook(
            lambda *_, name=name: forwards.__setitem__(name, forwards[name] + 1)
        )

    assert chat.invoke(CAPITAL_QUESTION).content == CAPITAL_ANSWER
    assert forwards["int8"] > 0 and forwards["fp32"] == 0
    forwards["int8"] = 0
    message = chat.bind(tools=WEATHER_TOOLS).invoke(WEATHER_QUESTION)
    assert message.tool_calls[0]["args"] == {"city": "Paris"}
    assert forwards["fp32"] > 0 and forwards["int8"] == 0


def test_one_precision_for_both_loads_a_single_copy(
    trained: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    chat = chat_from_dir(trained, tokenizer, tmp_path, "fp32", "fp32")
    assert chat.for_tools is None and chat.tool_precision is None


def test_a_model_path_without_config_json_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(LocalModelError, match="no config.json.*LOGTRIAGE_LLM_MODEL"):
        load_local_model(LocalModelConfig(model_path=tmp_path))


def test_an_adapter_dir_without_adapter_config_names_the_setting_and_flag(
    trained: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    model_dir = save_model_dir(trained, tokenizer, tmp_path / "tiny-model")
    (tmp_path / "not-an-adapter").mkdir()

    with pytest.raises(LocalModelError, match=r"no adapter_config.json.*LOGTRIAGE_LLM_ADAPTER \(--adapter\)"):
        load_local_model(LocalModelConfig(model_path=model_dir, adapter_dir=tmp_path / "not-an-adapter"))


def test_the_default_model_without_a_cache_dir_is_a_config_error() -> None:
    with pytest.raises(LocalModelError, match="cache directory"):
        load_local_model(LocalModelConfig())


def test_a_tokenizer_without_chat_template_is_refused(trained: LlamaForCausalLM) -> None:
    plain = tiny_tokenizer()
    plain.chat_template = None

    with pytest.raises(LocalModelError, match="no chat template"):
        prepare_model(trained, plain, name="base-model")


@pytest.mark.llm
@pytest.mark.slow
def test_default_smollm2_converts_once_into_the_cache_and_answers_in_int8(tmp_path: Path) -> None:
    cache = tmp_path / "models"
    stale = cache / f".{DEFAULT_MODEL_NAME}-killed"  # a conversion killed an hour ago
    stale.mkdir(parents=True)
    old = time.time() - 7200
    os.utime(stale, (old, old))
    statuses: list[str] = []

    first = load_local_model(LocalModelConfig(cache_dir=cache, precision="fp32"), on_status=statuses.append)
    del first
    started = time.monotonic()
    chat = load_local_chat_model(
        LocalModelConfig(cache_dir=cache, precision="int8", max_new_tokens=24), on_status=statuses.append
    )
    reload_s = time.monotonic() - started

    assert sorted(p.name for p in cache.iterdir()) == [DEFAULT_MODEL_NAME]  # no temp or stale folders
    assert (cache / DEFAULT_MODEL_NAME / "config.json").is_file()
    assert statuses == [  # the second load read the cache
        "converting the bundled SmolLM2 GGUF to a float model (once, ~30 s)",
        f"loading {DEFAULT_MODEL_NAME} (fp32)",
        f"loading {DEFAULT_MODEL_NAME} (int8)",
    ]
    assert reload_s < 30
    answer = chat.invoke([HumanMessage("What is the capital of France? Answer in one sentence.")])
    assert "Paris" in str(answer.content)
    assert (
        json.loads((cache / DEFAULT_MODEL_NAME / "tokenizer_config.json").read_text())["eos_token"]
        == "<|im_end|>"
    )
