"""How engineers' votes turn into an incident's confirmed label and category.

The rule, in order:
1. No votes: the label and category from the labelled import (if any) stand.
2. Otherwise the majority label of the current votes wins; a tie goes to the most recent vote,
   because the later engineer usually knows more (the incident has moved on).
3. The category is the newest category given by a vote that agrees with the winning label; else
   `normal` for label 0; else the incident's previous anomaly category, or `anomaly`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from detectors.results import Verdict
from detectors.sequences import NORMAL_CATEGORY, UNSPECIFIED_ANOMALY
from knowledge.records import FeedbackVote, Incident


def label_from_feedback(judged: Verdict, correct: bool) -> int:
    """The label a user asserts by calling `judged` correct or wrong."""
    says_anomalous = judged == "anomalous"
    return int(says_anomalous if correct else not says_anomalous)


def apply_votes(incident: Incident, votes: list[FeedbackVote], seq: int, now: datetime) -> Incident:
    """The incident with its label, category and feedback recomputed from `votes` (oldest first)."""
    common: dict[str, object] = {"feedback": votes, "feedback_seq": seq, "updated_at": now}
    if not votes:
        return incident.model_copy(
            update=common
            | {
                "label": incident.imported_label,
                "label_origin": "import" if incident.imported_label is not None else None,
                "category": incident.imported_category,
            }
        )
    anomalous = sum(v.label for v in votes)
    normal = len(votes) - anomalous
    label = votes[-1].label if anomalous == normal else int(anomalous > normal)
    category = next((v.category for v in reversed(votes) if v.label == label and v.category), None)
    if category is None:
        if label == 0:
            category = NORMAL_CATEGORY
        elif incident.category and incident.category != NORMAL_CATEGORY:
            category = incident.category
        else:
            category = UNSPECIFIED_ANOMALY
    return incident.model_copy(
        update=common | {"label": label, "label_origin": "feedback", "category": category}
    )


def merge_existing(new: Incident, old: Incident) -> Incident:
    """Re-importing keeps what people added: feedback, the confirmed label, first-seen time."""
    keep: dict[str, Any] = {
        "created_at": old.created_at,
        "feedback": old.feedback,
        "feedback_seq": old.feedback_seq,
        "resolution": new.resolution or old.resolution,
        "link": new.link or old.link,
        "verdict": new.verdict or old.verdict,
        "probability": new.probability if new.probability is not None else old.probability,
    }
    if old.label_origin == "feedback":
        keep |= {"label": old.label, "label_origin": "feedback", "category": old.category}
    return new.model_copy(update=keep)
