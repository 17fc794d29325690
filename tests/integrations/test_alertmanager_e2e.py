"""A real Alertmanager in front of a running logtriage: its webhook, its auth, its resolved alerts.

The test client cannot show that our payload model, bearer auth and resolution flow match what
Alertmanager actually sends; so here Debian's `prometheus-alertmanager` (0.25) runs as a
subprocess and notifies logtriage served by uvicorn on loopback. Only the outbound notifier is
recorded instead of delivered. Skipped where no Alertmanager binary is installed
(`.ci/install-alertmanager` installs it).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from assistant.graph import AssistantDeps
from assistant.service import Assistant, sqlite_checkpointer
from detectors import Detector
from integrations.notifier import IncidentNotice
from integrations.server import create_app
from integrations.server_deps import ServerDeps, assemble
from integrations.settings import Settings
from knowledge.records import Incident
from knowledge.store import IncidentStore
from tests.integrations.conftest import RecordingNotifier
from tests.integrations.loopback import serving
from tools import ToolContext

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        ALERTMANAGER is None,
        reason="no prometheus-alertmanager or alertmanager on PATH (run .ci/install-alertmanager)",
    ),
]
TOKEN = "e2e-t0ken"
ALERT_NAME = "CheckoutRetryStorm"
LOOPBACK = "127.0.0.1"
# Alertmanager reaches logtriage within a second (group_wait 0s); triage takes well under a
# second. The deadlines only bound a broken run.
STARTUP_S = 30.0
DELIVERY_S = 60.0

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, context: Callable[[], str]) -> T:
    """Poll `probe` until it returns something other than None; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while (found := probe()) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:.0f} s\n{context()}")
        time.sleep(0.05)  # the polling interval, not a wait for the work itself
    return found


def free_port() -> int:
    # Alertmanager binds its own port, so we can only pick one that is free now.
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def deps(
    tmp_path: Path, shipped_detector: Detector, incident_store: IncidentStore, notifier: RecordingNotifier
) -> Iterator[ServerDeps]:
    settings = Settings(data_dir=tmp_path / "data", api_token=TOKEN, llm_backend="none")  # type: ignore[arg-type]
    ctx = ToolContext(detector=shipped_detector, store=incident_store)
    assistant = Assistant(
        AssistantDeps(tools=ctx, chat_model=None), sqlite_checkpointer(settings.threads_path)
    )
    built = assemble(settings, shipped_detector, incident_store, assistant, outbound=notifier)
    yield built
    built.queue.close()


@pytest.fixture
def logtriage_url(deps: ServerDeps) -> Iterator[str]:
    """logtriage served by uvicorn in a thread, on a socket bound here (so the port is ours)."""
    with serving(create_app(deps.settings, deps)) as url:
        yield url


class Alertmanager:
    """A running Alertmanager subprocess and its API."""

    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log
        self.api = httpx.Client(base_url=url, timeout=10, trust_env=False)

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        response = self.api.post("/api/v2/alerts", json=alerts)
        assert response.status_code == 200, response.text

    def alerts(self) -> list[dict[str, Any]]:
        response = self.api.get("/api/v2/alerts")
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()
        return found

    def log_tail(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "Alertmanager log (last lines):\n" + "\n".join(text.splitlines()[-20:])


def alertmanager_config(webhook_url: str) -> dict[str, Any]:
    # JSON is YAML, so the config needs no YAML writer. group_wait 0s sends a new group at once;
    # group_interval 1s sends its resolution on the next second's flush.
    return {
        "route": {
            "receiver": "logtriage",
            "group_by": ["alertname"],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "logtriage",
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        "http_config": {"authorization": {"type": "Bearer", "credentials": TOKEN}},
                    }
                ],
            }
        ],
    }


