"""`logtriage triage` and `logtriage ask`: the assistant in a terminal.

triage prints the verdict with its evidence and similar incidents as soon as they are known
(well under a second once loaded), then streams the LLM's explanation. ask continues a thread.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from assistant.service import Assistant, new_thread_id
from integrations.cli import ConfigOption, fail, settings_from, stderr, stdout, user_errors
from integrations.cli_detector import JsonOption, _load_detector
from integrations.cli_knowledge import opened_store, print_similar
from integrations.settings import Settings
from integrations.wiring import build_assistant, chat_model
from tools import Answer, Caller, ToolInputError

LLMOption = Annotated[
    str | None,
    typer.Option(
        "--llm", help="LLM backend: local, openai or none (env: LOGTRIAGE_LLM_BACKEND)", show_default=False
    ),
]
AdapterOption = Annotated[
    Path | None,
    typer.Option("--adapter", help="LoRA adapter directory (env: LOGTRIAGE_LLM_ADAPTER)", show_default=False),
]
LLMURLOption = Annotated[
    str | None,
    typer.Option("--llm-url", help="OpenAI-compatible base URL (env: LOGTRIAGE_LLM_URL)", show_default=False),
]
ThreadOption = Annotated[
    str | None,
    typer.Option("--thread", help="conversation id; default: a new one (triage), the last one (ask)"),
]


def _cli_caller() -> Caller:
    # A local shell is the user's own session: their feedback is authenticated by the OS login.
    return Caller(user=f"{getpass.getuser()}@cli", source="cli", authenticated=True)


def _last_thread_file(settings: Settings) -> Path:
    return settings.data_dir / "assistant" / "last_thread"


def _read_logs(file: str, limit_bytes: int) -> str:
    """The log text of FILE or stdin, decoded with replacement; over the byte limit is an error."""
    if file == "-":
        if sys.stdin.isatty():
            fail("no input: give a FILE, or pipe logs in (`kubectl logs pod | logtriage triage -`)")
        data = sys.stdin.buffer.read(limit_bytes + 1)
    else:
        path = Path(file)
        if not path.is_file():
            fail(f"{file}: no such file")
        with path.open("rb") as handle:
            data = handle.read(limit_bytes + 1)
    if len(data) > limit_bytes:
        fail(
            f"{file}: more than {limit_bytes} bytes of logs; send the part around the problem "
            "(LOGTRIAGE_MAX_INPUT_BYTES raises the limit)"
        )
    return data.decode("utf-8", errors="replace")


@contextmanager
def _assistant(settings: Settings, quiet: bool) -> Iterator[Assistant]:
    detector = _load_detector(settings)
    with ExitStack() as stack:
        store = stack.enter_context(opened_store(settings, detector))
        with user_errors(), stderr.status("loading the assistant's LLM") as status:
            model = chat_model(settings, on_status=None if quiet else status.update)
        yield build_assistant(settings, detector, store, model)


def print_verdict(answer: Answer) -> None:
    colour = "bold red" if answer.verdict == "anomalous" else "bold green"
    stdout.print(f"[{colour}]{escape(answer.headline())}[/]", highlight=False)
    if answer.decided_by != "detector" and answer.detector_probability is not None:
        stdout.print(
            f"   detector alone: p={answer.detector_probability:.2f}; past incidents decided the rest"
        )
    for item in answer.evidence[:5]:
        stdout.print(f"   [L{item.index + 1}] {escape(item.line)}", highlight=False)
    stdout.print("   seen before:")
    print_similar(answer.similar, indent="     ")


def triage(
    file: Annotated[str, typer.Argument(help="log file, or - for stdin")] = "-",
    as_json: JsonOption = False,
    thread: ThreadOption = None,
    remember: Annotated[
        bool, typer.Option("--remember/--no-remember", help="store the logs as an incident for feedback")
    ] = True,
    llm: LLMOption = None,
    adapter: AdapterOption = None,
    llm_url: LLMURLOption = None,
    config: ConfigOption = None,
) -> None:
    """Is this log anomalous, have we seen it before, what is it? The full answer, explained."""
    settings = settings_from(config, llm_backend=llm, llm_adapter=adapter, llm_url=llm_url)
    text = _read_logs(file, settings.max_input_bytes)
    thread_id = thread or new_thread_id()
    with _assistant(settings, quiet=as_json) as assistant:
        streamed: list[str] = []
        try:
            if as_json:
                answer = assistant.triage(text, thread_id=thread_id, caller=_cli_caller(), remember=remember)
            else:
                status = stderr.status("scoring and searching past incidents")
                status.start()

                def on_verdict(verdict: Answer) -> None:
                    status.stop()
                    print_verdict(verdict)
                    if assistant.deps.chat_model is not None:
                        status.update("the LLM is explaining")
                        status.start()

                def on_token(token: str) -> None:
                    if not streamed:
                        status.stop()
                        stdout.print()
                    streamed.append(token)
                    stdout.print(token, end="", highlight=False, markup=False)

                try:
                    answer = assistant.triage(
                        text,
                        thread_id=thread_id,
                        caller=_cli_caller(),
                        remember=remember,
                        on_token=on_token,
                        on_verdict=on_verdict,
                    )
                finally:
                    status.stop()
        except ToolInputError as err:
            fail(str(err))
    _last_thread_file(settings).write_text(thread_id)
    if as_json:
        stdout.print_json(data={"thread_id": thread_id, **answer.model_dump(mode="json")})
        return
    _print_explanation(answer, streamed)
    stderr.print(f'[dim]thread {thread_id}: follow up with  logtriage ask --thread {thread_id} "why?"[/]')


def _print_explanation(answer: Answer, streamed: list[str]) -> None:
    if streamed:
        stdout.print()
    if answer.status == "degraded":
        stdout.print(f"[yellow]degraded:[/] {escape(answer.reason or '')}", highlight=False)
    if not streamed or answer.status != "ok":
        summary = (answer.explanation or "").split("\n\n")[0]
        stdout.print(f"\n{summary}", highlight=False, markup=False)
    if answer.incident_id:
        stdout.print(f"[dim]incident {answer.incident_id}[/]", highlight=False)


def ask(
    question: Annotated[
        str, typer.Argument(help='a question, e.g. "why?" or "mark this as a false positive"')
    ],
    thread: ThreadOption = None,
    as_json: JsonOption = False,
    llm: LLMOption = None,
    adapter: AdapterOption = None,
    llm_url: LLMURLOption = None,
    config: ConfigOption = None,
) -> None:
    """Ask the assistant; it may call tools (score, search, get an incident, record feedback)."""
    settings = settings_from(config, llm_backend=llm, llm_adapter=adapter, llm_url=llm_url)
    last = _last_thread_file(settings)
    thread_id = thread or (last.read_text().strip() if last.is_file() else new_thread_id())
    with _assistant(settings, quiet=as_json) as assistant:
        streamed: list[str] = []

        def on_token(token: str) -> None:
            streamed.append(token)
            stdout.print(token, end="", highlight=False, markup=False)

        with user_errors():
            reply = assistant.ask(
                question, thread_id=thread_id, caller=_cli_caller(), on_token=None if as_json else on_token
            )
    last.parent.mkdir(parents=True, exist_ok=True)
    last.write_text(thread_id)
    if as_json:
        stdout.print_json(data=reply.model_dump(mode="json"))
        return
    if not streamed or reply.status != "ok":
        stdout.print(reply.text, highlight=False, markup=False)
    else:
        stdout.print()
    if reply.tool_calls:
        stderr.print(f"[dim]tools called: {', '.join(reply.tool_calls)}; thread {thread_id}[/]")


def register(app: typer.Typer) -> None:
    app.command()(triage)
    app.command()(ask)
