"""`logtriage finetune-data`, `finetune` and `finetune-eval` end to end on a tiny model (the CI run)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.finetune.tiny import save_model_dir, tiny_llama, tiny_tokenizer
from tests.integrations.test_cli import run

SEED_RECORDS = [
    {
        "prompt": "Classify.",
        "input": f"ERROR disk {i} full on /var",
        "output": {"status": "Abnormal", "category": "resource_exhaustion"},
    }
    for i in range(30)
] + [
    {
        "prompt": "Classify.",
        "input": f"INFO request {i} served in 12ms",
        "output": {"status": "Normal", "category": "normal"},
    }
    for i in range(30)
]


def _seed_file(tmp_path: Path) -> Path:
    path = tmp_path / "seed.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in SEED_RECORDS))
    return path


def test_a_tiny_configuration_trains_a_few_steps_on_imported_data_and_the_loss_falls(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    code, out, err = run(
        "finetune-data", "--no-synthetic", "--import", str(_seed_file(tmp_path)), "--out", str(data)
    )
    assert code == 0, err
    assert "wrote 60 examples" in out

    tokenizer = tiny_tokenizer([json.dumps(r) for r in SEED_RECORDS])
    base = save_model_dir(tiny_llama(tokenizer), tokenizer, tmp_path / "base")
    config = tmp_path / "tiny.toml"
    config.write_text(
        "lora_r = 4\nlora_alpha = 8\nlearning_rate = 5e-3\nbatch_size = 4\ngrad_accum = 1\n"
        "max_steps = 10\nlogging_steps = 1\nsave_steps = 5\nwarmup_ratio = 0.0\nmax_examples = 16\n"
    )
    adapter = tmp_path / "adapter"
    code, out, err = run(
        "finetune",
        "--train-config",
        str(config),
        "--data",
        str(data),
        "--out",
        str(adapter),
        "--base-model",
        str(base),
        "--merge",
        str(tmp_path / "merged"),
    )
    assert code == 0, err
    summary = json.loads((adapter / "training_summary.json").read_text())
    losses = [loss for _, loss in summary["losses"]]
    assert summary["steps"] == 10 and losses[-1] < losses[0]
    assert (tmp_path / "merged" / "config.json").is_file()

    code, out, err = run(
        "finetune-eval",
        "--data",
        str(data),
        "--adapter",
        str(adapter),
        "--base-model",
        str(base),
        "--precision",
        "fp32",
        "--out",
        str(tmp_path / "eval.json"),
    )
    assert code == 0, err
    report = json.loads((tmp_path / "eval.json").read_text())
    assert {"base", "adapter"} <= report.keys()
    assert report["adapter"]["metrics"]["valid_json"]["n"] == report["examples"]


def test_finetune_without_data_exits_2_naming_the_command_that_builds_it() -> None:
    code, _, err = run("finetune")
    assert code == 2
    assert "finetune-data" in err


def test_an_unknown_training_setting_exits_2_listing_the_known_ones(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("learning_rat = 0.1\n")
    code, _, err = run("finetune", "--train-config", str(config))
    assert code == 2
    assert "learning_rate" in err


def test_finetune_data_of_a_file_in_no_known_format_exits_2_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x"}\n')
    code, _, err = run(
        "finetune-data", "--no-synthetic", "--import", str(bad), "--out", str(tmp_path / "o.jsonl")
    )
    assert code == 2
    assert "bad.jsonl:1" in err
