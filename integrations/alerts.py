"""Alert webhook payloads (Alertmanager, Grafana, a generic form) and their one normalised shape.

Alerting systems push alerts to `logtriage serve`; each payload is parsed into its own model here
and then normalised into `AlertEvent`s, which is all the rest of the pipeline sees. The models
ignore fields they do not know (both senders add fields over time) but are strict about the ones we
use: statuses, labels and annotations as string maps, and timestamps.

References:
- Alertmanager: https://prometheus.io/docs/alerting/latest/configuration/#webhook_config
- Grafana: https://grafana.com/docs/grafana/latest/alerting/configure-notifications/manage-contact-points/integrations/webhook-notifier/
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

logger = logging.getLogger(__name__)

AlertStatus = Literal["firing", "resolved"]
AlertSourceName = Literal["alertmanager", "grafana", "generic"]

DEFAULT_MAX_ALERTS = 1000
UNNAMED = "(no alertname)"  # the name of an alert without an `alertname` label
LOGS_ANNOTATION = "logs"  # where inline logs end up; `log_sources.AnnotationLogs` reads it first


class _Lenient(BaseModel):
    """Ignores unknown fields; accepts both the wire (camelCase) and the Python names."""

    model_config = ConfigDict(extra="ignore", validate_by_name=True, validate_by_alias=True)


class _Payload(_Lenient):
    if TYPE_CHECKING:  # each payload declares its own `alerts`, in its documented field order
        alerts: Sequence[_Lenient]


# -- Alertmanager (webhook_config, payload version 4) --


class AlertmanagerAlert(_Lenient):
    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    # Alertmanager sends Go's zero time, 0001-01-01T00:00:00Z, while the alert has no end.
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = ""


class AlertmanagerPayload(_Payload):
    """The body Alertmanager POSTs to a `webhook_config` receiver (payload version 4)."""

    version: Literal["4"]
    group_key: str = Field(default="", alias="groupKey")
    truncated_alerts: int = Field(default=0, ge=0, alias="truncatedAlerts")
    status: AlertStatus
    receiver: str = ""
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    alerts: list[AlertmanagerAlert]


# -- Grafana unified alerting (webhook contact point, payload version 1) --


class GrafanaAlert(AlertmanagerAlert):
    silence_url: str = Field(default="", alias="silenceURL")
    dashboard_url: str = Field(default="", alias="dashboardURL")
    panel_url: str = Field(default="", alias="panelURL")
    image_url: str = Field(default="", alias="imageURL")
    # Query results by refID; not used for triage, so any JSON is accepted.
    values: dict[str, Any] | None = None
    value_string: str = Field(default="", alias="valueString")


class GrafanaPayload(_Payload):
    """The body a Grafana webhook contact point POSTs (the default, untemplated payload)."""

    receiver: str = ""
    status: AlertStatus
    org_id: int | None = Field(default=None, alias="orgId")
    alerts: list[GrafanaAlert]
    group_key: str = Field(default="", alias="groupKey")
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    version: Literal["1"] = "1"
    title: str = ""
    state: str = ""  # "alerting" or "ok"
    message: str = ""
    truncated_alerts: int = Field(default=0, ge=0, alias="truncatedAlerts")


# -- The generic form, for senders with no Alertmanager or Grafana format --


class GenericAlert(_Lenient):
    """One alert in the generic form. Only `name` is required."""

    name: str = Field(
        min_length=1,
        description="What fired, e.g. 'PaymentErrors'. Also set as the `alertname` label unless "
        "`labels` already has one.",
    )
    status: AlertStatus = Field(
        default="firing", description="'firing' or 'resolved'. A resolved alert closes its incident."
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Identifying labels, e.g. {'service': 'payments', 'namespace': 'prod'}. They "
        "fill the log source's query (e.g. a Loki selector) and, with `name`, derive the fingerprint.",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Free-text details. `logs`, `log_excerpt` or `description` (in that order) "
        "serve as the alert's logs when no other log source has any.",
    )
    fingerprint: str | None = Field(
        default=None,
        description="A stable id of this alert across notifications. Default: derived from the "
        "labels (first 16 hex digits of the SHA-256 of the sorted labels).",
    )
    group_key: str | None = Field(
        default=None,
        description="Alerts with one group key belong to one incident. Default: the fingerprint.",
    )
    starts_at: datetime | None = Field(
        default=None,
        description="When the alert started (RFC 3339). Logs are fetched around it. Default: the "
        "time the alert is received.",
    )
    logs: list[str] | str | None = Field(
        default=None,
        description="The log lines themselves, as a list or one newline-separated string. They are "
        "stored as the `logs` annotation, so give them here or there, not both.",
    )

    @model_validator(mode="after")
    def _logs_given_once(self) -> GenericAlert:
        if self.logs is not None and LOGS_ANNOTATION in self.annotations:
            raise ValueError(
                f"alert {self.name!r} gives logs twice, in `logs` and in annotations['logs']; keep one"
            )
        return self


class GenericPayload(_Payload):
    """The generic alert webhook body: `{"alerts": [{"name": ..., ...}, ...]}`."""

    alerts: list[GenericAlert] = Field(description="The alerts; at least one.", min_length=1)


# -- The normalised event --


class AlertEvent(BaseModel):
    """One alert, whatever sent it. Everything after parsing works on these."""

    model_config = ConfigDict(frozen=True)

    source: AlertSourceName
    fingerprint: str
    status: AlertStatus
    group_key: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None
    ends_at: datetime | None
    generator_url: str | None
    name: str


def label_fingerprint(labels: Mapping[str, str]) -> str:
    """A stable id for a label set: the first 16 hex digits of SHA-256 over the sorted labels.

    The labels are serialised as JSON pairs so that no label value can imitate a separator.
    """
    canonical = json.dumps(sorted(labels.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def events_from_alertmanager(
    payload: AlertmanagerPayload | Mapping[str, Any], *, max_alerts: int = DEFAULT_MAX_ALERTS
) -> list[AlertEvent]:
    """Normalise an Alertmanager webhook body. Raises ValueError (or pydantic's ValidationError,
    a ValueError) when it is malformed or carries more than `max_alerts` alerts."""
    parsed = _parse(AlertmanagerPayload, payload, max_alerts)
    _note_truncation("alertmanager", parsed.truncated_alerts, parsed.group_key)
    return [_from_alert("alertmanager", alert, parsed.group_key) for alert in parsed.alerts]


def events_from_grafana(
    payload: GrafanaPayload | Mapping[str, Any], *, max_alerts: int = DEFAULT_MAX_ALERTS
) -> list[AlertEvent]:
    """Normalise a Grafana webhook contact point body. Raises ValueError as
    `events_from_alertmanager` does."""
    parsed = _parse(GrafanaPayload, payload, max_alerts)
    _note_truncation("grafana", parsed.truncated_alerts, parsed.group_key)
    return [_from_alert("grafana", alert, parsed.group_key) for alert in parsed.alerts]


def events_from_generic(
    payload: GenericPayload | Mapping[str, Any], *, max_alerts: int = DEFAULT_MAX_ALERTS
) -> list[AlertEvent]:
    """Normalise a generic alert body. Inline `logs` become the `logs` annotation, newline-joined."""
    parsed = _parse(GenericPayload, payload, max_alerts)
    return [_from_generic(alert) for alert in parsed.alerts]


_P = TypeVar("_P", bound=_Payload)


def _parse(model: type[_P], payload: _P | Mapping[str, Any], max_alerts: int) -> _P:
    if max_alerts < 1:
        raise ValueError(f"max_alerts must be at least 1, got {max_alerts}")
    if isinstance(payload, model):
        parsed = payload
    elif isinstance(payload, Mapping):
        # Count before validating, so an oversized body is refused without parsing every alert.
        raw_alerts = payload.get("alerts")
        if isinstance(raw_alerts, list):
            _check_count(len(raw_alerts), max_alerts)
        parsed = model.model_validate(payload)
    else:
        raise ValueError(f"expected a {model.__name__} or a JSON object, got a {type(payload).__name__}")
    _check_count(len(parsed.alerts), max_alerts)
    return parsed


def _check_count(n_alerts: int, max_alerts: int) -> None:
    if n_alerts > max_alerts:
        raise ValueError(
            f"the payload has {n_alerts} alerts; at most {max_alerts} are accepted in one request. "
            "Send fewer per notification (Alertmanager: max_alerts in webhook_config; Grafana: Max Alerts)."
        )


def _note_truncation(source: str, truncated: int, group_key: str) -> None:
    if truncated:
        logger.warning(
            "%s left %d alerts out of group %r (its max_alerts); they are not triaged",
            source,
            truncated,
            group_key,
        )


def _from_alert(source: AlertSourceName, alert: AlertmanagerAlert, group_key: str) -> AlertEvent:
    fingerprint = alert.fingerprint or label_fingerprint(alert.labels)
    return AlertEvent(
        source=source,
        fingerprint=fingerprint,
        status=alert.status,
        group_key=group_key or fingerprint,
        labels=dict(alert.labels),
        annotations=dict(alert.annotations),
        starts_at=_utc(alert.starts_at),
        ends_at=_utc(alert.ends_at),
        generator_url=alert.generator_url or None,
        name=alert.labels.get("alertname", UNNAMED),
    )


def _from_generic(alert: GenericAlert) -> AlertEvent:
    labels = {"alertname": alert.name, **alert.labels}
    annotations = dict(alert.annotations)
    if alert.logs is not None:
        lines = [alert.logs] if isinstance(alert.logs, str) else alert.logs
        annotations[LOGS_ANNOTATION] = "\n".join(lines)
    fingerprint = alert.fingerprint or label_fingerprint(labels)
    return AlertEvent(
        source="generic",
        fingerprint=fingerprint,
        status=alert.status,
        group_key=alert.group_key or fingerprint,
        labels=labels,
        annotations=annotations,
        starts_at=_utc(alert.starts_at),
        ends_at=None,
        generator_url=None,
        name=alert.name,
    )


def _utc(moment: datetime | None) -> datetime | None:
    """In UTC; None for Go's zero time (year 1), which is how Alertmanager and Grafana say 'unset'.
    A time without a zone (the generic form allows one) is taken to be UTC."""
    if moment is None or moment.year == 1:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
