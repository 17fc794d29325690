"""Prometheus metrics of the server, in a registry of its own (one per app, so tests don't collide)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
