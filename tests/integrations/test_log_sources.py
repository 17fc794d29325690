"""Log sources: annotations, files on disk, Loki (a loopback fake), and chains of them."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from integrations.alerts import AlertEvent, events_from_generic
from integrations.log_sources import (
    AnnotationLogs,
    ChainedLogs,
    FileGlobLogs,
    LogSourceError,
    LokiLogs,
)
from tests.integrations.fake_loki import FakeLoki

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LOKI_BODY = (FIXTURES / "loki_query_range.json").read_bytes()
STARTS_AT = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
STARTS_AT_NS = 1_714_564_800 * 10**9
SECOND_NS = 10**9


def alert(
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    starts_at: datetime | None = STARTS_AT,
) -> AlertEvent:
    labels = (
        {"alertname": "PaymentErrorRate", "namespace": "prod", "app": "payments"}
        if labels is None
        else labels
    )
    return AlertEvent(
        source="alertmanager",
        fingerprint="4f3a9c0e1b2d7a55",
        status="firing",
        group_key='{}:{namespace="prod"}',
        labels=labels,
        annotations=annotations or {},
        starts_at=starts_at,
        ends_at=None,
        generator_url=None,
        name=labels.get("alertname", ""),
    )


def loki_body(result: list[dict[str, Any]], result_type: str = "streams") -> str:
    return json.dumps(
        {"status": "success", "data": {"resultType": result_type, "result": result, "stats": {}}}
    )


# -- annotations --


def test_annotation_logs_prefer_logs_then_excerpt_then_description() -> None:
    source = AnnotationLogs()
    everything = {"logs": "a1\n\na2\n", "log_excerpt": "b1", "description": "c1"}
    assert source.fetch(alert(annotations=everything)) == ["a1", "a2"]
    assert source.fetch(alert(annotations={"log_excerpt": "b1\r\nb2", "description": "c1"})) == ["b1", "b2"]
    assert source.fetch(alert(annotations={"logs": "  \n", "description": "c1"})) == ["c1"]
    assert source.fetch(alert(annotations={"summary": "not logs"})) == []


def test_generic_alert_inline_logs_are_found_by_annotation_logs() -> None:
    (event,) = events_from_generic(
        {"alerts": [{"name": "DbTimeouts", "logs": ["ERROR db timeout", "WARN retry"]}]}
    )
    assert AnnotationLogs().fetch(event) == ["ERROR db timeout", "WARN retry"]


# -- files --


def write(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_file_lines_inside_the_window_are_kept_bounds_included(tmp_path: Path) -> None:
    write(
        tmp_path / "app.log",
        "2024-05-01T11:54:59Z too early",
        "2024-05-01T11:55:00Z window opens",
        "2024-05-01 12:00:00,250 log4j style comma",
        "2024-05-01T12:00:30.5+00:00 with offset",
        "2024-05-01T12:01:00Z window closes",
        "2024-05-01T12:01:01Z too late",
    )
    assert FileGlobLogs(str(tmp_path / "*.log")).fetch(alert()) == [
        "2024-05-01T11:55:00Z window opens",
        "2024-05-01 12:00:00,250 log4j style comma",
        "2024-05-01T12:00:30.5+00:00 with offset",
        "2024-05-01T12:01:00Z window closes",
    ]


def test_file_lines_without_a_timestamp_inherit_the_previous_lines(tmp_path: Path) -> None:
    write(
        tmp_path / "app.log",
        "orphan before any timestamp",
        "2024-05-01T11:50:00Z ERROR outside the window",
        "  at Foo.bar(Foo.java:1)",
        "2024-05-01T12:00:01Z ERROR inside the window",
        "Traceback (most recent call last):",
        '  File "app.py", line 3',
        "2024-05-01T12:05:00Z after the window",
        "  continuation after the window",
    )
    assert FileGlobLogs(str(tmp_path / "app.log")).fetch(alert()) == [
        "2024-05-01T12:00:01Z ERROR inside the window",
        "Traceback (most recent call last):",
        '  File "app.py", line 3',
    ]


def test_file_timestamps_honour_their_zone_and_naive_ones_use_the_configured_zone(tmp_path: Path) -> None:
    write(
        tmp_path / "app.log",
        "2024-05-01T14:00:10+02:00 twelve o'clock UTC in Berlin summer time",
        "2024-05-01T14:00:20+0200 the same without a colon",
        "2024-05-01T12:00:30 naive, so in naive_tz (+02:00): 10:00 UTC, outside",
        "2024-05-01T14:00:40 naive, in +02:00: inside",
    )
    source = FileGlobLogs(str(tmp_path / "app.log"), naive_tz=timezone(timedelta(hours=2)))
    assert source.fetch(alert()) == [
        "2024-05-01T14:00:10+02:00 twelve o'clock UTC in Berlin summer time",
        "2024-05-01T14:00:20+0200 the same without a colon",
        "2024-05-01T14:00:40 naive, in +02:00: inside",
    ]


def test_syslog_timestamps_take_the_year_nearest_the_alert(tmp_path: Path) -> None:
    write(
        tmp_path / "syslog",
        "Dec 31 23:59:50 db-1 postgres[812]: FATAL: too many connections",
        "Jan  1 00:00:20 db-1 postgres[812]: LOG: checkpoint starting",
        "Jan  1 00:09:00 db-1 postgres[812]: LOG: outside the window",
    )
    new_year = datetime(2025, 1, 1, 0, 0, 10, tzinfo=UTC)
    assert FileGlobLogs(str(tmp_path / "syslog")).fetch(alert(starts_at=new_year)) == [
        "Dec 31 23:59:50 db-1 postgres[812]: FATAL: too many connections",
        "Jan  1 00:00:20 db-1 postgres[812]: LOG: checkpoint starting",
    ]


def test_files_matching_the_glob_are_merged_in_time_order(tmp_path: Path) -> None:
    (tmp_path / "api").mkdir()
    (tmp_path / "db").mkdir()
    write(tmp_path / "api" / "app.log", "2024-05-01T12:00:01Z api one", "2024-05-01T12:00:03Z api two")
    write(tmp_path / "db" / "app.log", "2024-05-01T12:00:02Z db one", "2024-05-01T12:00:03Z db two")
    assert FileGlobLogs(str(tmp_path / "**" / "*.log")).fetch(alert()) == [
        "2024-05-01T12:00:01Z api one",
        "2024-05-01T12:00:02Z db one",
        "2024-05-01T12:00:03Z api two",  # equal times keep file order
        "2024-05-01T12:00:03Z db two",
    ]


def test_non_utf8_bytes_are_replaced_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "app.log").write_bytes(
        b"2024-05-01T12:00:01Z user \xff\xfe caf\xe9\n\x00\x01 binary junk\n2024-05-01T12:00:02Z next\n"
    )
    assert FileGlobLogs(str(tmp_path / "app.log")).fetch(alert()) == [
        "2024-05-01T12:00:01Z user \ufffd\ufffd caf\ufffd",
        "\x00\x01 binary junk",
        "2024-05-01T12:00:02Z next",
    ]


def test_max_lines_keeps_the_lines_nearest_the_alert_in_time_order(tmp_path: Path) -> None:
    lines = [f"2024-05-01T{11 + (56 + i) // 60:02d}:{(56 + i) % 60:02d}:00Z line {i}" for i in range(6)]
    write(tmp_path / "app.log", *lines)  # 11:56, 11:57, 11:58, 11:59, 12:00, 12:01
    assert FileGlobLogs(str(tmp_path / "app.log"), max_lines=3).fetch(alert()) == [
        "2024-05-01T11:59:00Z line 3",
        "2024-05-01T12:00:00Z line 4",
        "2024-05-01T12:01:00Z line 5",
    ]


def test_an_over_long_line_keeps_its_head_and_the_next_lines_still_count(tmp_path: Path) -> None:
    write(tmp_path / "app.log", "2024-05-01T12:00:01Z " + "x" * 100, "2024-05-01T12:00:02Z short")
    source = FileGlobLogs(str(tmp_path / "app.log"), max_line_bytes=32)
    assert source.fetch(alert()) == ["2024-05-01T12:00:01Z xxxxxxxxxxx", "2024-05-01T12:00:02Z short"]


def test_an_alert_without_a_start_reads_the_window_around_now(tmp_path: Path) -> None:
    write(tmp_path / "app.log", "2024-05-01T11:00:00Z an hour before", "2024-05-01T12:00:05Z just now")
    source = FileGlobLogs(str(tmp_path / "app.log"), clock=lambda: STARTS_AT)
    assert source.fetch(alert(starts_at=None)) == ["2024-05-01T12:00:05Z just now"]


def test_files_last_modified_before_the_window_are_skipped_unread(tmp_path: Path) -> None:
    rotated = write(tmp_path / "app.log.1", "2024-05-01T12:00:01Z impossible: written after its mtime")
    old = (STARTS_AT - timedelta(hours=1)).timestamp()
    os.utime(rotated, (old, old))
    write(tmp_path / "app.log", "2024-05-01T12:00:02Z current")
    assert FileGlobLogs(str(tmp_path / "app.log*")).fetch(alert()) == ["2024-05-01T12:00:02Z current"]


def test_no_matching_files_means_no_lines(tmp_path: Path) -> None:
    assert FileGlobLogs(str(tmp_path / "missing" / "*.log")).fetch(alert()) == []


def test_a_relative_file_pattern_is_refused() -> None:
    with pytest.raises(ValueError, match="must be an absolute path, got 'logs/\\*.log'"):
        FileGlobLogs("logs/*.log")


# -- Loki --

TEMPLATE = '{namespace="{namespace}", app="{app}"} |= "error"'


def test_loki_query_is_built_from_labels_over_the_window_and_streams_merge_by_time() -> None:
    with FakeLoki(LOKI_BODY) as loki:
        lines = LokiLogs(loki.url, TEMPLATE, limit=200).fetch(alert())
    assert lines == [
        "2024-05-01T11:59:50Z ERROR payments-7d9f8c6b5-x2kqp charge failed: upstream connect error",
        "2024-05-01T11:59:55Z ERROR payments-7d9f8c6b5-m4wzt retry 3/3 to ledger exhausted",
        "2024-05-01T12:00:05Z ERROR payments-7d9f8c6b5-x2kqp charge failed: upstream connect error",
        "2024-05-01T12:00:10Z ERROR payments-7d9f8c6b5-m4wzt circuit breaker open for ledger",
    ]
    (request,) = loki.requests
    assert (request.method, request.path) == ("GET", "/loki/api/v1/query_range")
    assert request.params == {
        "query": '{namespace="prod", app="payments"} |= "error"',
        "start": str(STARTS_AT_NS - 300 * SECOND_NS),
        "end": str(STARTS_AT_NS + 60 * SECOND_NS),
        "limit": "200",
        "direction": "forward",
    }


def test_loki_label_values_are_escaped_inside_the_query() -> None:
    labels = {"namespace": 'pr"od', "app": "pay\\ments\nx"}
    with FakeLoki(loki_body([])) as loki:
        assert LokiLogs(loki.url + "/", TEMPLATE).fetch(alert(labels=labels)) == []
    assert loki.requests[0].params["query"] == '{namespace="pr\\"od", app="pay\\\\ments\\nx"} |= "error"'
    assert loki.requests[0].path == "/loki/api/v1/query_range"  # no double slash from the base URL


def test_loki_is_not_asked_when_the_alert_lacks_a_label_the_template_needs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeLoki(LOKI_BODY) as loki, caplog.at_level(logging.WARNING, logger="integrations.log_sources"):
        assert LokiLogs(loki.url, TEMPLATE).fetch(alert(labels={"alertname": "X", "namespace": "prod"})) == []
    assert loki.requests == []
    assert "it has no label app, which the query template needs" in caplog.text


@pytest.mark.parametrize("template", ["{app={app}}", '{app="x"} |= `{app}`', '{app="x"} | line_format {app}'])
def test_loki_template_with_a_placeholder_outside_double_quotes_is_refused(template: str) -> None:
    with pytest.raises(ValueError, match="placeholders outside double-quoted strings \\(app\\)"):
        LokiLogs("http://loki:3100", template)


def test_loki_sends_configured_headers_and_basic_auth_from_the_url() -> None:
    with FakeLoki(LOKI_BODY) as loki:
        with_credentials = loki.url.replace("http://", "http://reader:hunter2@")
        LokiLogs(with_credentials, TEMPLATE, headers={"X-Scope-OrgID": "tenant-a"}).fetch(alert())
    headers = loki.requests[0].headers
    assert headers["x-scope-orgid"] == "tenant-a"
    assert headers["authorization"] == "Basic cmVhZGVyOmh1bnRlcjI="  # reader:hunter2


def test_loki_server_error_names_the_url_without_credentials_and_the_query() -> None:
    with FakeLoki() as loki:
        loki.respond_with(500, "rpc error: code = Unavailable desc = too many outstanding requests")
        with pytest.raises(LogSourceError) as failed:
            LokiLogs(loki.url.replace("http://", "http://reader:hunter2@"), TEMPLATE).fetch(alert())
    error = failed.value
    assert (error.source, error.operation, error.status) == ("loki", "query_range", 500)
    assert error.params == {
        "url": f"{loki.url}/loki/api/v1/query_range",
        "query": '{namespace="prod", app="payments"} |= "error"',
        "start": "2024-05-01T11:55:00+00:00",
        "end": "2024-05-01T12:01:00+00:00",
    }
    assert error.reason == "HTTP 500: rpc error: code = Unavailable desc = too many outstanding requests"
    assert "hunter2" not in str(error) and loki.url in str(error)


def test_loki_bad_request_carries_lokis_explanation() -> None:
    with FakeLoki() as loki:
        loki.respond_with(400, "parse error at line 1, col 12: syntax error: unexpected IDENTIFIER")
        with pytest.raises(LogSourceError, match="HTTP 400: parse error at line 1, col 12") as failed:
            LokiLogs(loki.url, TEMPLATE).fetch(alert())
    assert failed.value.status == 400


def test_loki_that_does_not_answer_in_time_is_a_timeout_error() -> None:
    with FakeLoki(LOKI_BODY) as loki:
        loki.stall()
        with pytest.raises(LogSourceError, match="timed out after 0.2 s") as failed:
            LokiLogs(loki.url, TEMPLATE, timeout_s=0.2).fetch(alert())
        assert len(loki.requests) == 1
    assert failed.value.status is None


def test_loki_that_is_not_listening_is_a_connection_error() -> None:
    with FakeLoki() as loki:
        url = loki.url
    with pytest.raises(LogSourceError, match="ConnectError") as failed:
        LokiLogs(url, TEMPLATE, timeout_s=2).fetch(alert())
    assert failed.value.params["url"] == f"{url}/loki/api/v1/query_range"


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ("<html>502 Bad Gateway</html>", "unexpected response: Expecting value"),
        (json.dumps({"status": "error", "error": "boom"}), "expected {'status': 'success'"),
        (loki_body([], result_type="matrix"), "resultType is 'matrix'.*must be a log query"),
        (loki_body([{"stream": {}, "values": [["not-a-number", "x"]]}]), "invalid literal"),
        (loki_body([{"stream": {}}]), "a stream is malformed \\(KeyError"),
    ],
)
def test_loki_response_of_the_wrong_shape_is_an_error(body: str, complaint: str) -> None:
    with FakeLoki(body) as loki, pytest.raises(LogSourceError, match=complaint) as failed:
        LokiLogs(loki.url, TEMPLATE).fetch(alert())
    assert failed.value.status == 200


def test_loki_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="must start with http:// or https://"):
        LokiLogs("loki:3100", TEMPLATE)


# -- chains --


def test_chain_returns_the_first_source_with_lines_and_asks_no_further() -> None:
    with_logs = alert(annotations={"logs": "ERROR from the alert"})
    with FakeLoki(LOKI_BODY) as loki:
        chain = ChainedLogs([AnnotationLogs(), LokiLogs(loki.url, TEMPLATE)])
        assert chain.fetch(with_logs) == ["ERROR from the alert"]
        assert loki.requests == []
        assert len(chain.fetch(alert())) == 4  # no annotation logs: Loki's
        assert len(loki.requests) == 1


def test_chain_falls_back_past_a_failing_source_and_logs_the_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    described = alert(annotations={"description": "payments 5xx above 5%"})
    with FakeLoki() as loki, caplog.at_level(logging.WARNING, logger="integrations.log_sources"):
        loki.respond_with(503, "Loki is restarting")
        assert ChainedLogs([LokiLogs(loki.url, TEMPLATE), AnnotationLogs()]).fetch(described) == [
            "payments 5xx above 5%"
        ]
    assert "log source LokiLogs failed for alert 4f3a9c0e1b2d7a55; trying the next" in caplog.text
    assert "HTTP 503: Loki is restarting" in caplog.text


def test_chain_with_no_lines_anywhere_raises_the_failure_rather_than_hide_it(tmp_path: Path) -> None:
    with FakeLoki() as loki:
        loki.respond_with(503, "Loki is restarting")
        chain = ChainedLogs(
            [LokiLogs(loki.url, TEMPLATE), FileGlobLogs(str(tmp_path / "*.log")), AnnotationLogs()]
        )
        with pytest.raises(LogSourceError, match="HTTP 503"):
            chain.fetch(alert())


def test_chain_with_no_lines_and_no_failure_returns_none(tmp_path: Path) -> None:
    assert ChainedLogs([FileGlobLogs(str(tmp_path / "*.log")), AnnotationLogs()]).fetch(alert()) == []
