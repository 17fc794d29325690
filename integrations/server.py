"""The HTTP server (`logtriage serve`): the API, the alert webhooks, health and metrics.

One FastAPI app; the long-lived dependencies (detector, incident store, assistant, alert queue and
workers) are built once in its lifespan and reached through `app.state.deps`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from integrations.mcp_http import mount_mcp
from integrations.server_deps import ServerDeps, build_server_deps
from integrations.server_metrics import RequestMetrics, ServerMetrics
from integrations.server_security import BearerAuth, BodyLimit, api_tokens
from integrations.settings import Settings
from integrations.slack_http import mount_slack
from tools import REGISTRY, Answer, Caller, ToolFailedError, ToolInputError, UnknownIncidentError
from tools.inputs import RecordFeedbackInput

API_DESCRIPTION = (
    "Is this log anomalous, have we seen it before, what is it? The logtriage API: a learned log "
    "anomaly detector, incident memory, and alert webhooks that triage alerts asynchronously."
)


class DetectRequest(BaseModel):
    """The seed project's detection request."""

    model_config = ConfigDict(extra="forbid")
    logs: list[str] = Field(description="the log lines, oldest first", min_length=1)


class TriageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lines: list[str] = Field(description="the log lines, oldest first", min_length=1)
    thread_id: str | None = Field(
        default=None, max_length=100, description="continue this assistant thread; default: a new one"
    )
    remember: bool = Field(default=False, description="store the logs as an incident for later feedback")


class TriageResponse(Answer):
    thread_id: str = Field(description="the assistant thread holding this triage, for follow-ups")


class FeedbackRequest(RecordFeedbackInput):
    user: str = Field(min_length=1, max_length=200, description="the engineer giving the feedback")


class ErrorBody(BaseModel):
    detail: str


def deps_of_app(app: FastAPI) -> ServerDeps:
    deps: ServerDeps = app.state.deps
    return deps


def _metrics_of(app: FastAPI) -> ServerMetrics | None:
    deps: ServerDeps | None = getattr(app.state, "deps", None)
    return None if deps is None else deps.metrics


def deps_of(request: Request) -> ServerDeps:
    deps: ServerDeps = request.app.state.deps
    return deps


def create_app(settings: Settings, deps: ServerDeps | None = None) -> FastAPI:
    """The app. Pass `deps` to share prebuilt dependencies (tests); otherwise the lifespan builds them."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        built = deps or build_server_deps(settings)
        app.state.deps = built
        built.start()
        try:
            async with mcp.running():  # the MCP SDK's session manager serves /mcp
                yield
        finally:
            built.stop()
            if deps is None:
                built.close()

    app = FastAPI(title="logtriage", version="0.1.0", description=API_DESCRIPTION, lifespan=lifespan)
    if deps is not None:  # reachable before the lifespan runs (clients that skip it, such as fuzzers)
        app.state.deps = deps
    auth = Depends(BearerAuth(api_tokens(settings)))
    errors: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorBody},
        401: {"model": ErrorBody},
        413: {"model": ErrorBody},
        503: {"model": ErrorBody},
    }
    _install_error_handlers(app)
    app.add_middleware(RequestMetrics, metrics=lambda: _metrics_of(app))

    @app.post("/v1/detect", dependencies=[auth], responses=errors, tags=["api"])
    def detect(body: DetectRequest, request: Request) -> Answer:
        """Score log lines with the detector (the seed project's API): verdict, probability, category, evidence."""
        d = deps_of(request)
        answer = REGISTRY["score_logs"].call(
            d.tools, {"lines": body.logs, "use_memory": False}, _caller(request)
        )
        d.metrics.verdicts.labels("api", str(answer.verdict), answer.status).inc()
        return answer

    @app.post("/v1/triage", dependencies=[auth], responses=errors, tags=["api"])
    def triage(body: TriageRequest, request: Request) -> TriageResponse:
        """The full answer: verdict, evidence, similar past incidents and an explanation (LLM time-budgeted)."""
        d = deps_of(request)
        thread = body.thread_id or d.new_thread_id()
        start = time.perf_counter()
        answer = d.assistant.triage(
            body.lines, thread_id=thread, caller=_caller(request), remember=body.remember
        )
        d.metrics.llm_seconds.observe(time.perf_counter() - start)
        d.metrics.verdicts.labels("api", str(answer.verdict), answer.status).inc()
        return TriageResponse(**answer.model_dump(), thread_id=thread)

    @app.get(
        "/v1/incidents/{incident_id}", dependencies=[auth], responses={**errors, 404: {"model": ErrorBody}}
    )
    def get_incident(incident_id: str, request: Request) -> Answer:
        """One stored incident: lines, verdict, confirmed label, category, feedback, resolution."""
        return REGISTRY["get_incident"].call(
            deps_of(request).tools, {"incident_id": incident_id}, _caller(request)
        )

    @app.post(
        "/v1/feedback", dependencies=[auth], responses={**errors, 404: {"model": ErrorBody}}, tags=["api"]
    )
    def feedback(body: FeedbackRequest, request: Request) -> Answer:
        """Record whether a verdict was right; later verdicts on similar logs change at once."""
        caller = Caller(user=body.user, source="api", authenticated=True)
        arguments = body.model_dump(exclude={"user"})
        return REGISTRY["record_feedback"].call(deps_of(request).tools, arguments, caller)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"model": ErrorBody}})
    def readyz(request: Request) -> JSONResponse:
        """Readiness: the detector is loaded, the incident store answers and the alert queue is open."""
        problems = deps_of(request).problems()
        if problems:
            return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["ops"], response_class=Response)
    def metrics(request: Request) -> Response:
        """Prometheus metrics: requests, latencies, queue depth, verdicts, LLM time."""
        d = deps_of(request)
        d.metrics.queue_depth.set(d.queue.depth())
        return Response(generate_latest(d.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    from integrations.server_webhooks import webhook_router

    app.include_router(webhook_router(settings, auth), tags=["webhooks"])
    # MCP over streamable HTTP at /mcp: the same tools registry, bearer auth and Origin/Host checks.
    mcp = mount_mcp(
        app,
        settings,
        lambda: deps_of_app(app).tools,
        extra_hosts=_split(settings.mcp_allowed_hosts),
        extra_origins=_split(settings.mcp_allowed_origins),
    )
    # Slack at /slack/* when configured: signed by Slack, so outside the bearer token.
    mount_slack(app, settings, lambda: deps_of_app(app).slack)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _caller(request: Request) -> Caller:
    # The API authenticates services, not people: its reads run as the API, and feedback names a user.
    return Caller(user=None, source="api", authenticated=True)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UnknownIncidentError)
    async def unknown(_: Request, err: UnknownIncidentError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=404)

    @app.exception_handler(ToolInputError)
    async def bad_input(_: Request, err: ToolInputError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=400)

    @app.exception_handler(ToolFailedError)
    async def failed(_: Request, err: ToolFailedError) -> JSONResponse:
        body = {"detail": f"{err.tool} failed: {err.reason}", "tool": err.tool, "params": err.params}
        return JSONResponse(body, status_code=503)
