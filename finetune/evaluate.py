"""Held-out evaluation of a chat model on the fine-tuning examples: base against adapter.

Each held-out example's prompt is rendered exactly as for training, the model answers greedily,
and the answer is checked against what the example expects:
- valid JSON: a triage answer starts with a valid report line; a classification answer is a JSON
  object with status and category;
- category accuracy: the category in that JSON is the expected one;
- tool-call exact match: the same tool with the same arguments (or no call where none is due);
- citing evidence: a triage answer cites at least one evidence line the facts actually showed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress

from assistant import quantize
from assistant.answer_format import cited_lines, split_report
from assistant.hermes import parse_tool_calls
from assistant.local_model import LoadedModel, LocalModelConfig, load_local_models
from finetune.examples import SFTExample, chat_tool_schemas, in_split, prompt_and_completion, read_examples

JSON_KINDS = ("triage", "seed", "feedback")
TOOL_KINDS = ("tool_call", "chat")
MAX_NEW_TOKENS = 128
REFERENCE_SLACK_TOKENS = 16


def generate(loaded: LoadedModel, prompt: str, max_new_tokens: int = MAX_NEW_TOKENS) -> str:
    tokenizer = loaded.tokenizer
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = loaded.model.generate(  # type: ignore[operator]  # transformers types generate loosely
            input_ids=ids["input_ids"],
            attention_mask=ids["attention_mask"],
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=list(loaded.stop_token_ids),
            pad_token_id=loaded.pad_token_id,
        )
    return str(tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))


def score_answer(example: SFTExample, output: str) -> dict[str, Any]:
    """The checks that apply to this example, each True or False."""
    expected = example.expected
    checks: dict[str, Any] = {}
    if example.kind == "triage":
        report, prose = split_report(output)
        checks["valid_json"] = report is not None
        checks["category"] = report is not None and report.category == expected.category
        checks["status"] = report is not None and report.status == expected.status
        cited = cited_lines(prose) | (cited_lines(" ".join(report.key_indicators)) if report else set())
        checks["cites_evidence"] = bool(cited & set(expected.evidence))
    elif example.kind in ("seed", "feedback"):
        parsed = _json_object(output.strip().split("\n", 1)[0])
        checks["valid_json"] = parsed is not None and "status" in parsed and "category" in parsed
        checks["category"] = parsed is not None and _same(parsed.get("category"), expected.category)
    elif example.kind in TOOL_KINDS:
        _, calls = parse_tool_calls(output)
        want = expected.tool_call
        if want is None:
            checks["tool_call_exact"] = not calls
        else:
            checks["tool_call_exact"] = bool(calls) and (
                calls[0]["name"] == want["name"] and calls[0]["args"] == want["arguments"]
            )
    return checks


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _same(a: Any, b: Any) -> bool:
    return a is not None and b is not None and str(a).strip().lower() == str(b).strip().lower()


def evaluate(
    loaded: LoadedModel,
    examples: Sequence[SFTExample],
    on_example: Callable[[], None] | None = None,
    rows_path: Path | None = None,
    max_new_tokens: int = MAX_NEW_TOKENS,
) -> dict[str, Any]:
    """Answer and score every example. With `rows_path`, each scored row is appended there as it
    is made, and rows already there are reused: an interrupted evaluation resumes."""
    tools = chat_tool_schemas()
    done = _saved_rows(rows_path)
    rows = []
    for example in examples:
        key = _row_key(example)
        row = done.get(key)
        if row is None:
            prompt, reference = prompt_and_completion(example, loaded.tokenizer, tools)
            started = time.perf_counter()
            output = generate(loaded, prompt, _budget(loaded, reference, max_new_tokens))
            seconds = round(time.perf_counter() - started, 2)
            row = {"id": example.id, "key": key, "kind": example.kind, "output": output, "seconds": seconds}
            row.update(score_answer(example, output))
            if rows_path is not None:
                with rows_path.open("a", encoding="utf-8") as saved:
                    saved.write(json.dumps(row) + "\n")
        rows.append(row)
        if on_example:
            on_example()
    return {
        "model": loaded.name,
        "seconds": round(sum(float(r.get("seconds", 0.0)) for r in rows), 1),
        "metrics": metrics(rows),
        "rows": rows,
    }


def _budget(loaded: LoadedModel, reference: str, max_new_tokens: int) -> int:
    """`max_new_tokens`, or room for the reference answer when that is longer: cutting a long
    answer (a score_logs call given its lines) would count the budget, not the model, as wrong."""
    reference_tokens = len(loaded.tokenizer(reference, add_special_tokens=False)["input_ids"])
    return max(max_new_tokens, reference_tokens + REFERENCE_SLACK_TOKENS)


def _row_key(example: SFTExample) -> str:
    """The example's content hash: files built with different seeds reuse ids for other content."""
    return hashlib.sha256(example.model_dump_json().encode()).hexdigest()[:16]


def rows_file(
    rows_dir: Path, label: str, base_model: Path | None, adapter: Path | None, precision: str
) -> Path:
    """Where one model's rows are saved: named after what produced them (the base, the adapter's
    weights file and its size and time, the precision), so a retrained adapter or another int8 plan
    never reuses old rows."""
    weights = adapter / "adapter_model.safetensors" if adapter else None
    stamp = (weights.stat().st_size, weights.stat().st_mtime_ns) if weights and weights.is_file() else None
    # int8 is named with its plan: which layers stay in float changes the answers.
    quantized = [precision, quantize.OUTLIER_RATIO, quantize.KEEP_FLOAT] if precision == "int8" else precision
    identity = json.dumps([str(base_model), str(adapter.resolve()) if adapter else None, stamp, quantized])
    rows_dir.mkdir(parents=True, exist_ok=True)
    return rows_dir / f"{label}-{hashlib.sha256(identity.encode()).hexdigest()[:8]}.rows.jsonl"


