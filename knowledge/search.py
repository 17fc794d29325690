"""Search helpers: turning an `IncidentFilter` into engine filters, and collapsing hits."""

from __future__ import annotations

from datetime import datetime

from knowledge.backend import Filters, FilterValue, Range, VectorHit
from knowledge.records import IncidentFilter, SimilarIncident

PREVIEW_LINES = 5


def backend_filters(filters: IncidentFilter | None, vector_space: str) -> Filters:
    """Engine filters for `filters`, always restricted to vectors from `vector_space`.

    Incidents embedded by another model are invisible rather than wrongly compared; re-index
    them to bring them back.
    """
    out: dict[str, FilterValue] = {"vector_space": vector_space}
    if filters is None:
        return out
    if filters.category is not None:
        out["category"] = filters.category
    if filters.source is not None:
        out["source"] = filters.source
    if filters.label is not None:
        out["label"] = filters.label
    elif filters.confirmed_only:
        out["label"] = [0, 1]
    if filters.fingerprint is not None:
        out["fingerprint"] = filters.fingerprint
    if filters.alert_labels:
        # Every pair must match; one key per pair keeps it an AND of single matches.
        pairs = sorted(f"{k}={v}" for k, v in filters.alert_labels.items())
        if len(pairs) == 1:
            out["label_pairs"] = pairs[0]
        else:
            raise ValueError("filter on at most one alert label at a time")
    if filters.since is not None:
        out["created_ts"] = Range(gte=filters.since.timestamp())
    return out


def collapse_hits(hits: list[VectorHit], k: int) -> list[SimilarIncident]:
    """The best `k` distinct patterns: hits sharing a template sequence fold into the best one.

    Folded hits are counted, with their confirmed labels, so a pattern seen 50 times reads as one
    row that says so, instead of 50 rows that push everything else off the list.
    """
    groups: dict[str, SimilarIncident] = {}
    for hit in sorted(hits, key=lambda h: -h.score):
        payload = hit.payload
        key = payload.get("template_hash") or hit.id
        label = payload.get("label")
        group = groups.get(key)
        if group is None:
            if len(groups) >= k:
                continue
            group = groups[key] = SimilarIncident(
                id=hit.id,
                similarity=round(float(hit.score), 6),
                label=label,
                category=payload.get("category"),
                verdict=payload.get("verdict"),
                resolution=payload.get("resolution"),
                link=payload.get("link"),
                created_at=datetime.fromisoformat(payload["created_at"]),
                source=payload["source"],
                preview=list(payload.get("lines", []))[:PREVIEW_LINES],
            )
        else:
            group.duplicates += 1
        if label == 1:
            group.labelled_anomalous += 1
        elif label == 0:
            group.labelled_normal += 1
    return list(groups.values())
