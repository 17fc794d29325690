"""Alert threads in Slack: one message per alert group, updated in place, with its resolution.

`SlackNotifier` implements `integrations.notifier.Notifier`. The first notice of a group posts the
thread head (chat.postMessage); later notices of the group update that message (chat.update), so a
channel shows one line per group however often Alertmanager repeats itself. A resolution updates
the head and also replies in the thread, which notifies the people following it. The head is an
answer like any other: reactions and buttons on it are feedback on the group's incident.
"""

from __future__ import annotations

import threading
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from integrations.notifier import IncidentNotice, NotifierError
from integrations.slack_blocks import Links, notice_blocks
from integrations.slack_state import AlertThread, AnswerRef, SlackState, default_thread_id

# Slack's error codes that mean "try again later"; anything else (channel_not_found, invalid_auth,
# not_in_channel, ...) will fail the same way again.
RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "service_unavailable", "fatal_error", "internal_error", "request_timeout"}
)


class SlackNotifier:
    def __init__(
        self, client: WebClient, channel: str, state: SlackState, links: Links | None = None
    ) -> None:
        self.client = client
        self.channel = channel
        self.state = state
        self.links = links
        self.target = f"Slack channel {channel}"
        # Two workers may finish alerts of one group together: one posts the head, the other updates it.
        self._lock = threading.Lock()

    def notify(self, notice: IncidentNotice) -> None:
        key = notice.group_key or (f"incident:{notice.incident_id}" if notice.incident_id else None)
        try:
            with self._lock:
                thread = self.state.alert_thread(key) if key else None
                if thread is None:
                    self._post(key, notice)
                else:
                    self._update(key, thread, notice)
        except SlackApiError as err:
            status = err.response.status_code
            code = str(err.response.get("error") or "")
            retryable = status == 429 or status >= 500 or code in RETRYABLE_ERRORS
            raise NotifierError(
                self.target, f"HTTP {status}: {code}", retryable=retryable, status=status
            ) from err
        except (URLError, OSError) as err:  # unreachable or timed out: Slack may answer later
            raise NotifierError(self.target, f"{type(err).__name__}: {err}", retryable=True) from err

    def _post(self, key: str | None, notice: IncidentNotice) -> None:
        alerts: dict[str, str] = {name: notice.status for name in notice.alert_names}
        shown = notice.model_copy(update={"alert_names": _labelled(alerts)})
        response = self.client.chat_postMessage(
            channel=self.channel, text=_text(shown), blocks=notice_blocks(shown, links=self.links)
        )
        channel, ts = str(response["channel"]), str(response["ts"])
        if key is not None:
            self.state.save_alert_thread(
                key, AlertThread(channel, ts, notice.model_dump(mode="json"), alerts)
            )
        self._remember(channel, ts, notice)

    def _update(self, key: str | None, thread: AlertThread, notice: IncidentNotice) -> None:
        before = IncidentNotice.model_validate(thread.notice)
        alerts = {**thread.alerts, **{name: notice.status for name in notice.alert_names}}
        after = merged(before, notice, alerts)
        shown = after.model_copy(update={"alert_names": _labelled(alerts)})
        self.client.chat_update(
            channel=thread.channel,
            ts=thread.ts,
            text=_text(shown),
            blocks=notice_blocks(shown, links=self.links),
        )
        if key is not None:
            self.state.save_alert_thread(
                key, AlertThread(thread.channel, thread.ts, after.model_dump(mode="json"), alerts)
            )
        self._remember(thread.channel, thread.ts, after)
        if after.status != before.status:  # the group resolved, or fires again: tell the thread
            icon = (
                ":large_green_circle: resolved"
                if after.status == "resolved"
                else ":rotating_light: firing again"
            )
            names = ", ".join(notice.alert_names) or "the alert"
            self.client.chat_postMessage(channel=thread.channel, thread_ts=thread.ts, text=f"{icon}: {names}")

    def _remember(self, channel: str, ts: str, notice: IncidentNotice) -> None:
        """Make the head an answer, so reactions and buttons on it are feedback on the incident."""
        if notice.incident_id:
            self.state.record_answer(
                AnswerRef(channel, ts, notice.incident_id, default_thread_id(channel, ts), ts)
            )


def merged(shown: IncidentNotice, new: IncidentNotice, alerts: dict[str, str]) -> IncidentNotice:
    """What the head shows after `new`, given every alert's latest status.

    The group fires while any of its alerts does. A resolution carries no verdict of its own, so
    the head keeps the triage it has unless `new` brings one.
    """
    triaged = new if new.verdict is not None or shown.verdict is None else shown
    return triaged.model_copy(
        update={
            "status": "firing" if "firing" in alerts.values() else "resolved",
            "alert_names": list(alerts),
            "incident_id": new.incident_id or shown.incident_id,
            "link": new.link or shown.link,
            "triage_status": triaged.triage_status if new.verdict is not None else shown.triage_status,
        }
    )


def _labelled(alerts: dict[str, str]) -> list[str]:
    """Alert names with their status when the group's alerts differ."""
    if len(set(alerts.values())) <= 1:
        return list(alerts)
    return [f"{name} ({status})" for name, status in alerts.items()]


def _text(notice: IncidentNotice) -> str:
    """The notification text (shown in notifications and where blocks are not)."""
    names = ", ".join(notice.alert_names) or "alert"
    text = f"[{notice.status}] {names}"
    if notice.verdict is not None:
        probability = "" if notice.probability is None else f" p={notice.probability:.2f}"
        text += f": {notice.verdict}{probability}"
    if notice.category and notice.verdict == "anomalous":
        text += f" ({notice.category})"
    return text
