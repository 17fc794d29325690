"""Feedback from Slack: reactions and buttons on the bot's messages become the incident's feedback.

A reaction or a button names a message (channel, ts); `SlackState` maps it to its incident. The
feedback itself goes through the registry's `record_feedback` tool, and a removed reaction through
the store's `retract_feedback`, so it is idempotent per user, audited, and reversible exactly as
from the CLI or the API. Only the user's own action (a reaction, a button, a modal) writes here.

A user's reactions on one message resolve to one opinion: the latest feedback reaction still on
it. Removing one reaction falls back to the user's remaining ones, and removing the last one takes
the user's feedback back.
"""

from __future__ import annotations

from dataclasses import dataclass

from integrations.slack_config import ReactionMap, reaction_name
from integrations.slack_state import AnswerRef, SlackState
from knowledge.records import FeedbackReceipt
from tools import REGISTRY, Caller, ToolContext

LABELS = {1: "anomalous", 0: "normal", None: "unconfirmed"}


@dataclass(frozen=True)
class Confirmation:
    """The ephemeral message that confirms a piece of feedback to the user who gave it."""

    channel: str
    user: str
    thread_ts: str | None
    text: str
    receipt: FeedbackReceipt


def slack_caller(user: str) -> Caller:
    """A Slack user, authenticated because the request carrying the id was verified (signature or socket)."""
    return Caller(user=user, source="slack", authenticated=True)


class SlackFeedback:
    def __init__(self, tools: ToolContext, state: SlackState, reactions: ReactionMap) -> None:
        self.tools = tools
        self.state = state
        self.reactions = reactions

    def reaction_added(self, channel: str, ts: str, user: str, reaction: str) -> Confirmation | None:
        """None when the reaction is not feedback or the message is not one of the bot's answers."""
        correct = self.reactions.polarity(reaction)
        ref = self.state.answer(channel, ts)
        if correct is None or ref is None:
            return None
        self.state.add_reaction(channel, ts, user, reaction_name(reaction), correct)
        opinion = self.state.reaction_opinion(channel, ts, user)
        return self._record(ref, user, bool(opinion))

    def reaction_removed(self, channel: str, ts: str, user: str, reaction: str) -> Confirmation | None:
        if self.reactions.polarity(reaction) is None:
            return None
        ref = self.state.answer(channel, ts)
        if ref is None:
            return None
        self.state.remove_reaction(channel, ts, user, reaction_name(reaction))
        opinion = self.state.reaction_opinion(channel, ts, user)
        if opinion is not None:  # another feedback reaction of the user's is still there
            return self._record(ref, user, opinion)
        if self.tools.store is None:
            return None
        receipt = self.tools.store.retract_feedback(ref.incident_id, user, "slack")
        if receipt.changed:
            text = (
                f"Took back your feedback on incident `{ref.incident_id}`; its label is now "
                f"{LABELS.get(receipt.label, receipt.label)}."
            )
        else:
            text = f"You had no feedback on incident `{ref.incident_id}` to take back."
        return Confirmation(ref.channel, user, ref.root_ts, text, receipt)

    def correct(self, channel: str, ts: str, user: str) -> Confirmation | None:
        """The "Correct" button. None when the message is not one of the bot's answers."""
        ref = self.state.answer(channel, ts)
        return None if ref is None else self._record(ref, user, True)

    def wrong(self, channel: str, ts: str, user: str, category: str | None, note: str) -> Confirmation | None:
        """A submitted "Wrong" modal: the right category (optional) and a note.

        The category says which part was wrong. "normal" on an anomalous verdict, or an anomaly
        category on a normal one, says the verdict was wrong; an anomaly category on an anomalous
        verdict says only the category was, so the verdict is recorded as correct with the category.
        """
        ref = self.state.answer(channel, ts)
        if ref is None:
            return None
        correct = False
        if category:
            shown = REGISTRY["get_incident"].call(
                self.tools, {"incident_id": ref.incident_id}, slack_caller(user)
            )
            correct = shown.verdict is not None and (shown.verdict == "anomalous") == (category != "normal")
        return self._record(ref, user, correct, category, note)

    def _record(
        self, ref: AnswerRef, user: str, correct: bool, category: str | None = None, note: str = ""
    ) -> Confirmation:
        arguments: dict[str, object] = {"incident_id": ref.incident_id, "correct": correct, "note": note}
        if category:
            arguments["category"] = category
        answer = REGISTRY["record_feedback"].call(self.tools, arguments, slack_caller(user))
        receipt = answer.feedback
        assert receipt is not None  # record_feedback always returns its receipt
        said = "correct" if correct else "wrong"
        if category:
            said = f"{said}, and it is {category}"
        if receipt.changed:
            text = (
                f"Thanks, recorded: the verdict on incident `{ref.incident_id}` was {said}. Its label is "
                f"now {LABELS.get(receipt.label, receipt.label)}, and similar logs are judged with it from now on."
            )
        else:
            text = f"Already recorded: you said the verdict on incident `{ref.incident_id}` was {said}."
        return Confirmation(ref.channel, user, ref.root_ts, text, receipt)
