"""The Slack app's configuration, checked once at startup, and the Web API client built from it.

`slack_config(settings)` turns the `LOGTRIAGE_SLACK_*` settings into a `SlackConfig`: None when Slack
is off (no bot token), a `ConfigError` naming the variable to set when it is half configured. The
library code below takes a `SlackConfig` and never reads the environment.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from integrations.settings import ConfigError, Settings

logger = logging.getLogger(__name__)

DEFAULT_API_URL = "https://slack.com/api/"
NO_FLAG = "(env or config file; secrets have no flag, so they stay off the command line)"


def reaction_name(reaction: str) -> str:
    """The reaction without its skin tone: '+1::skin-tone-3' is '+1'."""
    return reaction.split("::", 1)[0]


@dataclass(frozen=True)
class ReactionMap:
    """Which reactions on an answer mean 'the verdict is correct' and which mean 'it is wrong'."""

    correct: frozenset[str] = frozenset({"white_check_mark", "+1"})
    wrong: frozenset[str] = frozenset({"x", "-1"})

    def polarity(self, reaction: str) -> bool | None:
        """True: correct, False: wrong, None: a reaction that is not feedback."""
        name = reaction_name(reaction)
        if name in self.correct:
            return True
        if name in self.wrong:
            return False
        return None


@dataclass(frozen=True)
class SlackConfig:
    bot_token: str
    signing_secret: str | None  # None only in Socket Mode, where Slack's socket authenticates requests
    app_token: str | None = None
    api_url: str = DEFAULT_API_URL
    alert_channel: str | None = None
    allowed_teams: frozenset[str] = frozenset()  # empty: every workspace
    allowed_channels: frozenset[str] = frozenset()  # empty: every channel
    reactions: ReactionMap = field(default_factory=ReactionMap)
    incident_url: str | None = None  # "https://host/incidents/{id}"; None: ids are shown as code
    max_retry_after_s: float = 30.0
    stream_update_s: float = 2.0  # at most one chat.update of a streaming explanation per interval
    request_timeout_s: float = 10.0
    workers: int = 4  # threads answering at once (triage, LLM); more requests queue, acks never do

    def allows(self, team: str | None, channel: str | None) -> bool:
        """Whether requests from this workspace and channel are served (None: not known, allowed)."""
        if self.allowed_teams and team is not None and team not in self.allowed_teams:
            return False
        return not (self.allowed_channels and channel is not None and channel not in self.allowed_channels)

    def incident_link(self, incident_id: str) -> str | None:
        return self.incident_url.replace("{id}", incident_id) if self.incident_url else None


def _secret(value: Any) -> str | None:
    text = value.get_secret_value().strip() if value is not None else ""
    return text or None


def _names(value: str | None) -> frozenset[str]:
    return frozenset(part.strip() for part in (value or "").split(",") if part.strip())


def slack_config(settings: Settings, *, socket_mode: bool = False) -> SlackConfig | None:
    """The Slack configuration, or None when Slack is off. Raises ConfigError when half configured.

    HTTP mode (`logtriage serve`) needs the bot token and the signing secret; Socket Mode
    (`logtriage slack --socket`) needs the bot token and the app-level token.
    """
    bot_token = _secret(settings.slack_bot_token)
    signing_secret = _secret(settings.slack_signing_secret)
    app_token = _secret(settings.slack_app_token)
    if bot_token is None:
        if socket_mode or signing_secret or app_token:
            raise ConfigError(
                "Slack needs the bot token: set LOGTRIAGE_SLACK_BOT_TOKEN (xoxb-..., Slack app → OAuth & "
                f"Permissions) {NO_FLAG}, or unset the other LOGTRIAGE_SLACK_* secrets to turn Slack off"
            )
        return None
    if socket_mode and app_token is None:
        raise ConfigError(
            "Socket Mode needs an app-level token: set LOGTRIAGE_SLACK_APP_TOKEN (xapp-..., Slack app → "
            f"Basic Information → App-Level Tokens, scope connections:write) {NO_FLAG}"
        )
    if not socket_mode and signing_secret is None:
        raise ConfigError(
            "LOGTRIAGE_SLACK_BOT_TOKEN is set, so `logtriage serve` serves Slack at /slack/*, and that "
            "needs the app's signing secret to verify requests: set LOGTRIAGE_SLACK_SIGNING_SECRET (Slack "
            f"app → Basic Information → Signing Secret) {NO_FLAG}, or unset LOGTRIAGE_SLACK_BOT_TOKEN"
        )
    reactions = ReactionMap(_names(settings.slack_correct_reactions), _names(settings.slack_wrong_reactions))
    if reactions.correct & reactions.wrong or not (reactions.correct and reactions.wrong):
        raise ConfigError(
            "LOGTRIAGE_SLACK_CORRECT_REACTIONS and LOGTRIAGE_SLACK_WRONG_REACTIONS must each name at least "
            f"one reaction and share none; got {sorted(reactions.correct)} and {sorted(reactions.wrong)}"
        )
    if settings.slack_incident_url and "{id}" not in settings.slack_incident_url:
        raise ConfigError(
            f"LOGTRIAGE_SLACK_INCIDENT_URL must contain {{id}}; got {settings.slack_incident_url!r}"
        )
    api_url = settings.slack_api_url.rstrip("/") + "/"
    if not api_url.startswith(("http://", "https://")):
        raise ConfigError(f"LOGTRIAGE_SLACK_API_URL must be an http(s) URL; got {settings.slack_api_url!r}")
    return SlackConfig(
        bot_token=bot_token,
        signing_secret=signing_secret,
        app_token=app_token,
        api_url=api_url,
        alert_channel=settings.slack_alert_channel or None,
        allowed_teams=_names(settings.slack_allowed_teams),
        allowed_channels=_names(settings.slack_allowed_channels),
        reactions=reactions,
        incident_url=settings.slack_incident_url or None,
        max_retry_after_s=settings.slack_max_retry_after_s,
    )


class RetryAfterHandler(RetryHandler):
    """On a 429, waits exactly what Slack's Retry-After asks, then retries; up to `max_wait_s`.

    A longer Retry-After is not waited for: the 429 reaches the caller (the notifier turns it into
    a retryable error, so the alert job is tried again later instead of holding a worker).
    """

    def __init__(self, max_retry_count: int = 3, max_wait_s: float = 30.0) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait_s = max_wait_s

    @staticmethod
    def retry_after(response: HttpResponse | None) -> float | None:
        if response is None or response.status_code != 429:
            return None
        for key, value in response.headers.items():
            if key.lower() == "retry-after":
                raw = value[0] if isinstance(value, list) else value
                try:
                    return max(0.0, float(raw))
                except (TypeError, ValueError):
                    return 1.0
        return 1.0  # a 429 without the header: Slack's documented minimum

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        wait = self.retry_after(response)
        return wait is not None and wait <= self.max_wait_s

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        wait = self.retry_after(response) or 0.0
        logger.info("Slack rate-limited %s; retrying after %.1f s (Retry-After)", request.url, wait)
        state.next_attempt_requested = True
        time.sleep(wait)  # Slack asks for exactly this pause; retrying sooner is refused again
        state.increment_current_attempt()


def web_client(config: SlackConfig) -> WebClient:
    """A Web API client for the bot: the configured base URL, and 429s that honour Retry-After."""
    return WebClient(
        token=config.bot_token,
        base_url=config.api_url,
        timeout=int(config.request_timeout_s),
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=1),
            RetryAfterHandler(max_wait_s=config.max_retry_after_s),
        ],
    )
