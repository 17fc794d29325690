"""Alert webhook payloads become AlertEvents; Grafana's HMAC signature is checked."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from integrations.alerts import (
    UNNAMED,
    AlertEvent,
    AlertmanagerPayload,
    GenericPayload,
    events_from_alertmanager,
    events_from_generic,
    events_from_grafana,
    label_fingerprint,
)
from integrations.grafana_signature import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    grafana_signature,
    verify_grafana_signature,
)
from integrations.settings import ConfigError

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


# -- Alertmanager --

AM_GROUP_KEY = '{}/{severity=~"warning|critical"}:{namespace="prod"}'


def test_alertmanager_v4_payload_becomes_one_event_per_alert_with_zero_end_time_unset() -> None:
    assert events_from_alertmanager(fixture("alertmanager_v4.json")) == [
        AlertEvent(
            source="alertmanager",
            fingerprint="4f3a9c0e1b2d7a55",
            status="firing",
            group_key=AM_GROUP_KEY,
            labels={
                "alertname": "PaymentErrorRate",
                "app": "payments",
                "namespace": "prod",
                "severity": "critical",
            },
            annotations={
                "description": "5xx rate on payments is 12% over the last 5 minutes",
                "runbook_url": "https://runbooks.example.com/payments/error-rate",
                "summary": "payments is failing requests",
            },
            # Alertmanager sends nanoseconds; Python keeps microseconds.
            starts_at=datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
            ends_at=None,
            generator_url="http://prometheus.example.com:9090/graph?g0.expr=job%3Apayments_5xx%3Arate5m+%3E+0.05&g0.tab=1",
            name="PaymentErrorRate",
        ),
        AlertEvent(
            source="alertmanager",
            fingerprint="9d1e0f2c3b4a5867",
            status="resolved",
            group_key=AM_GROUP_KEY,
            labels={
                "alertname": "PaymentLatencyHigh",
                "app": "payments",
                "namespace": "prod",
                "severity": "warning",
            },
            annotations={"summary": "payments p99 latency above 2s"},
            starts_at=datetime(2024, 5, 1, 11, 40, tzinfo=UTC),
            ends_at=datetime(2024, 5, 1, 11, 58, 30, 500000, tzinfo=UTC),  # sent as +02:00
            generator_url="http://prometheus.example.com:9090/graph?g0.expr=histogram_quantile%280.99%2C+payments_latency%29+%3E+2&g0.tab=1",
            name="PaymentLatencyHigh",
        ),
    ]


def test_a_parsed_alertmanager_model_normalises_like_its_json() -> None:
    raw = fixture("alertmanager_v4.json")
    assert events_from_alertmanager(AlertmanagerPayload.model_validate(raw)) == events_from_alertmanager(raw)


def test_alert_without_fingerprint_or_group_key_gets_both_from_its_labels() -> None:
    raw = fixture("alertmanager_v4.json")
    raw["groupKey"] = ""
    del raw["alerts"][0]["fingerprint"]
    event = events_from_alertmanager(raw)[0]
    assert event.fingerprint == label_fingerprint(raw["alerts"][0]["labels"])
    assert event.group_key == event.fingerprint
    assert events_from_alertmanager(raw)[1].group_key == "9d1e0f2c3b4a5867"


def test_derived_fingerprint_is_stable_and_ignores_label_order() -> None:
    assert label_fingerprint({"alertname": "DiskFull", "host": "db-1"}) == "4710633b6cb74584"
    assert label_fingerprint({"host": "db-1", "alertname": "DiskFull"}) == "4710633b6cb74584"
    assert label_fingerprint({"host": "db-2", "alertname": "DiskFull"}) != "4710633b6cb74584"


def test_derived_fingerprint_cannot_be_imitated_by_separators_in_values() -> None:
    assert label_fingerprint({"a": "1,b=2"}) != label_fingerprint({"a": "1", "b": "2"})


def test_alert_without_alertname_label_is_named_as_such() -> None:
    raw = fixture("alertmanager_v4.json")
    del raw["alerts"][0]["labels"]["alertname"]
    assert events_from_alertmanager(raw)[0].name == UNNAMED


def test_unknown_fields_are_ignored() -> None:
    raw = fixture("alertmanager_v4.json")
    raw["newTopLevelField"] = {"x": 1}
    raw["alerts"][0]["someFutureField"] = [1, 2]
    assert events_from_alertmanager(raw) == events_from_alertmanager(fixture("alertmanager_v4.json"))


def test_alertmanager_payload_of_another_version_is_refused() -> None:
    raw = fixture("alertmanager_v4.json")
    raw["version"] = "5"
    with pytest.raises(ValidationError, match="version"):
        events_from_alertmanager(raw)


@pytest.mark.parametrize(
    ("field", "value"),
    [("labels", {"alertname": 3}), ("status", "pending"), ("startsAt", "yesterday")],
)
def test_alert_with_a_malformed_field_we_use_is_refused(field: str, value: object) -> None:
    raw = fixture("alertmanager_v4.json")
    raw["alerts"][1][field] = value
    with pytest.raises(ValidationError, match=f"alerts.1.{field}"):
        events_from_alertmanager(raw)


def test_payload_over_the_alert_limit_is_refused_before_its_alerts_are_parsed() -> None:
    raw = {"version": "4", "status": "firing", "alerts": [{"not": "an alert"}] * 3}
    with pytest.raises(ValueError, match="has 3 alerts; at most 2 are accepted") as refused:
        events_from_alertmanager(raw, max_alerts=2)
    assert not isinstance(refused.value, ValidationError)


def test_parsed_payload_over_the_alert_limit_is_refused() -> None:
    payload = AlertmanagerPayload.model_validate(fixture("alertmanager_v4.json"))
    with pytest.raises(ValueError, match="has 2 alerts; at most 1 are accepted"):
        events_from_alertmanager(payload, max_alerts=1)


def test_default_alert_limit_is_a_thousand() -> None:
    alert = fixture("alertmanager_v4.json")["alerts"][0]
    raw = {"version": "4", "status": "firing", "alerts": [alert] * 1000}
    assert len(events_from_alertmanager(raw)) == 1000
    with pytest.raises(ValueError, match="at most 1000"):
        events_from_alertmanager({**raw, "alerts": [alert] * 1001})


# -- Grafana --


def test_grafana_unified_payload_becomes_an_event() -> None:
    assert events_from_grafana(fixture("grafana_unified.json")) == [
        AlertEvent(
            source="grafana",
            fingerprint="c6eadffa33fcdf37",
            status="firing",
            group_key='{}/{__grafana_autogenerated__="true"}/{__grafana_receiver__="logtriage"}:'
            '{alertname="High memory usage", grafana_folder="payments"}',
            labels={
                "alertname": "High memory usage",
                "grafana_folder": "payments",
                "namespace": "prod",
                "app": "checkout",
            },
            annotations={
                "description": "checkout uses 93% of its memory limit",
                "runbook_url": "https://runbooks.example.com/checkout/memory",
                "summary": "checkout is close to OOM",
            },
            starts_at=datetime(2024, 5, 1, 12, 51, 3, 157076, tzinfo=UTC),  # sent as +02:00
            ends_at=None,
            generator_url="https://grafana.example.com/alerting/grafana/1afz29v7z/view?orgId=1",
            name="High memory usage",
        )
    ]


def test_grafana_alert_may_carry_value_string_instead_of_values() -> None:
    raw = fixture("grafana_unified.json")
    del raw["alerts"][0]["values"]
    raw["alerts"][0]["valueString"] = "[ metric='' labels={} value=14151.33 ]"
    assert events_from_grafana(raw) == events_from_grafana(fixture("grafana_unified.json"))


# -- generic --


def test_minimal_generic_alert_is_firing_named_and_fingerprinted_from_labels() -> None:
    (event,) = events_from_generic({"alerts": [{"name": "OrderBacklog", "labels": {"service": "orders"}}]})
    assert event == AlertEvent(
        source="generic",
        fingerprint="77187644854e5a3f",
        status="firing",
        group_key="77187644854e5a3f",
        labels={"alertname": "OrderBacklog", "service": "orders"},
        annotations={},
        starts_at=None,
        ends_at=None,
        generator_url=None,
        name="OrderBacklog",
    )
    assert event.fingerprint == label_fingerprint({"alertname": "OrderBacklog", "service": "orders"})


def test_generic_alert_keeps_its_own_fingerprint_group_key_status_and_start() -> None:
    (event,) = events_from_generic(
        {
            "alerts": [
                {
                    "name": "OrderBacklog",
                    "status": "resolved",
                    "fingerprint": "orders-backlog",
                    "group_key": "orders",
                    "starts_at": "2024-05-01T12:00:00",
                }
            ]
        }
    )
    assert (event.fingerprint, event.group_key, event.status) == ("orders-backlog", "orders", "resolved")
    assert event.starts_at == datetime(2024, 5, 1, 12, tzinfo=UTC)  # a naive time is taken as UTC


def test_generic_alert_keeps_an_alertname_label_of_its_own() -> None:
    (event,) = events_from_generic({"alerts": [{"name": "Backlog", "labels": {"alertname": "OrderBacklog"}}]})
    assert (event.name, event.labels) == ("Backlog", {"alertname": "OrderBacklog"})


@pytest.mark.parametrize(
    "logs",
    [
        ["12:00:01 ERROR db timeout", "12:00:02 ERROR db timeout"],
        "12:00:01 ERROR db timeout\n12:00:02 ERROR db timeout",
    ],
)
def test_generic_inline_logs_become_the_logs_annotation(logs: list[str] | str) -> None:
    (event,) = events_from_generic(
        {"alerts": [{"name": "DbTimeouts", "annotations": {"summary": "s"}, "logs": logs}]}
    )
    assert event.annotations == {
        "summary": "s",
        "logs": "12:00:01 ERROR db timeout\n12:00:02 ERROR db timeout",
    }


def test_generic_alert_giving_logs_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="gives logs twice"):
        events_from_generic({"alerts": [{"name": "X", "logs": ["a"], "annotations": {"logs": "b"}}]})


@pytest.mark.parametrize(
    ("body", "complaint"),
    [({"alerts": []}, "at least 1 item"), ({"alerts": [{"labels": {}}]}, "alerts.0.name"), ({}, "alerts")],
)
def test_generic_payload_without_a_named_alert_is_refused(body: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        events_from_generic(body)


def test_every_generic_alert_field_is_documented_for_openapi() -> None:
    schema = GenericPayload.model_json_schema()
    alert_fields = schema["$defs"]["GenericAlert"]["properties"]
    assert set(alert_fields) == {
        "name",
        "status",
        "labels",
        "annotations",
        "fingerprint",
        "group_key",
        "starts_at",
        "logs",
    }
    assert [name for name, spec in alert_fields.items() if not spec.get("description")] == []
    assert schema["properties"]["alerts"]["description"]


# -- Grafana signature --

BODY = (FIXTURES / "grafana_unified.json").read_bytes()  # the raw bytes, as Grafana sent them
SECRET = "s3cret-shared-with-grafana"
NOW = 1_714_564_800.0


def test_signature_over_the_body_is_accepted() -> None:
    headers = {SIGNATURE_HEADER: grafana_signature(BODY, SECRET)}
    verify_grafana_signature(BODY, headers, SECRET)


def test_signature_over_timestamp_and_body_is_accepted_while_fresh() -> None:
    timestamp = str(int(NOW) - 299)
    headers = {SIGNATURE_HEADER: grafana_signature(BODY, SECRET, timestamp), TIMESTAMP_HEADER: timestamp}
    verify_grafana_signature(BODY, headers, SECRET, now=NOW)


def test_signed_message_is_timestamp_colon_body_hmac_sha256_hex() -> None:
    # An independent computation of what Grafana's docs describe: HMAC(timestamp + ":" + body).
    expected = hmac.new(b"k", b"1714564800:{}", hashlib.sha256).hexdigest()
    assert grafana_signature(b"{}", "k", "1714564800") == expected


def test_header_names_match_case_insensitively() -> None:
    timestamp = str(int(NOW))
    headers = {
        SIGNATURE_HEADER.lower(): grafana_signature(BODY, SECRET, timestamp).upper(),
        TIMESTAMP_HEADER.upper(): timestamp,
    }
    verify_grafana_signature(BODY, headers, SECRET, now=NOW)


def test_request_without_signature_header_is_refused() -> None:
    with pytest.raises(
        SignatureError, match="missing signature: the request has no X-Grafana-Alerting-Signature"
    ):
        verify_grafana_signature(BODY, {"Content-Type": "application/json"}, SECRET)


def test_tampered_body_is_refused() -> None:
    headers = {SIGNATURE_HEADER: grafana_signature(BODY, SECRET)}
    with pytest.raises(SignatureError, match="bad signature"):
        verify_grafana_signature(BODY.replace(b"firing", b"resolved"), headers, SECRET)


def test_signature_made_with_another_secret_is_refused() -> None:
    headers = {SIGNATURE_HEADER: grafana_signature(BODY, "another secret")}
    with pytest.raises(SignatureError, match="bad signature"):
        verify_grafana_signature(BODY, headers, SECRET)


def test_a_fresh_timestamp_swapped_onto_an_old_signature_is_refused() -> None:
    old = str(int(NOW) - 3600)
    headers = {SIGNATURE_HEADER: grafana_signature(BODY, SECRET, old), TIMESTAMP_HEADER: str(int(NOW))}
    with pytest.raises(SignatureError, match="bad signature"):
        verify_grafana_signature(BODY, headers, SECRET, now=NOW)


def test_stale_timestamp_is_refused_even_when_correctly_signed() -> None:
    old = str(int(NOW) - 301)
    headers = {SIGNATURE_HEADER: grafana_signature(BODY, SECRET, old), TIMESTAMP_HEADER: old}
    with pytest.raises(SignatureError, match="stale timestamp: .* is 301 s old, more than the 300 s allowed"):
        verify_grafana_signature(BODY, headers, SECRET, now=NOW)


def test_timestamp_far_in_the_future_is_refused() -> None:
    ahead = str(int(NOW) + 600)
    headers = {SIGNATURE_HEADER: grafana_signature(BODY, SECRET, ahead), TIMESTAMP_HEADER: ahead}
    with pytest.raises(SignatureError, match="timestamp in the future"):
        verify_grafana_signature(BODY, headers, SECRET, now=NOW, tolerance_s=60)


def test_timestamp_that_is_not_unix_seconds_is_refused() -> None:
    headers = {
        SIGNATURE_HEADER: grafana_signature(BODY, SECRET, "x"),
        TIMESTAMP_HEADER: "2024-05-01T12:00:00Z",
    }
    with pytest.raises(SignatureError, match="bad timestamp: .* must be Unix seconds"):
        verify_grafana_signature(BODY, headers, SECRET, now=NOW)


def test_missing_timestamp_is_refused_when_required() -> None:
    headers = {SIGNATURE_HEADER: grafana_signature(BODY, SECRET)}
    with pytest.raises(SignatureError, match="missing timestamp"):
        verify_grafana_signature(BODY, headers, SECRET, require_timestamp=True)


def test_custom_header_names_are_honoured() -> None:
    timestamp = str(int(NOW))
    headers = {"X-Sig": grafana_signature(BODY, SECRET, timestamp), "X-Ts": timestamp}
    verify_grafana_signature(
        BODY, headers, SECRET, now=NOW, signature_header="x-sig", timestamp_header="x-ts"
    )


def test_an_empty_secret_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="secret is empty"):
        verify_grafana_signature(BODY, {SIGNATURE_HEADER: grafana_signature(BODY, "")}, "")
