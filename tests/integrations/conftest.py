"""A server around the real detector and store, with the LLM off, and its outbound boundary recorded."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from assistant.graph import AssistantDeps
from assistant.service import Assistant, sqlite_checkpointer
from detectors import Detector
from integrations.notifier import IncidentNotice
from integrations.server import create_app
from integrations.server_deps import ServerDeps, assemble
from integrations.settings import Settings
from knowledge.store import IncidentStore
from tools import ToolContext

TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class RecordingNotifier:
    """The outbound boundary (Slack, a callback URL): records what would have been sent."""

    def __init__(self) -> None:
        self.notices: list[IncidentNotice] = []
        self.lock = threading.Lock()

    def notify(self, notice: IncidentNotice) -> None:
        with self.lock:
            self.notices.append(notice)

    def first(self, status: str) -> IncidentNotice | None:
        with self.lock:
            return next((n for n in self.notices if n.status == status), None)


@pytest.fixture
def server_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        api_token=f"other-token,{TOKEN}",  # type: ignore[arg-type]
        grafana_webhook_secret="grafana-secret",  # type: ignore[arg-type]
        llm_backend="none",
        max_body_bytes=200_000,
    )


@pytest.fixture
def notifier() -> RecordingNotifier:
    return RecordingNotifier()


@pytest.fixture
def deps(
    server_settings: Settings,
    shipped_detector: Detector,
    incident_store: IncidentStore,
    notifier: RecordingNotifier,
) -> Iterator[ServerDeps]:
    ctx = ToolContext(detector=shipped_detector, store=incident_store)
    assistant = Assistant(
        AssistantDeps(tools=ctx, chat_model=None), sqlite_checkpointer(server_settings.threads_path)
    )
    built = assemble(server_settings, shipped_detector, incident_store, assistant, outbound=notifier)
    yield built
    built.queue.close()


@pytest.fixture
def client(server_settings: Settings, deps: ServerDeps) -> Iterator[TestClient]:
    with TestClient(create_app(server_settings, deps)) as test_client:
        yield test_client
