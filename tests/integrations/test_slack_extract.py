"""Finding the logs in a Slack message, and fetching attached files only from Slack."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from integrations.slack_config import SlackConfig, web_client
from integrations.slack_extract import Extracted, download_files, extract, looks_like_log
from tests.integrations.fake_slack import FakeSlack
from tests.integrations.slack_support import BOT_TOKEN, fake_slack_api

LOG = "2026-11-21T14:07:31.004Z INFO [order-service] Connecting to db at 10.4.20.9:5432"


def test_code_blocks_are_the_logs_and_the_rest_is_the_question() -> None:
    text = f"<@UBOT> is this anomalous?\n```{LOG}\n{LOG} retry=2\n```\nthanks"
    assert extract(text) == Extracted([LOG, f"{LOG} retry=2"], "is this anomalous? thanks", "code")


def test_plain_log_lines_are_found_among_the_users_words() -> None:
    text = f"<@UBOT> what is this\n{LOG}\n  at com.shop.Db.connect(Db.java:42)\nplease"
    found = extract(text)
    assert found == Extracted([LOG, "  at com.shop.Db.connect(Db.java:42)"], "what is this please", "plain")


def test_a_question_alone_has_no_logs() -> None:
    assert extract("<@UBOT> why did it say anomalous?") == Extracted([], "why did it say anomalous?", "none")


def test_slacks_markup_is_turned_back_into_what_was_typed() -> None:
    text = (
        "```2026-11-21 14:07:31 ERROR GET <http://10.0.0.1:8080/health|http://10.0.0.1:8080/health> "
        "&lt;timeout&gt; &amp; <mailto:ops@example.com|ops@example.com> <!channel>```"
    )
    (line,) = extract(text).lines
    assert (
        line
        == "2026-11-21 14:07:31 ERROR GET http://10.0.0.1:8080/health <timeout> & ops@example.com @channel"
    )


@pytest.mark.parametrize(
    ("line", "is_log"),
    [
        (LOG, True),
        ("Nov 21 14:07:31 web-1 sshd[412]: Failed password", True),
        ("081109 203615 148 INFO dfs.DataNode$PacketResponder: blk_-1608999687919862906", True),
        ("user=ana action=login status=failed", True),
        ("why is this marked anomalous?", False),
        ("please mark this as a false positive", False),
    ],
)
def test_what_looks_like_a_log_line(line: str, is_log: bool) -> None:
    assert looks_like_log(line) is is_log


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with fake_slack_api() as api:
        yield api


def test_files_are_fetched_with_the_bot_token_only_from_slack(fake: FakeSlack) -> None:
    client = web_client(SlackConfig(bot_token=BOT_TOKEN, signing_secret="s", api_url=fake.api_url))
    text = fake.add_file("F1", "app.log", f"{LOG}\n".encode())
    image = fake.add_file("F2", "graph.png", b"\x89PNG", mimetype="image/png")
    elsewhere = {**text, "id": "F3", "name": "leak.log", "url_private_download": "https://evil.example.com/x"}
    too_big = {**text, "id": "F4", "name": "huge.log", "size": 10_000_000}
    texts, skipped = download_files([text, image, elsewhere, too_big], client, max_bytes=1_000_000)
    assert texts == [f"{LOG}\n"]
    assert skipped == [
        "graph.png (not text)",
        "leak.log (not hosted by Slack)",
        f"huge.log (10000000 bytes; {1_000_000 - len(LOG) - 1} left of the 1000000-byte limit)",
    ]
    assert fake.downloads == [("/files/F1/app.log", BOT_TOKEN)]
