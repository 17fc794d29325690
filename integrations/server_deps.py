"""The server's long-lived dependencies, built once in the app lifespan (or by tests)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from assistant.service import Assistant, new_thread_id
from detectors import Detector
from integrations.alert_pipeline import AlertPipeline
from integrations.alert_queue import AlertQueue
from integrations.alert_workers import WorkerPool
from integrations.log_sources import AnnotationLogs, ChainedLogs, FileGlobLogs, LogSource, LokiLogs
from integrations.notifier import CallbackNotifier, FanOutNotifier, LogNotifier, Notifier
from integrations.server_metrics import ServerMetrics
from integrations.settings import ConfigError, Settings
from integrations.slack_answers import SlackDeps
from integrations.slack_config import slack_config, web_client
from integrations.slack_notifier import SlackNotifier
from integrations.slack_state import SlackState
from integrations.wiring import build_assistant, chat_model, load_detector, open_incident_store
from knowledge.store import IncidentStore
from tools import ToolContext


@dataclass(frozen=True)
class ServerDeps:
    settings: Settings
    detector: Detector
    store: IncidentStore
    assistant: Assistant
    queue: AlertQueue
    workers: WorkerPool
    pipeline: AlertPipeline
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    slack: SlackDeps | None = None  # None: Slack is not configured

    @property
    def tools(self) -> ToolContext:
        return self.assistant.deps.tools

    def new_thread_id(self) -> str:
        return new_thread_id()

    def start(self) -> None:
        self.workers.start()

    def stop(self) -> None:
        self.workers.stop(timeout=30)

    def close(self) -> None:
        self.queue.close()
        self.store.close()
        if self.slack is not None:
            self.slack.close()

    def problems(self) -> list[str]:
        """What keeps the server from being ready; empty when it is."""
        found = []
        try:
            self.store.count()
        except Exception as err:  # a readiness probe reports any failure instead of raising
            found.append(f"incident store: {err}")
        try:
            self.queue.depth()
        except Exception as err:  # same: the probe's job is to say what is wrong
            found.append(f"alert queue: {err}")
        return found


def log_source(settings: Settings) -> LogSource:
    """Logs in the alert first, then log files, then Loki; a prose `description` is the last resort."""
    sources: list[LogSource] = [AnnotationLogs(("logs", "log_excerpt"))]
    try:
        if settings.alert_log_glob:
            sources.append(FileGlobLogs(settings.alert_log_glob))
    except ValueError as err:
        raise ConfigError(f"LOGTRIAGE_ALERT_LOG_GLOB: {err}") from err
    try:
        if settings.loki_url:
            sources.append(LokiLogs(settings.loki_url, settings.loki_query))
    except ValueError as err:
        raise ConfigError(f"LOGTRIAGE_LOKI_URL / LOGTRIAGE_LOKI_QUERY: {err}") from err
    sources.append(AnnotationLogs(("description",)))
    return ChainedLogs(sources)


def notifier(settings: Settings, slack: SlackDeps | None = None) -> Notifier:
    notifiers: list[Notifier] = [LogNotifier()]
    if settings.callback_url:
        notifiers.append(CallbackNotifier(settings.callback_url))
    if slack is not None and slack.config.alert_channel:
        client = web_client(slack.config)
        channel = slack.config.alert_channel
        notifiers.append(SlackNotifier(client, channel, slack.state, slack.config.incident_link))
    return FanOutNotifier(notifiers)


def slack_deps(settings: Settings, assistant: Assistant, *, socket_mode: bool = False) -> SlackDeps | None:
    """The Slack app's dependencies, or None when Slack is off. Raises ConfigError when half configured."""
    config = slack_config(settings, socket_mode=socket_mode)
    if config is None:
        return None
    return SlackDeps(assistant, SlackState(settings.data_dir / "slack" / "state.sqlite"), config)


def assemble(
    settings: Settings,
    detector: Detector,
    store: IncidentStore,
    assistant: Assistant,
    *,
    logs: LogSource | None = None,
    outbound: Notifier | None = None,
    metrics: ServerMetrics | None = None,
    slack: SlackDeps | None = None,
) -> ServerDeps:
    """Put the server together around an already built detector, store and assistant."""
    metrics = metrics or ServerMetrics()
    queue = AlertQueue(
        settings.data_dir / "server" / "alerts.sqlite",
        capacity=settings.alert_queue_capacity,
        dedupe_window_s=settings.alert_dedupe_window_s,
    )
    tools = assistant.deps.tools
    alert_tools = tools if settings.alert_explain else dataclasses.replace(tools, explainer=None)
    pipeline = AlertPipeline(
        tools=alert_tools,
        store=store,
        queue=queue,
        logs=logs or log_source(settings),
        notifier=outbound or notifier(settings, slack),
        metrics=metrics,
    )
    workers = WorkerPool(queue, pipeline.handle, workers=settings.alert_workers)
    return ServerDeps(settings, detector, store, assistant, queue, workers, pipeline, metrics, slack)


def build_server_deps(settings: Settings) -> ServerDeps:
    detector = load_detector(settings)
    store = open_incident_store(settings, detector)
    assistant = build_assistant(settings, detector, store, chat_model(settings))
    return assemble(settings, detector, store, assistant, slack=slack_deps(settings, assistant))
