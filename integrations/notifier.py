"""Telling people about an incident once an alert has been triaged.

`Notifier` is the one interface the alert workers call. Implementations raise `NotifierError`,
and nothing else, when a notice was not delivered; its `retryable` flag says whether trying the
job again may help (the receiver was down or rate-limited) or not (it rejected the request).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)


class IncidentNotice(BaseModel):
    """What a notifier says about one incident: the alert, the detector's verdict, the triage."""

    model_config = ConfigDict(frozen=True)

    incident_id: str | None  # None: a resolution for a group that was never stored as one
    group_key: str | None
    status: Literal["firing", "resolved"]
    alert_names: list[str] = Field(default_factory=list)
    verdict: str | None = None  # the detector's verdict, e.g. "anomalous"
    probability: float | None = None  # the detector's anomaly probability
    category: str | None = None
    triage_status: str  # how far triage got, e.g. "triaged", "no_logs", "failed"
    explanation: str | None = None
    similar_incident_ids: list[str] = Field(default_factory=list)
    link: str | None = None


class NotifierError(RuntimeError):
    """A notice was not delivered. `target` names the receiver without credentials; `causes`
    holds each receiver's own error when several were notified."""

    def __init__(
        self,
        target: str,
        reason: str,
        *,
        retryable: bool,
        status: int | None = None,
        causes: Sequence[NotifierError] = (),
    ) -> None:
        self.target = target
        self.reason = reason
        self.retryable = retryable
        self.status = status
        self.causes = list(causes)
        super().__init__(f"notify {target} failed ({reason}){'' if retryable else '; not retryable'}")


class Notifier(Protocol):
    def notify(self, notice: IncidentNotice) -> None:
        """Deliver the notice; raise NotifierError if it was not delivered."""
        ...


def redact_url(url: str | httpx.URL) -> str:
    """The URL without user info or query string, which is where credentials ride."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(username=None, password=None, query=None, fragment=None))


class CallbackNotifier:
    """POSTs the notice as JSON to a callback URL (any HTTP receiver, e.g. a chat-ops bridge).

    Basic-auth credentials in the URL are sent and never shown; pass tokens in `headers`.
    A 429 or 5xx answer, a timeout or a connection error is retryable; another 4xx is not.
    """

    def __init__(self, url: str, timeout_s: float = 5, headers: Mapping[str, str] | None = None) -> None:
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"a callback URL must be http(s)://host/...; got {redact_url(url)!r}")
        self.url = url
        self.target = redact_url(url)
        self._client = httpx.Client(timeout=timeout_s, headers=dict(headers or {}))

    def notify(self, notice: IncidentNotice) -> None:
        try:
            response = self._client.post(self.url, json=notice.model_dump(mode="json"))
        except httpx.TimeoutException as exc:
            raise NotifierError(self.target, f"timed out: {type(exc).__name__}", retryable=True) from exc
        except httpx.TransportError as exc:
            raise NotifierError(self.target, f"{type(exc).__name__}: {exc}", retryable=True) from exc
        if response.is_success:
            return
        code = response.status_code
        reason = f"HTTP {code}: {response.text[:200]!r}"
        raise NotifierError(self.target, reason, retryable=code == 429 or code >= 500, status=code)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> CallbackNotifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class LogNotifier:
    """Logs a one-line summary of each notice: the notifier when no receiver is configured."""

    def __init__(self, logger_: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self._logger = logger_ or logger
        self._level = level

    def notify(self, notice: IncidentNotice) -> None:
        self._logger.log(self._level, "%s", summary(notice))


def summary(notice: IncidentNotice) -> str:
    """One line for logs and chat: status, incident, alerts, verdict, category, triage, link."""
    incident = f"incident {notice.incident_id}" if notice.incident_id else "no incident"
    parts = [f"[{notice.status}] {incident}"]
    if notice.alert_names:
        parts.append(f"alerts={','.join(notice.alert_names)}")
    if notice.verdict is not None:
        probability = "" if notice.probability is None else f" (p={notice.probability:.2f})"
        parts.append(f"verdict={notice.verdict}{probability}")
    if notice.category is not None:
        parts.append(f"category={notice.category}")
    parts.append(f"triage={notice.triage_status}")
    if notice.similar_incident_ids:
        parts.append(f"similar={','.join(notice.similar_incident_ids)}")
    if notice.group_key is not None:
        parts.append(f"group={notice.group_key}")
    if notice.link is not None:
        parts.append(notice.link)
    # Explanations span lines; the summary must stay one line, so only the first is shown.
    if notice.explanation:
        parts.append(f"— {notice.explanation.strip().splitlines()[0]}")
    return " ".join(parts)


class FanOutNotifier:
    """Notifies every notifier in turn; one's failure does not stop the others.

    Afterwards, failures are raised as one NotifierError listing them all, retryable if any is.
    """

    def __init__(self, notifiers: Sequence[Notifier]) -> None:
        self.notifiers = list(notifiers)

    def notify(self, notice: IncidentNotice) -> None:
        errors: list[NotifierError] = []
        for notifier in self.notifiers:
            try:
                notifier.notify(notice)
            except NotifierError as exc:
                errors.append(exc)
        if errors:
            raise NotifierError(
                f"{len(errors)} of {len(self.notifiers)} notifiers",
                "; ".join(str(error) for error in errors),
                retryable=any(error.retryable for error in errors),
                causes=errors,
            )
