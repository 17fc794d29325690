"""Training: completion-only labels, LoRA target detection, the Qwen2 path, resume and merge."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from assistant.hermes import parse_tool_calls, render_prompt
from assistant.local_model import LocalModelConfig, load_local_model
from finetune.config import FinetuneConfig, FinetuneConfigError, detect_target_modules, top_layers
from finetune.examples import (
    Expected,
    SFTExample,
    Turn,
    chat_tool_schemas,
    prompt_and_completion,
    to_messages,
)
from finetune.train import merge, train
from finetune.trainer import build_trainer, mixed_precision_bf16
from tests.finetune.tiny import save_model_dir, tiny_llama, tiny_qwen2, tiny_tokenizer

CALL = {"name": "get_incident", "arguments": {"incident_id": "0a45d300-aa89-56ba-b690-a17247fef0bb"}}


def tool_call_example(i: int = 0) -> SFTExample:
    return SFTExample(
        id=f"tool-{i}",
        kind="tool_call",
        tools=True,
        turns=[
            Turn(role="system", content="You are logtriage. Current triage: anomalous."),
            Turn(role="user", content="show me the most similar one"),
            Turn(role="assistant", tool_calls=[CALL]),
        ],
        expected=Expected(tool_call=CALL, expects_tool_decision=True),
    )


def triage_example(i: int) -> SFTExample:
    return SFTExample(
        id=f"triage-{i}",
        kind="triage",
        turns=[
            Turn(role="system", content="Explain the verdict."),
            Turn(role="user", content=f"verdict: anomalous\n<logs>\n[L{i + 1}] ERROR timeout {i}\n</logs>"),
            Turn(
                role="assistant",
                content='{"status": "anomalous", "category": "network_timeout", "key_indicators": '
                f'["L{i + 1}"], "next_steps": ["check the network"]}}\n[L{i + 1}] shows a timeout.',
            ),
        ],
    )


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    corpus = [prompt for e in [tool_call_example(), triage_example(0)] for prompt in _texts(e)]
    return tiny_tokenizer(corpus)


def _texts(example: SFTExample) -> list[str]:
    return [t.content for t in example.turns] + [str(CALL)]


def _config(tmp_path: Path, **overrides: object) -> FinetuneConfig:
    values: dict[str, object] = {
        "output_dir": str(tmp_path / "adapter"),
        "learning_rate": 5e-3,
        "lora_r": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.0,
        "batch_size": 2,
        "grad_accum": 1,
        "max_steps": 2,
        "logging_steps": 1,
        "save_steps": 2,
        "warmup_ratio": 0.0,
        **overrides,
    }
    return FinetuneConfig.from_mapping(values)


@pytest.mark.parametrize("engine", ["transformers", "trl"])
def test_every_prompt_token_is_labelled_minus_100_and_every_answer_token_is_learned(
    engine: str, tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    examples = [tool_call_example(), triage_example(0), triage_example(1)]
    trainer = build_trainer(_config(tmp_path, engine=engine), tiny_llama(tokenizer), tokenizer, examples)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(examples))])

    tools = chat_tool_schemas()
    for row, example in enumerate(examples):
        prompt, completion = prompt_and_completion(example, tokenizer, tools)
        n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        answer_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        ids, labels, mask = batch["input_ids"][row], batch["labels"][row], batch["attention_mask"][row]
        real = mask.nonzero().flatten()  # positions that are not padding
        start = int(real[0])  # TRL pads on the left of the prompt's row, transformers on the right
        assert (labels[start : start + n_prompt] == -100).all(), "a prompt token is learned"
        answer = labels[start + n_prompt : start + n_prompt + len(answer_ids)]
        assert answer.tolist() == answer_ids, "an answer token is not learned"
        assert answer_ids[-1] == tokenizer.eos_token_id, "the end of turn must be learned, or it never stops"
        assert (labels[mask == 0] == -100).all(), "padding is learned"
        assert int(mask.sum()) == n_prompt + len(answer_ids)
        assert (
            ids[start : start + n_prompt].tolist() == tokenizer(prompt, add_special_tokens=False)["input_ids"]
        )


def test_lora_targets_are_every_projection_of_a_llama_or_qwen2_block_and_never_the_head(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    projections = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert detect_target_modules(tiny_llama(tokenizer)) == projections
    assert detect_target_modules(tiny_qwen2(tokenizer)) == projections


def test_a_model_without_linear_layers_is_a_config_error_naming_the_setting() -> None:
    with pytest.raises(FinetuneConfigError, match="target_modules"):
        detect_target_modules(torch.nn.Sequential(torch.nn.ReLU()))


def test_layers_fraction_adapts_the_top_blocks(tokenizer: PreTrainedTokenizerFast) -> None:
    model = tiny_llama(tokenizer)  # 2 blocks
    assert top_layers(model, 1.0) is None
    assert top_layers(model, 0.5) == [1]


def test_unknown_settings_and_engines_are_rejected_with_the_known_names(tmp_path: Path) -> None:
    with pytest.raises(FinetuneConfigError, match="known"):
        FinetuneConfig.from_mapping({"learning_rat": 1e-3})
    with pytest.raises(FinetuneConfigError, match="engine"):
        FinetuneConfig.from_mapping({"engine": "unsloth-fast"})
    bad = tmp_path / "bad.toml"
    bad.write_text("lora_r = [")
    with pytest.raises(FinetuneConfigError, match="--config"):
        FinetuneConfig.from_toml(bad)


def _teach(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, example: SFTExample) -> None:
    """Full-parameter training until the random model writes the example's answer: the stand-in for
    a pretrained instruct model, which already knows how to call tools."""
    prompt, completion = prompt_and_completion(example, tokenizer, chat_tool_schemas())
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + tokenizer(completion, add_special_tokens=False)["input_ids"]])  # (1, T)
    labels = ids.clone()
    labels[0, : len(prompt_ids)] = -100
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(1500):
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.005:
            break


def test_a_tiny_qwen2_goes_through_lora_training_and_then_writes_a_parseable_hermes_tool_call(
    tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    model = tiny_qwen2(tokenizer)
    _teach(model, tokenizer, tool_call_example())
    config = _config(tmp_path, max_steps=1, batch_size=1, learning_rate=1e-4)
    trainer = build_trainer(config, model, tokenizer, [tool_call_example()])
    adapted = {n.rsplit(".", 2)[-2] for n, _ in trainer.model.named_modules() if n.endswith(".lora_A")}
    assert adapted == set(detect_target_modules(tiny_qwen2(tokenizer)))
    trainer.train()
    assert trainer.state.global_step == 1

    tuned = trainer.model.merge_and_unload().eval()
    prompt = render_prompt(tokenizer, to_messages(tool_call_example().turns[:-1]), chat_tool_schemas())
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = tuned.generate(
            input_ids=ids["input_ids"],
            max_new_tokens=80,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
        )
    text = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    _, calls = parse_tool_calls(text)
    assert [(c["name"], c["args"]) for c in calls] == [(CALL["name"], CALL["arguments"])]


def test_a_tiny_run_lowers_the_loss_saves_a_small_adapter_and_resumes_from_its_checkpoint(
    tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    base = save_model_dir(tiny_llama(tokenizer), tokenizer, tmp_path / "base")
    examples = [triage_example(i) for i in range(4)] + [tool_call_example()]
    config = _config(tmp_path, base_model=str(base), max_steps=12, save_steps=6)

    first = train(config, examples, models_dir=tmp_path / "models")

    assert first.losses[-1][1] < first.losses[0][1]
    adapter = config.output_dir
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "training_summary.json").is_file()
    resumed = train(
        FinetuneConfig.from_mapping({**config.as_json(), "max_steps": 14}), examples, tmp_path / "models"
    )
    assert resumed.resumed_from is not None and resumed.resumed_from.name == "checkpoint-12"
    assert resumed.steps == 14


def test_merge_writes_a_model_directory_the_assistant_loads_like_the_adapter(
    tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    base = save_model_dir(tiny_llama(tokenizer), tokenizer, tmp_path / "base")
    config = _config(tmp_path, base_model=str(base), max_steps=3)
    train(config, [triage_example(i) for i in range(3)], tmp_path / "models")

    merged_dir = merge(base, config.output_dir, tmp_path / "merged", tmp_path / "models")

    prompt = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    with_adapter = load_local_model(
        LocalModelConfig(model_path=base, adapter_dir=config.output_dir, precision="fp32")
    )
    merged = load_local_model(LocalModelConfig(model_path=merged_dir, precision="fp32"))
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        torch.testing.assert_close(
            with_adapter.model(ids).logits, merged.model(ids).logits, atol=1e-3, rtol=1e-3
        )


def test_the_answer_only_loss_equals_the_full_vocabulary_loss_over_every_position(
    tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    examples = [tool_call_example(), triage_example(0), triage_example(1)]
    trainer = build_trainer(_config(tmp_path), tiny_llama(tokenizer), tokenizer, examples)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(examples))])
    n_answer_tokens = int((batch["labels"][:, 1:] != -100).sum())
    with torch.no_grad():
        reference = trainer.model(**batch).loss  # transformers' causal-LM loss over all logits
        ours = trainer.compute_loss(trainer.model, batch, num_items_in_batch=n_answer_tokens)
        unnormalised = trainer.compute_loss(trainer.model, batch)
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(unnormalised, reference)


def test_an_example_whose_answer_does_not_fit_max_length_is_left_out_not_cut(
    tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    long = triage_example(0).model_copy(deep=True)
    long.turns[1].content = "ERROR timeout " * 400
    trainer = build_trainer(
        _config(tmp_path, max_length=256), tiny_llama(tokenizer), tokenizer, [long, triage_example(1)]
    )
    assert len(trainer.train_dataset) == 1
    with pytest.raises(FinetuneConfigError, match="max_length"):
        build_trainer(_config(tmp_path, max_length=256), tiny_llama(tokenizer), tokenizer, [long])


def test_bf16_is_used_on_a_cpu_only_where_it_is_native(monkeypatch: pytest.MonkeyPatch) -> None:
    import finetune.trainer

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    asked = FinetuneConfig.from_mapping({"bf16": True})
    monkeypatch.setattr(finetune.trainer, "cpu_bf16_supported", lambda: False)
    assert mixed_precision_bf16(asked) is False
    monkeypatch.setattr(finetune.trainer, "cpu_bf16_supported", lambda: True)
    assert mixed_precision_bf16(asked) is True
    assert mixed_precision_bf16(FinetuneConfig.from_mapping({})) is False