def _saved_rows(rows_path: Path | None) -> dict[str, dict[str, Any]]:
    if rows_path is None or not rows_path.is_file():
        return {}
    rows = {}
    lines = rows_path.read_text(encoding="utf-8").splitlines()
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # the last line of a killed run may be cut short
            continue
        rows[row["key"]] = row
    if len(rows) < len(lines):  # rewritten whole, so new rows never join a cut line
        rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows.values()), encoding="utf-8")
    return rows


def metrics(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    def rate(check: str, kinds: tuple[str, ...]) -> dict[str, Any]:
        values = [bool(r[check]) for r in rows if r["kind"] in kinds and check in r]
        return {"rate": round(sum(values) / len(values), 4) if values else None, "n": len(values)}

    return {
        "valid_json": rate("valid_json", JSON_KINDS),
        "category_accuracy": rate("category", ("triage",)),
        "category_accuracy_raw_logs": rate("category", ("seed", "feedback")),
        "tool_call_exact": rate("tool_call_exact", TOOL_KINDS),
        "cites_evidence": rate("cites_evidence", ("triage",)),
        "status_accuracy": rate("status", ("triage",)),
    }


GOALS = {"valid_json": 0.99, "category_accuracy": 0.90, "tool_call_exact": 0.95}


def evaluate_models(
    data: Sequence[Path],
    models_dir: Path,
    base_model: Path | None,
    adapter: Path | None,
    precision: str,
    limit: int | None,
    skip_base: bool,
    progress: Callable[[], AbstractContextManager[Progress]],
    rows_dir: Path | None = None,
    tool_precision: str | None = None,
) -> dict[str, Any]:
    """Evaluate the base model and (when given) the adapter on the held-out examples of `data`,
    the tool-call examples at `tool_precision` (default: `precision`), as the assistant runs them.
    With `rows_dir`, rows are saved there as they are scored and reused by a rerun."""
    examples = [e for path in data for e in in_split(read_examples(path), "heldout")]
    examples = [e for e in examples if e.kind != "tool_answer"]  # no check for free-text answers
    if limit is not None and 0 < limit < len(examples):  # an evenly spread subset keeps every kind
        examples = [examples[i * len(examples) // limit] for i in range(limit)]
    if not examples:
        raise ValueError("no held-out examples in the data; build it with `logtriage finetune-data`")
    variants: list[tuple[str, Path | None]] = [] if skip_base else [("base", None)]
    if adapter is not None:
        variants.append(("adapter", adapter))
    if not variants:
        raise ValueError("nothing to evaluate: give --adapter, or drop --skip-base")
    tool_precision = tool_precision or precision
    report: dict[str, Any] = {
        "examples": len(examples),
        "precision": precision,
        "tool_precision": tool_precision,
        "goals": GOALS,
    }
    for label, adapter_dir in variants:
        config = LocalModelConfig(
            model_path=base_model,
            cache_dir=models_dir,
            adapter_dir=adapter_dir,
            precision=precision,  # type: ignore[arg-type]
            tool_precision=tool_precision,  # type: ignore[arg-type]
        )
        loaded, for_tools = load_local_models(config)  # as the assistant loads them
        groups = [(loaded, examples)]
        if for_tools is not None:
            groups = [
                (loaded, [e for e in examples if e.kind not in TOOL_KINDS]),
                (for_tools, [e for e in examples if e.kind in TOOL_KINDS]),
            ]
        parts = []
        with progress() as bar:
            task = bar.add_task(f"evaluating {label}", total=len(examples))
            for model, group in groups:
                rows_path = (
                    rows_file(rows_dir, label, base_model, adapter_dir, model.precision) if rows_dir else None
                )
                parts.append(evaluate(model, group, partial(bar.advance, task), rows_path))
        rows = [row for part in parts for row in part["rows"]]
        report[label] = {
            "model": parts[0]["model"],
            "seconds": round(sum(part["seconds"] for part in parts), 1),
            "metrics": metrics(rows),
            "rows": rows,
        }
    return report


def format_table(report: dict[str, Any]) -> str:
    variants = [v for v in ("base", "adapter") if v in report]
    names = list(report[variants[0]]["metrics"])
    precisions = report["precision"]
    if report.get("tool_precision", precisions) != precisions:
        precisions += f"; tool calls {report['tool_precision']}"
    lines = [f"held-out examples: {report['examples']} ({precisions})", ""]
    lines.append(f"{'metric':<28}" + "".join(f"{v:>16}" for v in variants) + f"{'goal':>8}")
    for name in names:
        cells = []
        for v in variants:
            m = report[v]["metrics"][name]
            cells.append(f"{m['rate']:.3f} (n={m['n']})" if m["rate"] is not None else "-")
        goal = GOALS.get(name)
        lines.append(
            f"{name:<28}" + "".join(f"{c:>16}" for c in cells) + (f"{goal:>8.2f}" if goal else f"{'':>8}")
        )
    lines.append("")
    lines += [f"{v}: {report[v]['model']}, {report[v]['seconds']} s" for v in variants]
    return "\n".join(lines)
