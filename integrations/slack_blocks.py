"""Block Kit for the Slack app: an `Answer`, an alert group's notice, and the "Wrong" modal.

Everything shown comes from the tool outputs. Log lines and LLM text are escaped (Slack's mrkdwn
gives &, < and > a meaning) and clipped to Block Kit's limits, so no log line can inject a mention,
a link or a broken message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from integrations.notifier import IncidentNotice
from knowledge.records import SimilarIncident
from tools import Answer

Block = dict[str, Any]
Links = Callable[[str], str | None]

CORRECT_ACTION = "logtriage_correct"
WRONG_ACTION = "logtriage_wrong"
WRONG_MODAL = "logtriage_wrong"
CATEGORY_BLOCK = "category"
NOTE_BLOCK = "note"
MAX_TEXT = 2900  # a section's text is at most 3000 characters
MAX_LINE = 240
EVIDENCE_SHOWN = 3
SIMILAR_SHOWN = 3

_LABEL = {1: "confirmed anomalous", 0: "confirmed normal", None: "unconfirmed"}


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def code(lines: Sequence[str]) -> str:
    """Lines as one code block that no line can close early."""
    body = "\n".join(clip(escape(line.replace("```", "'''")), MAX_LINE) for line in lines)
    return f"```{clip(body, MAX_TEXT - 6)}```"


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_TEXT)}}


def context(*parts: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(p, MAX_TEXT)} for p in parts]}


def incident_ref(incident_id: str, links: Links | None) -> str:
    link = links(incident_id) if links else None
    return f"<{link}|`{incident_id[:8]}`>" if link else f"`{incident_id}`"


def feedback_buttons(incident_id: str) -> Block:
    return {
        "type": "actions",
        "block_id": "feedback",
        "elements": [
            {
                "type": "button",
                "action_id": CORRECT_ACTION,
                "style": "primary",
                "text": {"type": "plain_text", "text": "Correct"},
                "value": incident_id,
            },
            {
                "type": "button",
                "action_id": WRONG_ACTION,
                "style": "danger",
                "text": {"type": "plain_text", "text": "Wrong"},
                "value": incident_id,
            },
        ],
    }


def _headline(answer: Answer) -> str:
    if answer.verdict is None or answer.probability is None:
        return f"*{answer.tool}*: {answer.status}"
    icon = ":rotating_light:" if answer.verdict == "anomalous" else ":white_check_mark:"
    if answer.status == "inconclusive":
        icon = ":grey_question:"
    text = f"{icon} *{answer.verdict.upper()}*  confidence p={answer.probability:.2f}"
    if answer.threshold is not None:
        text += f" (threshold {answer.threshold:.2f})"
    if answer.verdict == "anomalous" and answer.category:
        text += f"  ·  *{escape(answer.category)}*"
    if answer.status != "ok":
        text += f"  ·  _{answer.status}_"
    return text


def _basis(answer: Answer) -> str:
    decided = {
        "detector": "decided by the detector",
        "blend": f"detector p={answer.detector_probability or 0:.2f}, moved by past incidents",
        "memory": f"decided by past incidents (detector p={answer.detector_probability or 0:.2f})",
    }.get(answer.decided_by or "", "")
    parts = [decided, f"{answer.n_lines} lines" if answer.n_lines else "", answer.model_version or ""]
    text = "  ·  ".join(p for p in parts if p)
    if answer.reason and answer.status != "ok":
        text += f"\n{escape(answer.reason)}"
    return text or answer.status


def _similar_line(hit: SimilarIncident, links: Links | None) -> str:
    label = _LABEL.get(hit.label, "unconfirmed")
    if hit.label == 1 and hit.category:
        label += f", {escape(hit.category)}"
    text = f"• {incident_ref(hit.id, links)}  {hit.similarity:.2f}  {label}  {hit.created_at:%Y-%m-%d}"
    if hit.duplicates:
        text += f"  (+{hit.duplicates} identical)"
    if hit.resolution:
        text += f"\n    resolved: {escape(clip(hit.resolution, 160))}"
    if hit.link:
        text += f"  <{escape(hit.link)}|link>"
    return text


def answer_blocks(
    answer: Answer,
    *,
    explanation: str | None = None,
    pending: bool = False,
    links: Links | None = None,
) -> list[Block]:
    """The answer to some logs: verdict, confidence, top evidence, similar incidents, feedback buttons.

    `pending` shows that the explanation is still being written; otherwise `explanation` (the
    LLM's text, None when there is none) is shown below the facts.
    """
    blocks = [section(_headline(answer)), context(_basis(answer))]
    cited = [e for e in answer.evidence if e.contribution > 0][:EVIDENCE_SHOWN] or answer.evidence[:1]
    if cited:
        lines = [f"[L{e.index + 1}] {' '.join(e.line.split())}" for e in cited]
        blocks.append(section(f"*Lines that drove it*\n{code(lines)}"))
    if answer.similar:
        seen = "\n".join(_similar_line(hit, links) for hit in answer.similar[:SIMILAR_SHOWN])
        blocks.append(section(f"*Seen before*\n{seen}"))
    else:
        blocks.append(context("No similar past incident is known."))
    if pending:
        blocks.append(context(":hourglass_flowing_sand: explanation on its way…"))
    elif explanation:
        blocks.append(section(escape(explanation)))
    if answer.incident_id:
        blocks.append(feedback_buttons(answer.incident_id))
        blocks.append(
            context(
                f"incident {incident_ref(answer.incident_id, links)}  ·  react :white_check_mark: or :x: "
                "to teach logtriage  ·  mention me in this thread to ask a follow-up"
            )
        )
    return blocks


def notice_blocks(notice: IncidentNotice, *, links: Links | None = None) -> list[Block]:
    """An alert group's thread head: alerts, status, verdict, explanation; updated in place."""
    names = ", ".join(escape(n) for n in notice.alert_names) or "alert"
    if notice.status == "resolved":
        head = f":large_green_circle: *RESOLVED*  {names}"
    elif notice.verdict == "anomalous":
        head = f":rotating_light: *FIRING*  {names}"
    else:
        head = f":large_orange_circle: *FIRING*  {names}"
    blocks = [section(head)]
    facts = []
    if notice.verdict is not None:
        probability = "" if notice.probability is None else f" p={notice.probability:.2f}"
        facts.append(f"*{notice.verdict.upper()}*{probability}")
    if notice.category and notice.verdict == "anomalous":
        facts.append(f"*{escape(notice.category)}*")
    facts.append(f"triage: {escape(notice.triage_status)}")
    blocks.append(section("  ·  ".join(facts)))
    if notice.explanation:
        blocks.append(section(escape(notice.explanation)))
    if notice.similar_incident_ids:
        seen = ", ".join(incident_ref(i, links) for i in notice.similar_incident_ids[:SIMILAR_SHOWN])
        blocks.append(context(f"similar past incidents: {seen}"))
    tail = [f"incident {incident_ref(notice.incident_id, links)}" if notice.incident_id else "no incident"]
    if notice.group_key:
        tail.append(f"group `{escape(clip(notice.group_key, 120))}`")
    if notice.link:
        tail.append(f"<{escape(notice.link)}|source>")
    if notice.incident_id and notice.status == "firing":
        blocks.append(feedback_buttons(notice.incident_id))
        tail.append("react :white_check_mark: or :x: to teach logtriage")
    blocks.append(context("  ·  ".join(tail)))
    return blocks


def wrong_modal(categories: Sequence[str], metadata: dict[str, str]) -> dict[str, Any]:
    """The modal the "Wrong" button opens: the right category and a note."""
    options = [{"text": {"type": "plain_text", "text": c}, "value": c} for c in categories][:100]
    return {
        "type": "modal",
        "callback_id": WRONG_MODAL,
        "private_metadata": json.dumps(metadata),
        "title": {"type": "plain_text", "text": "What was it?"},
        "submit": {"type": "plain_text", "text": "Record"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": CATEGORY_BLOCK,
                "optional": True,
                "label": {"type": "plain_text", "text": "The right category"},
                "element": {"type": "static_select", "action_id": CATEGORY_BLOCK, "options": options},
            },
            {
                "type": "input",
                "block_id": NOTE_BLOCK,
                "optional": True,
                "label": {"type": "plain_text", "text": "A note (what it really was, how it was fixed)"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": NOTE_BLOCK,
                    "multiline": True,
                    "max_length": 1000,
                },
            },
        ],
    }


def modal_values(view: dict[str, Any]) -> tuple[str | None, str]:
    """(category, note) from a submitted "Wrong" modal."""
    values = view.get("state", {}).get("values", {})
    selected = values.get(CATEGORY_BLOCK, {}).get(CATEGORY_BLOCK, {}).get("selected_option") or {}
    note = values.get(NOTE_BLOCK, {}).get(NOTE_BLOCK, {}).get("value") or ""
    return (selected.get("value") or None), note.strip()
