"""`logtriage slack --socket`: the Slack app over Socket Mode, for workspaces without a public URL.

HTTP mode needs no command of its own: `logtriage serve` mounts /slack/* when the bot token is set.
Socket Mode opens an outbound WebSocket with the app-level token instead, so Slack needs no route
to this machine. Like `logtriage serve`, it holds the embedded incident store; run one of the two
on a data dir, or point both at a Qdrant server (LOGTRIAGE_QDRANT_URL).
"""

from __future__ import annotations

from typing import Annotated

import typer

from integrations.cli import ConfigOption, fail, settings_from, stderr, user_errors
from integrations.cli_assistant import LLMOption, _assistant
from integrations.server_deps import slack_deps
from integrations.slack_app import build_bolt_app
from integrations.slack_config import slack_config


def slack(
    socket: Annotated[
        bool, typer.Option("--socket", help="connect over Socket Mode (needs LOGTRIAGE_SLACK_APP_TOKEN)")
    ] = False,
    llm: LLMOption = None,
    config: ConfigOption = None,
) -> None:
    """Run the Slack app over Socket Mode (HTTP mode is part of `logtriage serve`)."""
    if not socket:
        fail(
            "HTTP mode is served by `logtriage serve` at /slack/events, /slack/interactions and "
            "/slack/commands; pass --socket for Socket Mode (with LOGTRIAGE_SLACK_APP_TOKEN set)"
        )
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    settings = settings_from(config, llm_backend=llm)
    with user_errors():
        slack_config(settings, socket_mode=True)  # a half configuration fails before anything loads
    with _assistant(settings, quiet=False) as assistant:
        with user_errors():
            deps = slack_deps(settings, assistant, socket_mode=True)
        assert deps is not None and deps.config.app_token is not None  # slack_config checked both
        try:
            handler = SocketModeHandler(build_bolt_app(deps.config, lambda: deps), deps.config.app_token)
            stderr.print("logtriage is connected to Slack over Socket Mode; Ctrl-C stops it")
            handler.start()
        finally:
            deps.close()


def register(app: typer.Typer) -> None:
    app.command()(slack)