@pytest.fixture
def alertmanager(tmp_path: Path, logtriage_url: str) -> Iterator[Alertmanager]:
    assert ALERTMANAGER is not None  # the module is skipped without one
    config = tmp_path / "alertmanager.yml"
    config.write_text(json.dumps(alertmanager_config(f"{logtriage_url}/webhooks/alertmanager")))
    port = free_port()
    log = tmp_path / "alertmanager.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                ALERTMANAGER,
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'alertmanager-data'}",
                f"--web.listen-address={LOOPBACK}:{port}",
                "--cluster.listen-address=",  # empty: no gossip port, no HA peers to settle with
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    running = Alertmanager(f"http://{LOOPBACK}:{port}", log)
    try:
        wait_for("ready Alertmanager", lambda: _ready(running, process), STARTUP_S, running.log_tail)
        yield running
    finally:
        running.api.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _ready(running: Alertmanager, process: subprocess.Popen[bytes]) -> bool | None:
    if process.poll() is not None:
        pytest.fail(f"Alertmanager exited with {process.returncode}\n{running.log_tail()}")
    try:
        return True if running.api.get("/-/ready").status_code == 200 else None
    except httpx.TransportError:
        return None


def retry_storm_alert(logs: list[str], starts_at: datetime, ends_at: datetime | None) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "labels": {"alertname": ALERT_NAME, "service": "checkout", "severity": "critical"},
        "annotations": {"logs": "\n".join(logs), "summary": "checkout retries its database"},
        "startsAt": starts_at.isoformat(),
    }
    if ends_at is not None:
        alert["endsAt"] = ends_at.isoformat()
    return alert


def stored_incident(deps: ServerDeps, notice: IncidentNotice) -> Incident:
    assert notice.incident_id, notice
    incident = deps.store.get(notice.incident_id)
    assert incident is not None, notice
    return incident


def accepted_alerts(metrics_text: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "logtriage_alerts_total" and sample.labels == {
                "webhook": "alertmanager",
                "outcome": "accepted",
            }:
                return sample.value
    return 0.0


def test_an_alert_posted_to_alertmanager_is_triaged_stored_and_later_resolved_by_logtriage(
    alertmanager: Alertmanager,
    logtriage_url: str,
    deps: ServerDeps,
    notifier: RecordingNotifier,
    retry_storm: list[str],
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=5)
    alertmanager.post_alerts([retry_storm_alert(retry_storm, started, None)])

    firing = wait_for("firing notice", lambda: notifier.first("firing"), DELIVERY_S, alertmanager.log_tail)
    incident = stored_incident(deps, firing)
    (am_alert,) = alertmanager.alerts()
    assert am_alert["fingerprint"], am_alert
    assert (
        incident.source,
        incident.verdict,
        incident.alert_labels,
        incident.fingerprint,
        firing.verdict,
        firing.alert_names,
    ) == (
        "webhook",
        "anomalous",
        {"alertname": ALERT_NAME, "service": "checkout", "severity": "critical"},
        am_alert["fingerprint"],
        "anomalous",
        [ALERT_NAME],
    )
    assert incident.lines == retry_storm

    with httpx.Client(base_url=logtriage_url, timeout=10, trust_env=False) as client:
        forged = client.post(
            "/webhooks/alertmanager",
            json={"version": "4", "status": "firing", "alerts": []},
            headers={"Authorization": "Bearer not-the-token"},
        )
        assert forged.status_code == 401, forged.text
        assert accepted_alerts(client.get("/metrics").text) >= 1

    ended = datetime.now(UTC) - timedelta(seconds=1)
    alertmanager.post_alerts([retry_storm_alert(retry_storm, started, ended)])

    resolved = wait_for(
        "resolved notice", lambda: notifier.first("resolved"), DELIVERY_S, alertmanager.log_tail
    )
    assert resolved.incident_id == incident.id
    assert deps.workers.drain(timeout=DELIVERY_S)
    counts = deps.queue.counts()
    assert (counts["done"], counts["failed"]) == (2, 0), counts
    resolution = stored_incident(deps, resolved).resolution or ""
    assert resolution.startswith(
        f"alert {ALERT_NAME} resolved at {ended.replace(microsecond=0):%Y-%m-%dT%H:%M:%S}"
    )
