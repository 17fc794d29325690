"""Slack's configuration: when the routes exist, what a half configuration says, Socket Mode, the manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from slack_bolt.adapter.socket_mode import SocketModeHandler
from typer.testing import CliRunner

from integrations.cli import register_commands
from integrations.server import create_app
from integrations.settings import ConfigError, Settings, load_settings
from integrations.slack_app import COMMAND, EVENTS, SHORTCUT, SeenEvents, build_bolt_app
from integrations.slack_config import ReactionMap, SlackConfig, slack_config
from integrations.slack_http import SLACK_PATHS

MANIFEST = Path(__file__).resolve().parents[2] / "docs" / "slack-app-manifest.yaml"


def test_slack_routes_are_not_mounted_when_slack_is_not_configured(client: TestClient) -> None:
    for path in SLACK_PATHS:
        assert client.post(path, content=b"{}").status_code == 404


def test_a_bot_token_without_the_signing_secret_is_a_config_error_naming_the_variable(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, slack_bot_token="xoxb-1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="set LOGTRIAGE_SLACK_SIGNING_SECRET"):
        create_app(settings)


def test_a_signing_secret_without_the_bot_token_is_a_config_error(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, slack_signing_secret="s")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="set LOGTRIAGE_SLACK_BOT_TOKEN"):
        slack_config(settings)


def test_the_same_reaction_cannot_mean_correct_and_wrong(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        slack_bot_token="xoxb-1",  # type: ignore[arg-type]
        slack_signing_secret="s",  # type: ignore[arg-type]
        slack_correct_reactions="+1,eyes",
        slack_wrong_reactions="-1,eyes",
    )
    with pytest.raises(ConfigError, match="share none"):
        slack_config(settings)


def test_slack_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGTRIAGE_SLACK_BOT_TOKEN", "xoxb-env")
    monkeypatch.setenv("LOGTRIAGE_SLACK_SIGNING_SECRET", "env-secret")
    monkeypatch.setenv("LOGTRIAGE_SLACK_API_URL", "http://127.0.0.1:9/api")
    monkeypatch.setenv("LOGTRIAGE_SLACK_ALLOWED_CHANNELS", "C1, C2")
    monkeypatch.setenv("LOGTRIAGE_SLACK_WRONG_REACTIONS", "x")
    config = slack_config(load_settings())
    assert config == SlackConfig(
        bot_token="xoxb-env",
        signing_secret="env-secret",
        api_url="http://127.0.0.1:9/api/",
        allowed_channels=frozenset({"C1", "C2"}),
        reactions=ReactionMap(correct=frozenset({"white_check_mark", "+1"}), wrong=frozenset({"x"})),
    )
    assert config.reactions.polarity("+1::skin-tone-2") is True and config.reactions.polarity("-1") is None


runner = CliRunner()


def test_socket_mode_without_the_app_token_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGTRIAGE_SLACK_BOT_TOKEN", "xoxb-env")
    result = runner.invoke(register_commands(), ["slack", "--socket"])
    assert result.exit_code == 2 and "set LOGTRIAGE_SLACK_APP_TOKEN" in result.stderr


def test_the_slack_command_points_http_mode_at_serve() -> None:
    result = runner.invoke(register_commands(), ["slack"])
    assert result.exit_code == 2 and "`logtriage serve`" in result.stderr and "--socket" in result.stderr


def test_socket_mode_needs_no_signing_secret_and_connects_with_the_app_token(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        slack_bot_token="xoxb-1",  # type: ignore[arg-type]
        slack_app_token="xapp-1",  # type: ignore[arg-type]
    )
    config = slack_config(settings, socket_mode=True)
    assert config is not None and config.signing_secret is None

    def no_deps() -> None:
        raise AssertionError("nothing is handled before the socket connects")

    handler = SocketModeHandler(build_bolt_app(config, no_deps), config.app_token)  # type: ignore[arg-type]
    assert handler.client.app_token == "xapp-1" and handler.app.client.token == "xoxb-1"


def test_a_seen_event_set_forgets_the_oldest_beyond_its_capacity() -> None:
    seen = SeenEvents(capacity=2)
    assert [seen.first_time(e) for e in ("a", "b", "a", "c", "a")] == [True, True, False, True, True]


def test_the_manifest_asks_for_exactly_what_the_app_handles() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    settings, features = manifest["settings"], manifest["features"]
    assert set(settings["event_subscriptions"]["bot_events"]) == set(EVENTS)
    assert [c["command"] for c in features["slash_commands"]] == [COMMAND]
    assert [s["callback_id"] for s in features["shortcuts"]] == [SHORTCUT]
    urls = (
        settings["event_subscriptions"]["request_url"],
        settings["interactivity"]["request_url"],
        features["slash_commands"][0]["url"],
    )
    assert tuple("/" + url.split("/", 3)[3] for url in urls) == SLACK_PATHS
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {
        "app_mentions:read",
        "chat:write",
        "commands",
        "im:history",
        "reactions:read",
        "files:read",
    } <= scopes
