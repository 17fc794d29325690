"""The HTTP server through FastAPI's test client: API, auth, limits, health, metrics and webhooks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from assistant.graph import AssistantDeps
from assistant.service import Assistant, sqlite_checkpointer
from detectors import Detector
from integrations.grafana_signature import grafana_signature
from integrations.server import create_app
from integrations.server_deps import ServerDeps, assemble
from integrations.server_security import check_exposure
from integrations.settings import ConfigError, Settings
from knowledge.store import IncidentStore
from tests.integrations.conftest import AUTH, TOKEN, RecordingNotifier
from tests.integrations.fake_loki import FakeLoki
from tests.integrations.test_cli import run
from tools import ToolContext

FIXTURES = Path(__file__).parent / "fixtures"


def test_detect_answers_with_the_detectors_verdict(client: TestClient, retry_storm: list[str]) -> None:
    response = client.post("/v1/detect", json={"logs": retry_storm}, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["verdict"] == "anomalous" and body["category"] == "network_timeout" and body["evidence"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}],
)
def test_a_missing_or_forged_token_is_rejected_with_401(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post("/v1/detect", json={"logs": ["a"]}, headers=headers)
    assert response.status_code == 401 and "bearer token" in response.json()["detail"]


def test_triage_gives_the_full_answer_and_a_thread(client: TestClient, retry_storm: list[str]) -> None:
    response = client.post("/v1/triage", json={"lines": retry_storm, "remember": True}, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["thread_id"] and body["status"] == "ok" and "[L" in body["explanation"]
    incident = client.get(f"/v1/incidents/{body['incident_id']}", headers=AUTH)
    assert incident.status_code == 200 and incident.json()["incident"]["verdict"] == "anomalous"


def test_an_unknown_incident_is_404(client: TestClient) -> None:
    response = client.get("/v1/incidents/00000000-0000-0000-0000-000000000000", headers=AUTH)
    assert response.status_code == 404 and "no incident" in response.json()["detail"]


def test_feedback_flips_the_next_verdict(client: TestClient, retry_storm: list[str]) -> None:
    body = {"lines": retry_storm, "correct": False, "user": "ana", "note": "planned failover"}
    response = client.post("/v1/feedback", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["feedback"]["changed"] is True
    again = client.post("/v1/triage", json={"lines": retry_storm}, headers=AUTH).json()
    assert again["verdict"] == "normal" and again["decided_by"] == "memory"


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 422, "JSON"),
        (b'{"logs": []}', 422, "at least 1"),
        (b'{"logs": ["", "  "]}', 400, "empty or blank"),
        (b'{"logs": ["a"], "extra": 1}', 422, "Extra inputs"),
        (b'{"logs": ["\\u0000\\u00ff binary \\ud800"]}', 200, ""),
    ],
)
def test_bad_bodies_get_a_clear_4xx(client: TestClient, body: bytes, status: int, says: str) -> None:
    response = client.post("/v1/detect", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert says in response.text


def test_a_body_over_the_limit_is_refused_with_413(client: TestClient) -> None:
    response = client.post("/v1/detect", json={"logs": ["x" * 1000] * 300}, headers=AUTH)
    assert response.status_code == 413 and "LOGTRIAGE_MAX_BODY_BYTES" in response.json()["detail"]


def test_health_readiness_and_metrics(client: TestClient, retry_storm: list[str]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    client.post("/v1/detect", json={"logs": retry_storm}, headers=AUTH)
    metrics = client.get("/metrics").text
    assert 'logtriage_http_requests_total{method="POST",route="/v1/detect",status="200"} 1.0' in metrics
    assert "logtriage_alert_queue_depth" in metrics and "logtriage_verdicts_total" in metrics


def test_metrics_count_every_request_by_route_method_and_status_refusals_included(
    client: TestClient,
) -> None:
    assert client.post("/v1/detect", json={"logs": ["x"]}).status_code == 401
    assert client.post("/webhooks/generic", json={"alerts": []}, headers=AUTH).status_code == 422
    assert client.get("/no/such/route").status_code == 404
    assert client.get("/healthz").status_code == 200
    metrics = client.get("/metrics").text
    for route, method, status in (
        ("/v1/detect", "POST", "401"),
        ("/webhooks/generic", "POST", "422"),
        ("unmatched", "GET", "404"),
        ("/healthz", "GET", "200"),
    ):
        sample = f'logtriage_http_requests_total{{method="{method}",route="{route}",status="{status}"}} 1.0'
        assert sample in metrics, sample
        assert f'logtriage_http_request_seconds_count{{route="{route}"}} 1.0' in metrics


def test_the_openapi_document_lists_every_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/detect",
        "/v1/triage",
        "/v1/incidents/{incident_id}",
        "/v1/feedback",
        "/webhooks/alertmanager",
        "/webhooks/grafana",
        "/webhooks/generic",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path


def alertmanager_payload(logs: list[str]) -> dict[str, object]:
    payload = json.loads((FIXTURES / "alertmanager_v4.json").read_text())
    payload["alerts"][0]["annotations"]["logs"] = "\n".join(logs)
    return payload


def test_an_alertmanager_alert_is_acked_then_triaged_once_and_stored(
    client: TestClient, deps: ServerDeps, notifier: RecordingNotifier, retry_storm: list[str]
) -> None:
    payload = alertmanager_payload(retry_storm)
    first = client.post("/webhooks/alertmanager", json=payload, headers=AUTH)
    assert first.status_code == 202, first.text
    assert first.json()["accepted"] == 2 and len(first.json()["job_ids"]) == 2
    repeat = client.post("/webhooks/alertmanager", json=payload, headers=AUTH)
    assert repeat.json()["duplicates"] == 2 and repeat.json()["accepted"] == 0
    assert deps.workers.drain(timeout=60)

    firing = [n for n in notifier.notices if n.status == "firing"]
    assert len(firing) == 1 and firing[0].verdict == "anomalous"
    incident = deps.store.get(firing[0].incident_id or "")
    assert incident is not None and incident.source == "webhook"
    assert (
        incident.alert_labels["alertname"] == "PaymentErrorRate"
        and incident.fingerprint == "4f3a9c0e1b2d7a55"
    )


def test_a_resolved_alert_records_the_resolution_on_the_groups_incident(
    client: TestClient, deps: ServerDeps, notifier: RecordingNotifier, retry_storm: list[str]
) -> None:
    payload = alertmanager_payload(retry_storm)
    payload["alerts"] = payload["alerts"][:1]  # type: ignore[index]
    client.post("/webhooks/alertmanager", json=payload, headers=AUTH)
    assert deps.workers.drain(timeout=60)
    payload["alerts"][0]["status"] = "resolved"  # type: ignore[index]
    payload["alerts"][0]["endsAt"] = "2024-05-01T12:30:00Z"  # type: ignore[index]
    assert client.post("/webhooks/alertmanager", json=payload, headers=AUTH).status_code == 202
    assert deps.workers.drain(timeout=60)
    incident_id = notifier.notices[0].incident_id
    incident = deps.store.get(incident_id or "")
    assert incident is not None and "resolved at 2024-05-01T12:30:00" in (incident.resolution or "")
    assert [n.status for n in notifier.notices] == ["firing", "resolved"]


def test_grafana_alerts_need_a_valid_signature_when_a_secret_is_set(client: TestClient) -> None:
    body = (FIXTURES / "grafana_unified.json").read_bytes()
    bad = client.post(
        "/webhooks/grafana",
        content=body,
        headers={**AUTH, "X-Grafana-Alerting-Signature": "00" * 32, "Content-Type": "application/json"},
    )
    assert bad.status_code == 401 and "signature" in bad.json()["detail"]
    good = client.post(
        "/webhooks/grafana",
        content=body,
        headers={
            **AUTH,
            "X-Grafana-Alerting-Signature": grafana_signature(body, "grafana-secret"),
            "Content-Type": "application/json",
        },
    )
    assert good.status_code == 202, good.text


def test_a_generic_alert_with_inline_logs_becomes_an_incident(
    client: TestClient, deps: ServerDeps, notifier: RecordingNotifier, retry_storm: list[str]
) -> None:
    body = {"alerts": [{"name": "db-retries", "labels": {"service": "orders"}, "logs": retry_storm}]}
    response = client.post("/webhooks/generic", json=body, headers=AUTH)
    assert response.status_code == 202, response.text
    assert deps.workers.drain(timeout=60)
    assert notifier.notices[-1].verdict == "anomalous" and notifier.notices[-1].incident_id


def test_an_invalid_webhook_payload_is_422_and_queues_nothing(client: TestClient, deps: ServerDeps) -> None:
    response = client.post("/webhooks/alertmanager", json={"version": "4", "alerts": "nope"}, headers=AUTH)
    assert response.status_code == 422
    assert deps.queue.depth() == 0


def test_serving_beyond_loopback_without_a_token_needs_insecure(tmp_path: Path) -> None:
    open_settings = Settings(data_dir=tmp_path, host="0.0.0.0")
    with pytest.raises(ConfigError, match="LOGTRIAGE_API_TOKEN.*--insecure"):
        check_exposure(open_settings, insecure=False)
    check_exposure(open_settings, insecure=True)
    check_exposure(Settings(data_dir=tmp_path, host="127.0.0.1"), insecure=False)


def test_alert_logs_come_from_loki_when_the_alert_carries_none(
    server_settings: Settings,
    shipped_detector: Detector,
    incident_store: IncidentStore,
    notifier: RecordingNotifier,
) -> None:
    recorded = (FIXTURES / "loki_query_range.json").read_text()
    with FakeLoki(recorded) as loki:
        loki_settings = server_settings.model_copy(
            update={"loki_url": loki.url, "loki_query": '{namespace="{namespace}", app="{app}"}'}
        )
        ctx = ToolContext(detector=shipped_detector, store=incident_store)
        assistant = Assistant(
            AssistantDeps(tools=ctx, chat_model=None), sqlite_checkpointer(loki_settings.threads_path)
        )
        deps = assemble(loki_settings, shipped_detector, incident_store, assistant, outbound=notifier)
        payload = json.loads((FIXTURES / "alertmanager_v4.json").read_text())
        payload["alerts"] = payload["alerts"][:1]
        payload["alerts"][0]["annotations"].pop("description", None)
        with TestClient(create_app(loki_settings, deps)) as client:
            assert client.post("/webhooks/alertmanager", json=payload, headers=AUTH).status_code == 202
            assert deps.workers.drain(timeout=60)
        deps.queue.close()
    assert loki.requests and 'app="payments"' in loki.requests[0].params["query"]
    (notice,) = notifier.notices
    stored = incident_store.get(notice.incident_id or "")
    loki_lines = [v[1] for stream in json.loads(recorded)["data"]["result"] for v in stream["values"]]
    assert stored is not None and stored.lines[0] in loki_lines


def test_serve_refuses_a_public_address_without_a_token() -> None:
    code, _, err = run("serve", "--host", "0.0.0.0", "--port", "0")
    assert code == 2 and "LOGTRIAGE_API_TOKEN" in err and "--insecure" in err
