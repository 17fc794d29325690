"""`logtriage triage` and `logtriage ask` through the real CLI app, detector and embedded store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.assistant.fake_openai import FakeOpenAIServer, FakeToolCall, text_reply, tool_reply
from tests.integrations.test_cli import EXAMPLE, run

pytestmark = pytest.mark.slow


def test_triage_json_gives_the_grounded_answer_and_a_thread_to_follow_up_in() -> None:
    code, out, err = run("triage", str(EXAMPLE), "--json", "--llm", "none")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["tool"] == "triage" and answer["status"] == "ok"
    assert answer["verdict"] == "anomalous" and answer["category"] == "network_timeout"
    assert answer["thread_id"] and answer["incident_id"]
    assert "[L" in answer["explanation"]


def test_triage_remembers_the_incident_so_the_next_triage_has_seen_it_before() -> None:
    _, first, _ = run("triage", str(EXAMPLE), "--json", "--llm", "none")
    _, second, _ = run("triage", str(EXAMPLE), "--json", "--llm", "none")
    assert json.loads(second)["similar"][0]["id"] == json.loads(first)["incident_id"]


def test_triage_prints_the_verdict_evidence_and_the_follow_up_command() -> None:
    code, out, err = run("triage", str(EXAMPLE), "--llm", "none")
    assert code == 0, err
    assert out.startswith("ANOMALOUS p=")
    assert "[L19]" in out and "seen before:" in out
    assert "logtriage ask --thread" in err


def test_ask_continues_the_last_triage_thread_and_degrades_without_an_llm() -> None:
    run("triage", str(EXAMPLE), "--llm", "none")
    code, out, err = run("ask", "why?", "--llm", "none", "--json")
    assert code == 0, err
    reply = json.loads(out)
    assert reply["status"] == "degraded" and "no LLM" in reply["text"] and "[L" in reply["text"]
    assert reply["answer"]["verdict"] == "anomalous"


def test_triage_of_an_empty_file_exits_2_saying_what_to_send(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_text("\n  \n")
    code, _, err = run("triage", str(empty), "--llm", "none")
    assert code == 2 and "empty or blank" in err


def test_triage_of_binary_input_answers_instead_of_crashing(tmp_path: Path) -> None:
    blob = tmp_path / "core.bin"
    blob.write_bytes(bytes(range(256)) * 8 + b"\nERROR disk \xff\xfe full\n")
    code, out, err = run("triage", str(blob), "--json", "--llm", "none")
    assert code == 0, err
    assert json.loads(out)["verdict"] in ("normal", "anomalous")


def test_triage_over_the_byte_limit_exits_2_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGTRIAGE_MAX_INPUT_BYTES", "100")
    code, _, err = run("triage", str(EXAMPLE), "--llm", "none")
    assert code == 2 and "LOGTRIAGE_MAX_INPUT_BYTES" in err


def test_the_openai_backend_without_a_url_is_a_config_error_naming_the_setting() -> None:
    code, _, err = run("triage", str(EXAMPLE), "--llm", "openai")
    assert code == 2 and "LOGTRIAGE_LLM_URL" in err and "--llm-url" in err


def test_ask_with_an_empty_question_exits_2() -> None:
    code, _, err = run("ask", "  ", "--llm", "none")
    assert code == 2 and "question is empty" in err


def test_triage_and_ask_through_an_openai_compatible_server(tmp_path: Path) -> None:
    secret = tmp_path / "secret.log"
    secret.write_text(EXAMPLE.read_text() + "INFO [order-service] db password=hunter2 in use\n")
    with FakeOpenAIServer() as server:
        server.script(
            [
                text_reply("Connection retries to the db [L19] with no success: check the db at 10.4.20.9."),
                tool_reply(
                    FakeToolCall("search_similar_incidents", {"lines": ["Retrying connection to db"]})
                ),
                text_reply("Nothing like it is stored yet."),
            ]
        )
        code, out, err = run("triage", str(secret), "--llm", "openai", "--llm-url", server.url)
        assert code == 0, err
        assert "Connection retries to the db [L19]" in out
        code, out, err = run("ask", "have we seen this before?", "--llm", "openai", "--llm-url", server.url)
        assert code == 0, err
        assert "Nothing like it is stored yet." in out and "search_similar_incidents" in err
    sent = json.dumps([r.body for r in server.requests])
    assert "hunter2" not in sent
    assert server.requests[1].body.get("tools"), "the chat path offers the tools"
