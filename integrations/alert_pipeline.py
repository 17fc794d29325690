"""What a worker does with one queued alert: fetch its logs, triage, store the incident, notify.

Alerts of one group (Alertmanager's groupKey) become one incident: the first firing alert with
logs stores it, later ones report against it, and a resolved alert records the resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from integrations.alert_queue import AlertQueue, Job
from integrations.alert_workers import RetryableJobError
from integrations.alerts import AlertEvent
from integrations.log_sources import LogSource, LogSourceError
from integrations.notifier import IncidentNotice, Notifier, NotifierError
from integrations.server_metrics import ServerMetrics
from knowledge.backend import BackendError
from knowledge.records import NewIncident, utc_now
from knowledge.store import IncidentStore
from tools import Answer, ToolContext, ToolInputError, prepare_lines
from tools.functions import explain
from tools.grounding import assess, verdict_answer

ALERT_JOB = "alert"


@dataclass(frozen=True)
class AlertPipeline:
    tools: ToolContext  # its explainer is None when alert explanations are switched off
    store: IncidentStore
    queue: AlertQueue
    logs: LogSource
    notifier: Notifier
    metrics: ServerMetrics

    def handle(self, job: Job) -> dict[str, Any]:
        event = AlertEvent.model_validate(job.payload["event"])
        if event.status == "resolved":
            return self._resolve(event)
        try:
            raw = self.logs.fetch(event)
        except LogSourceError as err:
            raise RetryableJobError(str(err)) from err
        if not raw:
            notice = self._notice(
                event, None, None, "no logs found for this alert (annotations, file glob, Loki)"
            )
            self._notify(notice)
            return {"status": "no_logs", "incident_id": notice.incident_id}
        try:
            lines = prepare_lines(raw, self.tools.limits)
        except ToolInputError as err:
            return {"status": "bad_logs", "error": str(err)}
        answer = verdict_answer(self.tools, "triage", lines, assess(self.tools, lines, use_memory=True))
        incident_id = self._incident_for(event, lines, answer)
        answer = explain(self.tools, answer.model_copy(update={"incident_id": incident_id}), lines)
        self.metrics.verdicts.labels("webhook", str(answer.verdict), answer.status).inc()
        self._notify(self._notice(event, incident_id, answer, None))
        return {"status": answer.status, "incident_id": incident_id, "verdict": answer.verdict}

    def _incident_for(self, event: AlertEvent, lines: list[str], answer: Answer) -> str:
        known = self.queue.group_incident(event.group_key)
        if known is not None:
            return known
        new = NewIncident(
            lines=lines,
            verdict=answer.verdict,
            probability=answer.probability,
            source="webhook",
            source_id=event.group_key,
            alert_labels=event.labels,
            fingerprint=event.fingerprint,
            link=event.generator_url,
        )
        try:
            (incident_id,) = self.store.add([new])
        except BackendError as err:
            raise RetryableJobError(f"storing the incident failed: {err}") from err
        self.queue.set_group_incident(event.group_key, incident_id)
        return incident_id

    def _resolve(self, event: AlertEvent) -> dict[str, Any]:
        incident_id = self.queue.group_incident(event.group_key)
        if incident_id is not None:
            when = (event.ends_at or utc_now()).isoformat()
            try:
                self.store.annotate(incident_id, resolution=f"alert {event.name} resolved at {when}")
            except BackendError as err:
                raise RetryableJobError(f"recording the resolution failed: {err}") from err
        self._notify(self._notice(event, incident_id, None, None))
        return {"status": "resolved", "incident_id": incident_id}

    def _notice(
        self, event: AlertEvent, incident_id: str | None, answer: Answer | None, problem: str | None
    ) -> IncidentNotice:
        return IncidentNotice(
            incident_id=incident_id,
            group_key=event.group_key,
            status=event.status,
            alert_names=[event.name],
            verdict=answer.verdict if answer else None,
            probability=answer.probability if answer else None,
            category=answer.category if answer else None,
            triage_status=answer.status if answer else ("inconclusive" if problem else "ok"),
            explanation=answer.explanation if answer else problem,
            similar_incident_ids=[s.id for s in answer.similar] if answer else [],
            link=event.generator_url,
        )

    def _notify(self, notice: IncidentNotice) -> None:
        try:
            self.notifier.notify(notice)
        except NotifierError as err:
            raise RetryableJobError(f"notifying failed: {err}") from err
