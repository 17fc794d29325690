"""Fine-tuning examples built by running the real tools on synthetic incidents.

A temporary incident store is filled with a labelled synthetic history; then each query sequence
is triaged by the real registry (the shipped detector, the store), and the answer the assistant
would be given becomes the prompt. The targets (`finetune.targets`) are written from those tool
outputs only. Chat examples replay the chat path: the thread's triage, a user question, the tool
call it needs (run for real), and the final answer.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from assistant.graph import triage_turn_for_llm, with_pasted_lines
from assistant.lc_tools import answer_for_llm
from assistant.prompts import SYSTEM_CHAT, SYSTEM_TRIAGE, chat_context, triage_user_message
from assistant.redaction import RedactionPolicy, redact
from detectors.sequences import LabelledSequence
from detectors.synthetic import CATEGORIES, generate
from finetune import targets
from finetune.examples import Expected, SFTExample, Turn, stable_id
from knowledge.records import NewIncident
from tools.answer import Answer
from tools.context import Caller, ToolContext
from tools.registry import REGISTRY

ANOMALY_CATEGORIES = [c for c in CATEGORIES if c != "normal"]
_RESOLUTIONS = {
    "service_cascade_failure": "rolled back the upstream deploy and the callers recovered",
    "authentication_failure": "rotated the expired signing certificate on the identity provider",
    "resource_exhaustion": "raised the connection-pool limit and fixed the leaking worker",
    "network_timeout": "replaced a flapping load-balancer node on the database path",
    "data_corruption": "restored the partition from the replica and fixed the writer",
}
ENGINEER = Caller(user="finetune-data", source="cli", authenticated=True)


@dataclass(frozen=True)
class DataPlan:
    """How many examples of each kind to build."""

    history: int = 300  # labelled synthetic incidents stored before any query
    triage: int = 280
    inconclusive_share: float = 0.15  # of triage examples, shown as inconclusive
    chat: int = 240
    tool_answer_share: float = 0.15  # of chat examples, carried on to the answer after the tool result
    seed_format: int = 100
    seed: int = 0


def history_incidents(plan: DataPlan) -> list[NewIncident]:
    items = []
    for seq in generate(plan.history, seed=plan.seed + 101):
        category = seq.effective_category
        items.append(
            NewIncident(
                lines=list(seq.lines),
                label=seq.label,
                category=category,
                source="import",
                source_id=seq.source_id,
                resolution=_RESOLUTIONS.get(category or "") if seq.label == 1 else None,
            )
        )
    return items


def build(
    ctx: ToolContext, plan: DataPlan, on_example: Callable[[], None] | None = None
) -> Iterator[SFTExample]:
    """Every example of the plan, from tools run against `ctx` (whose store already holds the history)."""
    rng = random.Random(plan.seed)
    queries = list(generate(plan.triage + plan.chat, seed=plan.seed + 202))
    others = list(generate(plan.chat, seed=plan.seed + 303))
    for i, seq in enumerate(queries):
        answer = _triage(ctx, list(seq.lines))
        if i < plan.triage:
            if rng.random() < plan.inconclusive_share:
                answer = _as_inconclusive(answer, rng)
            yield triage_example(answer, key=("triage", i))
        else:
            yield chat_example(ctx, answer, others[i - plan.triage], rng, ("chat", i), plan.tool_answer_share)
        if on_example:
            on_example()


def triage_example(answer: Answer, key: object) -> SFTExample:
    user = redact(triage_user_message(answer), RedactionPolicy())
    return SFTExample(
        id=stable_id(*_as_tuple(key)),
        kind="triage",
        turns=[
            Turn(role="system", content=SYSTEM_TRIAGE),
            Turn(role="user", content=user),
            Turn(role="assistant", content=targets.triage_target(answer, key)),
        ],
        expected=Expected(
            status=targets.expected_status(answer),
            category=targets.expected_category(answer),
            evidence=[e.index + 1 for e in answer.evidence[:3]],
        ),
    )


def _as_tuple(key: object) -> tuple[object, ...]:
    return key if isinstance(key, tuple) else (key,)


def _triage(ctx: ToolContext, lines: list[str]) -> Answer:
    # Remembered, as the CLI and Slack do by default, so the thread's incident id can be used.
    return REGISTRY["triage"].call(ctx, {"lines": lines, "remember": True}, ENGINEER)


def _as_inconclusive(answer: Answer, rng: random.Random) -> Answer:
    """The same answer as the inconclusive rule would give it: a probability at the threshold
    and nothing similar confirmed."""
    threshold = answer.threshold if answer.threshold is not None else 0.5
    p = min(0.99, max(0.01, threshold + rng.uniform(-0.06, 0.06)))
    return answer.model_copy(
        update={
            "status": "inconclusive",
            "reason": "the detector is unsure and no similar past incident is known",
            "probability": p,
            "detector_probability": p,
            "similar": [],
        }
    )


def _thread_history(answer: Answer) -> list[Turn]:
    """The turns a thread holds after a triage, as the chat model is shown them (`assistant.graph`)."""
    return [
        Turn(role="user", content=f"Triage these {answer.n_lines or len(answer.evidence)} log lines."),
        Turn(role="assistant", content=triage_turn_for_llm(answer)),
    ]


def chat_example(
    ctx: ToolContext,
    answer: Answer,
    other: LabelledSequence,
    rng: random.Random,
    key: object,
    answer_share: float = 0.15,
) -> SFTExample:
    """One chat turn after a triage: a question, and the tool call (or direct answer) it needs.
    A third of them go one step further and learn the final answer from the real tool result."""
    system = Turn(
        role="system", content=redact(f"{SYSTEM_CHAT}\n\n{chat_context(answer)}", RedactionPolicy())
    )
    turns = [system, *_thread_history(answer)]
    if rng.random() < 0.25:  # a follow-up: an earlier question in the same thread
        turns += [
            Turn(role="user", content=pick_question("why", key)),
            Turn(role="assistant", content=targets.why_answer(answer, key)),
        ]
    question, call = _question(answer, other, rng, key)
    turns.append(Turn(role="user", content=question))
    if call is None:
        turns.append(Turn(role="assistant", content=targets.why_answer(answer, key)))
        return SFTExample(
            id=stable_id(*_as_tuple(key)),
            kind="chat",
            turns=turns,
            tools=True,
            expected=Expected(tool_call=None, expects_tool_decision=True),
        )
    turns.append(Turn(role="assistant", tool_calls=[call]))
    expected = Expected(tool_call=call, expects_tool_decision=True)
    if rng.random() < answer_share and call["name"] != "get_incident":  # incident bodies are long; skip them
        arguments = call["arguments"]
        if arguments.get("pasted"):  # as the chat graph runs it: on the lines the user pasted
            arguments = with_pasted_lines(arguments, question) or {}
        result = REGISTRY[call["name"]].call(ctx, arguments, ENGINEER)
        turns += [
            Turn(role="tool", content=answer_for_llm(result)),
            Turn(role="assistant", content=_final_answer(call, answer, result)),
        ]
        return SFTExample(
            id=stable_id(*_as_tuple(key), "answer"), kind="tool_answer", turns=turns, tools=True
        )
    return SFTExample(
        id=stable_id(*_as_tuple(key)), kind="tool_call", turns=turns, tools=True, expected=expected
    )


_QUESTIONS: dict[str, list[str]] = {
    "why": [
        "why?",
        "Why is this anomalous?",
        "what should I check first?",
        "explain this please",
        "what does this mean?",
    ],
    "similar": [
        "show me the most similar one",
        "open the closest past incident",
        "what happened last time?",
        "details of the top match?",
    ],
    "seen": [
        "have we seen this before?",
        "any similar incidents?",
        "has this happened before?",
        "find past incidents like this",
    ],
    "seen_category": [
        "any past {category} incidents like this?",
        "show similar {category} incidents",
        "similar incidents, {category} only?",
    ],
    "wrong": [
        "mark this as a false positive",
        "this is wrong, it is expected behaviour",
        "false alarm, this is normal",
        "that verdict is incorrect",
    ],
    "wrong_category": ["wrong, this is actually {category}", "incorrect: it was {category}"],
    "right": ["confirmed, that's right", "correct, this was a real incident", "yes, mark this as correct"],
    "score": [
        "is this anomalous?\n```\n{lines}\n```",
        "score these lines:\n```\n{lines}\n```",
        "what about these?\n```\n{lines}\n```",
    ],
}


def pick_question(kind: str, key: object, **fields: str) -> str:
    return targets.pick(_QUESTIONS[kind], key, kind).format(**fields)


def _question(
    answer: Answer, other: LabelledSequence, rng: random.Random, key: object
) -> tuple[str, dict[str, Any] | None]:
    iid = answer.incident_id or ""
    kinds = [
        "why",
        "why",
        "seen",
        "seen_category",
        "seen_category",
        "wrong",
        "wrong_category",
        "right",
        "score",
    ]
    if answer.similar:
        kinds += ["similar", "similar"]
    kind = rng.choice(kinds)
    if kind == "why":
        return pick_question("why", key), None
    if kind == "similar":
        return pick_question("similar", key), {
            "name": "get_incident",
            "arguments": {"incident_id": answer.similar[0].id},
        }
    if kind == "seen":
        return pick_question("seen", key), {
            "name": "search_similar_incidents",
            "arguments": {"incident_id": iid},
        }
    if kind == "seen_category":
        category = rng.choice(ANOMALY_CATEGORIES)
        return pick_question("seen_category", key, category=category), {
            "name": "search_similar_incidents",
            "arguments": {"incident_id": iid, "category": category},
        }
    if kind == "wrong":
        return pick_question("wrong", key), {
            "name": "record_feedback",
            "arguments": {"incident_id": iid, "correct": False},
        }
    if kind == "wrong_category":
        category = rng.choice([c for c in CATEGORIES if c != answer.category])
        return pick_question("wrong_category", key, category=category), {
            "name": "record_feedback",
            "arguments": {"incident_id": iid, "correct": False, "category": category},
        }
    if kind == "right":
        return pick_question("right", key), {
            "name": "record_feedback",
            "arguments": {"incident_id": iid, "correct": True},
        }
    start = rng.randrange(max(1, len(other.lines) - 4))
    lines = list(other.lines[start : start + rng.randint(3, 4)])
    return pick_question("score", key, lines="\n".join(lines)), {
        "name": "score_logs",
        "arguments": {"pasted": True},  # the chat graph hands the detector the user's own lines
    }


def _final_answer(call: dict[str, Any], answer: Answer, result: Answer) -> str:
    name, args = call["name"], call["arguments"]
    if name == "record_feedback":
        return targets.feedback_answer(answer, bool(args["correct"]), args.get("category"))
    if name == "search_similar_incidents":
        return targets.search_answer(result)
    return targets.score_answer(result)


def seed_format_records(plan: DataPlan) -> Iterator[dict[str, Any]]:
    """Records in the seed project's unified format: prompt, input (the logs), output (status, category)."""
    prompt = "Classify this log sequence as Normal or Abnormal and name the anomaly category."
    for seq in generate(plan.seed_format, seed=plan.seed + 404):
        status = "Abnormal" if seq.label == 1 else "Normal"
        yield {
            "prompt": prompt,
            "input": "\n".join(seq.lines),
            "output": {"status": status, "category": seq.effective_category or "normal"},
        }
