"""Finding the logs in a Slack message: code blocks, attached text files and snippets, or plain lines.

What is left once the logs are taken out is the user's own words (the question). Only those words
may ask for anything; the log text is data, and nothing in it is ever acted on.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

logger = logging.getLogger(__name__)

_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
_CHANNEL = re.compile(r"<#[A-Z0-9]+\|([^>]*)>")
_SPECIAL = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>")
_LABELLED_LINK = re.compile(r"<((?:https?|mailto|tel):[^|>]*)\|([^>]*)>")
_LINK = re.compile(r"<((?:https?|mailto|tel):[^>]*)>")
_CODE_BLOCK = re.compile(r"```(.*?)(?:```|$)", re.DOTALL)

# A line looks like a log line when it carries a timestamp, an upper-case level, a stack frame,
# or several key=value pairs. Prose rarely does; questions never need to.
_LOG_SIGNS = (
    re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}"),
    re.compile(r"\b\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\b"),
    re.compile(r"^\s*(?:\d{6}|\d{10}(?:\.\d+)?)\s"),  # HDFS dates, epoch seconds
    re.compile(r"\b(?:TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|FATAL|CRIT|CRITICAL|SEVERE)\b"),
    re.compile(r"^\s+at [\w.$<>]+\("),
    re.compile(r"(?:\b[\w.-]+=[^\s=]+.*){2,}"),
    re.compile(r"\bblk_-?\d+"),
)

TEXT_FILETYPES = frozenset({"text", "log", "plain", "csv", "json", "yaml", "xml", "markdown", "shell"})
FileSource = Literal["code", "file", "plain", "none"]


@dataclass(frozen=True)
class Extracted:
    lines: list[str]  # the log lines, oldest first; empty when the message holds none
    question: str  # the user's own words: mentions, code blocks and log lines removed
    source: FileSource
    skipped_files: list[str] = field(default_factory=list)  # attached files that were not text


def clean(text: str) -> str:
    """Slack's message markup back to what the user typed: links, mentions and entities."""
    text = _MENTION.sub(" ", text)
    text = _CHANNEL.sub(r"#\1", text)
    text = _SPECIAL.sub(r"@\1", text)
    text = _LABELLED_LINK.sub(r"\2", text)
    text = _LINK.sub(r"\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def looks_like_log(line: str) -> bool:
    return any(sign.search(line) for sign in _LOG_SIGNS)


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def extract(text: str, file_texts: Sequence[str] = (), skipped_files: Sequence[str] = ()) -> Extracted:
    """The logs in a message (its code blocks, its text files, else its log-looking lines) and the question."""
    cleaned = clean(text)
    blocks = [_lines(block) for block in _CODE_BLOCK.findall(cleaned)]
    outside = _CODE_BLOCK.sub(" ", cleaned)
    from_files = [line for body in file_texts for line in _lines(body)]
    if any(blocks) or from_files:
        lines = [line for block in blocks for line in block] + from_files
        source: FileSource = "code" if any(blocks) else "file"
        return Extracted(lines, " ".join(outside.split()), source, list(skipped_files))
    plain = _lines(outside)
    logs = [line for line in plain if looks_like_log(line)]
    words = [line for line in plain if not looks_like_log(line)]
    if logs:
        return Extracted(logs, " ".join(" ".join(words).split()), "plain", list(skipped_files))
    return Extracted([], " ".join(outside.split()), "none", list(skipped_files))


# -- attached files ------------------------------------------------------------------------------


def is_text_file(info: dict[str, Any]) -> bool:
    mimetype = str(info.get("mimetype") or "")
    return (
        mimetype.startswith("text/")
        or str(info.get("filetype") or "") in TEXT_FILETYPES
        or info.get("mode") == "snippet"
    )


def trusted_file_host(url: str, api_url: str) -> bool:
    """Files are fetched with the bot token, so only from Slack (or the configured API host)."""
    host = (urlsplit(url).hostname or "").lower()
    api_host = (urlsplit(api_url).hostname or "").lower()
    return urlsplit(url).scheme in ("https", "http") and (
        host == "slack.com" or host.endswith(".slack.com") or host == api_host
    )


def download_files(
    files: Sequence[dict[str, Any]],
    client: WebClient,
    *,
    max_bytes: int,
    timeout_s: float = 10.0,
) -> tuple[list[str], list[str]]:
    """(texts of the text files, names of the files skipped and why), in the message's order.

    Files the event only names (`file_access: check_file_info`) are looked up with files.info.
    """
    texts: list[str] = []
    skipped: list[str] = []
    budget = max_bytes
    api_url = client.base_url
    for listed in files:
        info = dict(listed)
        name = str(info.get("name") or info.get("title") or info.get("id") or "a file")
        if not (info.get("url_private_download") or info.get("url_private")) and info.get("id"):
            try:
                info = dict(client.files_info(file=str(info["id"]))["file"])
            except SlackApiError as err:
                skipped.append(f"{name} (files.info: {err.response.get('error')})")
                continue
        if not is_text_file(info):
            skipped.append(f"{name} (not text)")
            continue
        size = int(info.get("size") or 0)
        if size > budget:
            skipped.append(f"{name} ({size} bytes; {budget} left of the {max_bytes}-byte limit)")
            continue
        url = str(info.get("url_private_download") or info.get("url_private") or "")
        if not trusted_file_host(url, api_url):
            skipped.append(f"{name} (not hosted by Slack)")
            continue
        try:
            # httpx drops the Authorization header on a redirect to another host.
            response = httpx.get(
                url,
                headers={"Authorization": f"Bearer {client.token}"},
                timeout=timeout_s,
                follow_redirects=True,
            )
        except httpx.HTTPError as err:
            skipped.append(f"{name} (download failed: {type(err).__name__})")
            continue
        if response.status_code != 200:
            skipped.append(f"{name} (download answered HTTP {response.status_code})")
            continue
        body = response.content[:budget]
        budget -= len(body)
        texts.append(body.decode("utf-8", errors="replace"))
    return texts, skipped
