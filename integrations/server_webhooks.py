"""Alert webhooks: validate, enqueue durably, answer 202 with job ids. Workers triage later.

Each alert is queued once per (fingerprint, status) within the dedupe window, so Alertmanager's
repeats and retries are triaged once; a resolved alert is its own job and updates the incident.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.params import Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from integrations.alert_pipeline import ALERT_JOB
from integrations.alert_queue import NewJob, QueueFullError
from integrations.alerts import (
    AlertEvent,
    AlertmanagerPayload,
    GenericPayload,
    events_from_alertmanager,
    events_from_generic,
    events_from_grafana,
)
from integrations.grafana_signature import SignatureError, verify_grafana_signature
from integrations.server_deps import ServerDeps
from integrations.settings import Settings


class Accepted(BaseModel):
    accepted: int = Field(description="alerts queued for triage by this request")
    duplicates: int = Field(description="alerts already queued within the dedupe window (triaged once)")
    job_ids: list[str] = Field(description="one job per alert, in payload order")
    queued: int = Field(description="alert jobs waiting after this request")


_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "body is not JSON"},
    401: {"description": "missing or invalid bearer token, or a bad Grafana signature"},
    413: {"description": "body too large"},
    422: {"description": "not a valid payload of this webhook"},
    503: {"description": "the alert queue is full; retry after the Retry-After seconds"},
}


def webhook_router(settings: Settings, auth: Depends) -> APIRouter:
    router = APIRouter(prefix="/webhooks", dependencies=[auth])
    grafana_secret = (
        settings.grafana_webhook_secret.get_secret_value() if settings.grafana_webhook_secret else None
    )

    @router.post("/alertmanager", status_code=202, response_model=Accepted, responses=_RESPONSES)
    async def alertmanager(
        request: Request,
        payload: AlertmanagerPayload = Body(description="Alertmanager webhook payload, version 4"),  # noqa: B008
    ) -> Accepted | JSONResponse:
        """Alertmanager's webhook receiver (`webhook_configs`, payload version 4)."""
        return await run_in_threadpool(
            _accept, request, "alertmanager", lambda: events_from_alertmanager(payload)
        )

    @router.post("/grafana", status_code=202, response_model=Accepted, responses=_RESPONSES)
    async def grafana(request: Request) -> Accepted | JSONResponse:
        """Grafana unified alerting's webhook contact point (its JSON body, read raw for the HMAC).

        With LOGTRIAGE_GRAFANA_WEBHOOK_SECRET set, the `X-Grafana-Alerting-Signature` HMAC must match."""
        body = await request.body()
        if grafana_secret is not None:
            try:
                verify_grafana_signature(body, request.headers, grafana_secret)
            except SignatureError as err:
                return JSONResponse({"detail": f"Grafana signature rejected: {err}"}, status_code=401)
        try:
            raw = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            return JSONResponse({"detail": f"body is not JSON: {err}"}, status_code=400)
        return await run_in_threadpool(
            _accept, request, "grafana", lambda: events_from_grafana(_mapping(raw))
        )

    @router.post("/generic", status_code=202, response_model=Accepted, responses=_RESPONSES)
    async def generic(
        request: Request,
        payload: GenericPayload = Body(description="alerts from scripts or other tools"),  # noqa: B008
    ) -> Accepted | JSONResponse:
        """Any other alert source: a list of alerts with labels, annotations and, optionally, the logs."""
        return await run_in_threadpool(_accept, request, "generic", lambda: events_from_generic(payload))

    return router


def _mapping(raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError("the payload must be a JSON object")
    return raw


def _accept(
    request: Request, webhook: str, normalise: Callable[[], list[AlertEvent]]
) -> Accepted | JSONResponse:
    deps: ServerDeps = request.app.state.deps
    try:
        events = normalise()
    except (ValidationError, ValueError) as err:
        deps.metrics.alerts.labels(webhook, "invalid").inc()
        return JSONResponse({"detail": f"not a valid {webhook} payload: {err}"}, status_code=422)
    jobs = [
        NewJob(
            ALERT_JOB,
            {"event": event.model_dump(mode="json")},
            dedupe_key=f"{event.fingerprint}:{event.status}",
            group_key=event.group_key,
        )
        for event in events
    ]
    try:
        results = deps.queue.enqueue_many(jobs)
    except QueueFullError as err:
        deps.metrics.alerts.labels(webhook, "queue_full").inc()
        return JSONResponse({"detail": str(err)}, status_code=503, headers={"Retry-After": "5"})
    duplicates = sum(r.duplicate for r in results)
    deps.metrics.alerts.labels(webhook, "accepted").inc(len(results) - duplicates)
    deps.metrics.alerts.labels(webhook, "duplicate").inc(duplicates)
    return Accepted(
        accepted=len(results) - duplicates,
        duplicates=duplicates,
        job_ids=[r.job_id for r in results],
        queued=results[-1].queued if results else deps.queue.depth(),
    )
