"""Prometheus metrics of the server, in a registry of its own (one per app, so tests don't collide),
and the middleware that counts requests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from integrations.server_security import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class ServerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "logtriage_http_requests",
            "HTTP requests by route and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "logtriage_http_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "logtriage_alert_queue_depth", "alert jobs pending or in progress", registry=r
        )
        self.verdicts = Counter(
            "logtriage_verdicts",
            "verdicts given, by surface and verdict",
            ["surface", "verdict", "status"],
            registry=r,
        )
        self.llm_seconds = Histogram(
            "logtriage_llm_seconds", "time spent in the LLM per answer", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.alerts = Counter(
            "logtriage_alerts", "alerts received, by webhook and outcome", ["webhook", "outcome"], registry=r
        )
        self.jobs = Counter(
            "logtriage_alert_jobs", "alert jobs finished, by outcome", ["outcome"], registry=r
        )


class RequestMetrics:
    """ASGI middleware: counts each HTTP request by route, method and status, and times it.

    A plain ASGI class (not `@app.middleware("http")`, whose per-request task and streams cost 1-2 ms
    of CPU): it only watches the response start go by. The route is read after the app ran, from
    the scope the router filled in; `metrics` is asked per request, as the app builds it in its lifespan.
    """

    def __init__(self, app: ASGIApp, metrics: Callable[[], ServerMetrics | None]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the server answers when the app raises before starting a response

        async def watched_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            metrics = self.metrics()
            if metrics is not None:
                path = getattr(scope.get("route"), "path", "unmatched")
                metrics.requests.labels(path, scope["method"], str(status)).inc()
                metrics.latency.labels(path).observe(time.perf_counter() - start)
