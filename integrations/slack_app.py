"""The Slack app (slack-bolt): mentions and DMs, `/logtriage`, "Triage this message", and feedback.

Every listener acknowledges at once and does its work in a lazy listener, which hands it to a
work pool of its own and returns: Bolt's listener pool, which also runs every acknowledgement, is
never held by triage or an LLM, so Slack's 3-second acknowledgement never waits for them. Requests reach the listeners
only after Bolt has verified the signing secret and the timestamp (HTTP mode) or came over the
app's own socket (Socket Mode), so the Slack user they name is an authenticated caller.

What runs when:
- a mention in a channel, or any message in a DM with the bot: logs in it are triaged into its
  thread; words without logs are a follow-up question in that thread's memory;
- `/logtriage <logs or question>`: the answer is posted in the channel and starts a thread;
- the "Triage this message" shortcut: the message's logs are triaged into its thread;
- a feedback reaction added or removed on an answer, the "Correct" button, the "Wrong" modal:
  feedback on the answer's incident, confirmed ephemerally.

Only those actions of the user's write anything. Log text is data, and a message's words can only
ask the assistant, whose feedback tool runs only when the user's own words ask for it.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import Ack, App, BoltContext, BoltRequest, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from assistant.service import new_thread_id
from integrations.slack_answers import (
    Respond,
    SlackDeps,
    Where,
    answer_question,
    confirm,
    tell,
    triage_into_thread,
)
from integrations.slack_blocks import CORRECT_ACTION, WRONG_ACTION, WRONG_MODAL, modal_values, wrong_modal
from integrations.slack_config import SlackConfig, web_client
from integrations.slack_extract import Extracted, download_files, extract
from integrations.slack_feedback import slack_caller
from tools import ToolFailedError, ToolInputError

logger = logging.getLogger(__name__)

COMMAND = "/logtriage"
SHORTCUT = "triage_message"
EVENTS = ("app_mention", "message.im", "reaction_added", "reaction_removed")
USAGE = (
    "Paste logs in a code block (or attach a log file) and I'll say whether they look anomalous, "
    "which past incidents they resemble, and why. Ask follow-ups in the thread."
)

DepsGetter = Callable[[], SlackDeps]


class SeenEvents:
    """Event ids already handled, so a retried event is handled once.

    Kept in memory, bounded by count and age: Slack retries an event three times within about five
    minutes (X-Slack-Retry-Num 1-3), to the same app. A duplicate that slips through a restart costs
    a repeated reply at worst, since feedback is idempotent per user; a database would add a write to
    every event's acknowledgement for that.
    """

    def __init__(self, capacity: int = 10_000, ttl_s: float = 3600.0) -> None:
        self.capacity = capacity
        self.ttl_s = ttl_s
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, event_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            while self._seen and next(iter(self._seen.values())) < now - self.ttl_s:
                self._seen.popitem(last=False)
            if event_id in self._seen:
                return False
            if len(self._seen) >= self.capacity:
                self._seen.popitem(last=False)
            self._seen[event_id] = now
            return True


def _header(request: BoltRequest, name: str) -> str:
    values = request.headers.get(name.lower()) or [""]
    return str(values[0])


def build_bolt_app(config: SlackConfig, deps: DepsGetter, *, client: WebClient | None = None) -> App:
    """The Bolt app; `deps` is called per request (the server builds its dependencies in its lifespan)."""
    app = App(
        name="logtriage",
        client=client or web_client(config),
        signing_secret=config.signing_secret,
        request_verification_enabled=config.signing_secret is not None,
        token_verification_enabled=False,  # no network call at startup; the first request checks it
        process_before_response=False,
        # Acks and the lazy listeners' hand-offs only: each is done in a few milliseconds.
        listener_executor=ThreadPoolExecutor(max_workers=16, thread_name_prefix="slack-ack"),
    )
    seen = SeenEvents()

    def dedupe_retries(
        body: dict[str, Any], request: BoltRequest, next: Callable[[], None]
    ) -> BoltResponse | None:
        event_id = body.get("event_id")
        if event_id and not seen.first_time(str(event_id)):
            logger.info(
                "ignored Slack's retry %s of event %s", _header(request, "X-Slack-Retry-Num"), event_id
            )
            return BoltResponse(status=200, body="", headers={"X-Slack-No-Retry": "1"})
        next()
        return None

    def allow_list(
        context: BoltContext, body: dict[str, Any], next: Callable[[], None]
    ) -> BoltResponse | None:
        if config.allows(context.team_id, context.channel_id):
            next()
            return None
        logger.info(
            "ignored a request from team %s, channel %s (allow-list)", context.team_id, context.channel_id
        )
        text = "logtriage is not enabled in this workspace or channel." if body.get("command") else ""
        return BoltResponse(status=200, body=text)

    app.middleware(dedupe_retries)
    app.middleware(allow_list)
    listeners = _Listeners(deps)
    work = _WorkPool(config.workers)
    app.event("app_mention")(ack=_ack, lazy=[work.lazy(listeners.mention)])
    app.event("message")(ack=_ack, lazy=[work.lazy(listeners.direct_message)])
    app.event("reaction_added")(ack=_ack, lazy=[work.lazy(listeners.reaction_added)])
    app.event("reaction_removed")(ack=_ack, lazy=[work.lazy(listeners.reaction_removed)])
    app.command(COMMAND)(ack=_ack_command, lazy=[work.lazy(listeners.command)])
    app.shortcut(SHORTCUT)(ack=_ack, lazy=[work.lazy(listeners.shortcut)])
    app.action(CORRECT_ACTION)(ack=_ack, lazy=[work.lazy(listeners.correct)])
    app.action(WRONG_ACTION)(ack=_ack, lazy=[work.lazy(listeners.open_wrong_modal)])
    app.view(WRONG_MODAL)(ack=_ack, lazy=[work.lazy(listeners.wrong_submitted)])
    app.error(_log_error)
    return app


class _WorkPool:
    """Where the lazy listeners' work runs: `workers` threads, queueing what is beyond them."""

    def __init__(self, workers: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="slack-work")

    def lazy(self, listener: Callable[..., None]) -> Callable[..., None]:
        """A lazy listener that submits `listener` with Bolt's arguments and returns at once."""

        # wraps() keeps the signature Bolt reads to choose the arguments it passes.
        @functools.wraps(listener)
        def hand_off(**kwargs: Any) -> None:
            self.executor.submit(self._run, listener, kwargs)

        return hand_off

    @staticmethod
    def _run(listener: Callable[..., None], kwargs: dict[str, Any]) -> None:
        try:
            listener(**kwargs)
        except Exception:  # the top-level handler of a work thread: log, never lose the thread
            logger.exception("Slack listener %s failed", getattr(listener, "__name__", listener))


