"""Notifiers against a real loopback HTTP receiver (the only fake: the callback's far end)."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from integrations.notifier import (
    CallbackNotifier,
    FanOutNotifier,
    IncidentNotice,
    LogNotifier,
    NotifierError,
    summary,
)

NOTICE = IncidentNotice(
    incident_id="inc-42",
    group_key='{}:{alertname="HighErrorRate"}',
    status="firing",
    alert_names=["HighErrorRate", "PaymentLatency"],
    verdict="anomalous",
    probability=0.934,
    category="network_timeout",
    triage_status="triaged",
    explanation="Connection retries to the payment gateway.\nThen timeouts.",
    similar_incident_ids=["inc-7"],
    link="http://grafana.example/alerting/1",
)


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class Receiver(ThreadingHTTPServer):
    """Records every request; answers `status`, after `release` is set when one is given."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.received: list[Received] = []
        self.status = 204
        self.release: threading.Event | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.received.append(Received("POST", self.path, dict(self.headers.items()), body))
        if self.server.release is not None:
            self.server.release.wait(timeout=30)
        answer = b"" if self.server.status == 204 else b'{"detail": "receiver says no"}'
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    # A short poll interval only so that shutdown() returns quickly at teardown.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    if server.release is not None:
        server.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_callback_posts_the_notice_as_json_with_the_configured_headers(receiver: Receiver) -> None:
    url = f"{receiver.base_url}/hooks/logtriage"
    with CallbackNotifier(url, headers={"Authorization": "Bearer t0k3n"}) as notifier:
        notifier.notify(NOTICE)
    [request] = receiver.received
    assert (request.method, request.path, request.body) == (
        "POST",
        "/hooks/logtriage",
        {
            "incident_id": "inc-42",
            "group_key": '{}:{alertname="HighErrorRate"}',
            "status": "firing",
            "alert_names": ["HighErrorRate", "PaymentLatency"],
            "verdict": "anomalous",
            "probability": 0.934,
            "category": "network_timeout",
            "triage_status": "triaged",
            "explanation": "Connection retries to the payment gateway.\nThen timeouts.",
            "similar_incident_ids": ["inc-7"],
            "link": "http://grafana.example/alerting/1",
        },
    )
    assert request.headers["Authorization"] == "Bearer t0k3n"
    assert request.headers["Content-Type"] == "application/json"


def test_server_error_is_retryable_and_names_the_url_without_credentials(receiver: Receiver) -> None:
    receiver.status = 500
    port = receiver.server_port
    notifier = CallbackNotifier(f"http://ana:s3cret@127.0.0.1:{port}/hook?token=abc123")
    with pytest.raises(NotifierError) as raised:
        notifier.notify(NOTICE)
    error = raised.value
    assert (error.target, error.status, error.retryable) == (f"http://127.0.0.1:{port}/hook", 500, True)
    assert str(error) == (
        f'notify http://127.0.0.1:{port}/hook failed (HTTP 500: \'{{"detail": "receiver says no"}}\')'
    )
    assert "s3cret" not in str(error) and "abc123" not in str(error)
    # The credentials still reach the receiver: as basic auth and the query string.
    [request] = receiver.received
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"ana:s3cret").decode()
    assert request.path == "/hook?token=abc123"


def test_rate_limited_answer_is_retryable(receiver: Receiver) -> None:
    receiver.status = 429
    with pytest.raises(NotifierError) as raised:
        CallbackNotifier(receiver.base_url).notify(NOTICE)
    assert (raised.value.status, raised.value.retryable) == (429, True)


def test_rejected_request_is_not_retryable(receiver: Receiver) -> None:
    receiver.status = 404
    with pytest.raises(NotifierError, match="HTTP 404.*; not retryable") as raised:
        CallbackNotifier(f"{receiver.base_url}/wrong").notify(NOTICE)
    assert raised.value.retryable is False


def test_unreachable_receiver_is_retryable(closed_port: int) -> None:
    with pytest.raises(NotifierError, match="ConnectError") as raised:
        CallbackNotifier(f"http://127.0.0.1:{closed_port}/hook").notify(NOTICE)
    assert (raised.value.target, raised.value.retryable, raised.value.status) == (
        f"http://127.0.0.1:{closed_port}/hook",
        True,
        None,
    )


def test_receiver_slower_than_the_timeout_is_retryable(receiver: Receiver) -> None:
    receiver.release = threading.Event()
    with pytest.raises(NotifierError, match="timed out: ReadTimeout") as raised:
        CallbackNotifier(receiver.base_url, timeout_s=0.2).notify(NOTICE)
    assert raised.value.retryable is True


def test_callback_url_must_be_http() -> None:
    with pytest.raises(ValueError, match=r"http\(s\)://host"):
        CallbackNotifier("ftp://files.example/notices")
    with pytest.raises(ValueError, match=r"http\(s\)://host"):
        CallbackNotifier("not a url")


def test_log_notifier_logs_a_one_line_summary(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="integrations.notifier")
    LogNotifier().notify(NOTICE)
    assert [record.getMessage() for record in caplog.records] == [
        "[firing] incident inc-42 alerts=HighErrorRate,PaymentLatency verdict=anomalous (p=0.93) "
        "category=network_timeout triage=triaged similar=inc-7 "
        'group={}:{alertname="HighErrorRate"} http://grafana.example/alerting/1 '
        "— Connection retries to the payment gateway."
    ]


def test_summary_of_a_resolution_without_incident_says_so() -> None:
    notice = IncidentNotice(
        incident_id=None, group_key=None, status="resolved", alert_names=["DiskFull"], triage_status="ok"
    )
    assert summary(notice) == "[resolved] no incident alerts=DiskFull triage=ok"


def test_fan_out_tries_every_notifier_then_raises_one_error_listing_the_failures(
    receiver: Receiver, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="integrations.notifier")
    receiver.status = 503
    failing = CallbackNotifier(f"{receiver.base_url}/a")
    unreachable = CallbackNotifier(f"http://127.0.0.1:{closed_port}/b")
    fan_out = FanOutNotifier([failing, LogNotifier(), unreachable])
    with pytest.raises(NotifierError) as raised:
        fan_out.notify(NOTICE)
    error = raised.value
    assert [cause.target for cause in error.causes] == [failing.target, unreachable.target]
    assert (error.target, error.retryable) == ("2 of 3 notifiers", True)
    assert f"notify {failing.target} failed (HTTP 503" in str(error)
    assert f"notify {unreachable.target} failed (ConnectError" in str(error)
    assert len(receiver.received) == 1
    assert len(caplog.records) == 1  # the log notifier ran between the two failures


def test_fan_out_error_is_retryable_only_if_some_failure_is(receiver: Receiver) -> None:
    receiver.status = 400
    with pytest.raises(NotifierError) as raised:
        FanOutNotifier([CallbackNotifier(receiver.base_url), LogNotifier()]).notify(NOTICE)
    assert raised.value.retryable is False


def test_fan_out_with_every_notifier_succeeding_raises_nothing(receiver: Receiver) -> None:
    FanOutNotifier([CallbackNotifier(receiver.base_url), LogNotifier()]).notify(NOTICE)
    assert len(receiver.received) == 1
