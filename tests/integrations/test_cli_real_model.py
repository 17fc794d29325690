"""The main job on the embedded defaults: `logtriage triage` and `ask` with the real SmolLM2."""

from __future__ import annotations

import json

import pytest

from tests.integrations.test_cli import EXAMPLE, run

pytestmark = [pytest.mark.slow, pytest.mark.llm]


def test_triage_and_ask_run_on_the_default_local_model_from_an_empty_data_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # This checks that the pieces work together; speed is the benchmark's job, and a CI machine
    # under load can take longer than the interactive default budget for the chat prompt.
    monkeypatch.setenv("LOGTRIAGE_LLM_BUDGET_S", "300")
    code, out, err = run("triage", str(EXAMPLE), "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["status"] == "ok", answer.get("reason")
    assert answer["verdict"] == "anomalous"
    summary, _, llm_text = answer["explanation"].partition("\n\n")
    assert "[L" in summary and llm_text.strip(), "the local LLM wrote an explanation after the summary"

    code, out, err = run("ask", "why is this anomalous?", "--json")
    assert code == 0, err
    reply = json.loads(out)
    assert reply["thread_id"] == answer["thread_id"]
    assert reply["status"] == "ok" and reply["text"].strip(), reply["text"]
