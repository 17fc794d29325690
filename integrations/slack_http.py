"""Slack's HTTP endpoints in `logtriage serve`: /slack/events, /slack/interactions, /slack/commands.

All three hand the raw request to the one Bolt app, which verifies the signing secret and the
timestamp (401 otherwise) before anything else. Bolt's app is synchronous, so it runs on the
threadpool: the event loop never blocks, and the acknowledgement returns while lazy listeners work.
The API's bearer token does not apply here; Slack signs its requests instead.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request, Response
from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from starlette.concurrency import run_in_threadpool

from integrations.settings import Settings
from integrations.slack_answers import SlackDeps
from integrations.slack_app import build_bolt_app
from integrations.slack_config import slack_config

SLACK_PATHS = ("/slack/events", "/slack/interactions", "/slack/commands")


def mount_slack(app: FastAPI, settings: Settings, deps: Callable[[], SlackDeps | None]) -> App | None:
    """Mount the Slack routes when Slack is configured; None (nothing mounted) when it is not.

    Raises ConfigError when Slack is half configured (e.g. a bot token without the signing secret).
    """
    config = slack_config(settings)
    if config is None:
        return None

    def slack_deps() -> SlackDeps:
        built = deps()
        if built is None:
            raise RuntimeError("Slack is configured, but the server was assembled without its Slack deps")
        return built

    bolt = build_bolt_app(config, slack_deps)

    async def slack_endpoint(request: Request) -> Response:
        bolt_request = to_bolt_request(request, await request.body())
        return to_starlette_response(await run_in_threadpool(bolt.dispatch, bolt_request))

    for path in SLACK_PATHS:
        app.add_api_route(path, slack_endpoint, methods=["POST"], include_in_schema=False, name=path)
    return bolt