def _ack(ack: Ack) -> None:
    ack()


def _ack_command(ack: Ack, command: dict[str, Any]) -> None:
    """The slash command's immediate, ephemeral reply."""
    text = str(command.get("text") or "").strip()
    ack(text=USAGE if not text else "Looking at it…")


def _log_error(error: Exception, body: dict[str, Any]) -> None:
    logger.error("Slack request of type %s failed: %s", body.get("type"), error, exc_info=error)


class _Listeners:
    """The lazy listeners: each is a top-level handler, so each maps every failure to a message."""

    def __init__(self, deps: DepsGetter) -> None:
        self.deps = deps
        # One conversation turn at a time per thread: a quick "why?" waits for the triage still
        # running in its thread instead of reading a thread memory that does not hold it yet.
        # Striped, so memory stays bounded; two threads sharing a stripe only wait for each other.
        self._thread_locks = [threading.Lock() for _ in range(64)]

    def _turn(self, thread_id: str) -> threading.Lock:
        return self._thread_locks[hash(thread_id) % len(self._thread_locks)]

    # -- messages --

    def mention(self, event: dict[str, Any], client: WebClient) -> None:
        if str(event.get("channel", "")).startswith("D"):
            return  # a mention in a DM also arrives as a message.im event, handled there
        self._converse(event, client)

    def direct_message(self, event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        ordinary = event.get("subtype") in (None, "file_share") and not event.get("bot_id")
        if event.get("channel_type") != "im" or not ordinary or event.get("user") == context.bot_user_id:
            return
        self._converse(event, client)

    def _converse(self, event: dict[str, Any], client: WebClient) -> None:
        d = self.deps()
        channel, root = str(event["channel"]), str(event.get("thread_ts") or event["ts"])
        where = Where(channel, str(event.get("user", "")), d.state.thread_id(channel, root), root)
        with self._turn(where.thread_id), self._reporting(client, where):
            found = self._extract(d, client, str(event.get("text") or ""), event.get("files") or [])
            if found.lines:
                triage_into_thread(d, client, where, found.lines, intro=_skipped(found))
            elif found.question:
                answer_question(d, client, where, found.question)
            else:
                client.chat_postMessage(channel=channel, thread_ts=root, text=_skipped(found) + USAGE)

    def command(self, command: dict[str, Any], client: WebClient, respond: Respond) -> None:
        d = self.deps()
        text = str(command.get("text") or "")
        if not text.strip():
            return
        where = Where(str(command["channel_id"]), str(command["user_id"]), new_thread_id(), None)
        with self._reporting(client, where, respond):
            found = extract(text)
            if found.lines:
                intro = f"<@{where.user}> asked `{COMMAND}` about {len(found.lines)} lines: "
                triage_into_thread(d, client, where, found.lines, intro=intro)
            else:
                reply = d.assistant.ask(
                    found.question, thread_id=where.thread_id, caller=slack_caller(where.user)
                )
                respond(text=reply.text, response_type="ephemeral")

    def shortcut(self, shortcut: dict[str, Any], client: WebClient, respond: Respond) -> None:
        d = self.deps()
        message = shortcut.get("message") or {}
        channel = str((shortcut.get("channel") or {}).get("id", ""))
        root = str(message.get("thread_ts") or message.get("ts"))
        user = str((shortcut.get("user") or {}).get("id", ""))
        where = Where(channel, user, d.state.thread_id(channel, root), root)
        with self._turn(where.thread_id), self._reporting(client, where, respond):
            found = self._extract(d, client, str(message.get("text") or ""), message.get("files") or [])
            if not found.lines:
                tell(
                    client,
                    channel,
                    user,
                    root,
                    _skipped(found) + "I found no log lines in that message.",
                    respond,
                )
                return
            triage_into_thread(
                d, client, where, found.lines, intro=f"<@{user}> asked to triage this message. "
            )

    # -- feedback --

    def reaction_added(self, event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        self._reaction(event, client, context, added=True)

    def reaction_removed(self, event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        self._reaction(event, client, context, added=False)

    def _reaction(
        self, event: dict[str, Any], client: WebClient, context: BoltContext, *, added: bool
    ) -> None:
        item = event.get("item") or {}
        user = str(event.get("user", ""))
        if item.get("type") != "message" or not user or user == context.bot_user_id:
            return
        channel, ts, reaction = str(item.get("channel")), str(item.get("ts")), str(event.get("reaction"))
        feedback = self.deps().feedback()
        with self._reporting(client, Where(channel, user, "", None)):
            if added:
                confirm(client, feedback.reaction_added(channel, ts, user, reaction))
            else:
                confirm(client, feedback.reaction_removed(channel, ts, user, reaction))

    def correct(self, body: dict[str, Any], client: WebClient) -> None:
        channel, ts, user = _message_of(body)
        where = Where(channel, user, "", None)
        with self._reporting(client, where):
            confirm(client, self.deps().feedback().correct(channel, ts, user), where)

    def open_wrong_modal(self, body: dict[str, Any], client: WebClient) -> None:
        channel, ts, user = _message_of(body)
        categories = self.deps().tools.detector.categories
        with self._reporting(client, Where(channel, user, "", None)):
            client.views_open(
                trigger_id=body["trigger_id"], view=wrong_modal(categories, {"channel": channel, "ts": ts})
            )

    def wrong_submitted(self, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        message = json.loads(view.get("private_metadata") or "{}")
        user = str((body.get("user") or {}).get("id", ""))
        channel, ts = str(message.get("channel", "")), str(message.get("ts", ""))
        category, note = modal_values(view)
        where = Where(channel, user, "", None)
        with self._reporting(client, where):
            confirm(client, self.deps().feedback().wrong(channel, ts, user, category, note), where)

    # -- shared --

    def _extract(self, d: SlackDeps, client: WebClient, text: str, files: list[dict[str, Any]]) -> Extracted:
        if not files:
            return extract(text)
        texts, skipped = download_files(files, client, max_bytes=d.tools.limits.max_total_bytes)
        return extract(text, texts, skipped)

    def _reporting(self, client: WebClient, where: Where, respond: Respond | None = None) -> _Reporting:
        return _Reporting(client, where, respond)


class _Reporting:
    """The top-level handler of a lazy listener: every failure is logged and told to the user."""

    def __init__(self, client: WebClient, where: Where, respond: Respond | None) -> None:
        self.client, self.where, self.respond = client, where, respond

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: object) -> bool:
        if err is None or not isinstance(err, Exception):
            return False
        if isinstance(err, ToolInputError):  # the input can't be used: say what to change
            text = f"I can't use that: {err}"
        elif isinstance(err, ToolFailedError):
            logger.warning("Slack: %s", err)
            text = f"{err.tool} failed ({err.reason}); the logs were not triaged. Try again shortly."
        elif isinstance(err, SlackApiError):
            logger.warning("Slack API call failed: %s", err.response.get("error"))
            code = err.response.get("error")
            hint = (
                " Invite me to the channel first (/invite @logtriage)."
                if code in ("not_in_channel", "channel_not_found")
                else ""
            )
            text = f"Slack refused my reply ({code}).{hint}"
        else:
            logger.exception("Slack listener failed")
            text = f"Something went wrong on my side ({type(err).__name__}); it is logged."
        w = self.where
        tell(self.client, w.channel, w.user, w.root_ts, text, self.respond)
        return True


def _message_of(body: dict[str, Any]) -> tuple[str, str, str]:
    """(channel, ts, user) of a button click on a message."""
    container = body.get("container") or {}
    channel = str(container.get("channel_id") or (body.get("channel") or {}).get("id", ""))
    ts = str(container.get("message_ts") or (body.get("message") or {}).get("ts", ""))
    return channel, ts, str((body.get("user") or {}).get("id", ""))


def _skipped(found: Extracted) -> str:
    return f"(Skipped: {'; '.join(found.skipped_files)}.) " if found.skipped_files else ""
