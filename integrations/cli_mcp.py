"""`logtriage mcp`: the MCP server over stdio, for IDE assistants (Claude, Cursor, VS Code).

The embedded incident store admits one process at a time, so where the tools run depends on who
holds it (`--via`):

- `auto` (the default): in this process when the store is free or is a Qdrant server
  (LOGTRIAGE_QDRANT_URL); when another process holds it (a running `logtriage serve`), every call
  is forwarded to that server's /mcp endpoint.
- `local`: always in this process; a held store is an error that names the fixes.
- `server`: always forwarded to the server at --server-url.

Nothing but MCP messages may reach stdout: progress goes to stderr.
"""

from __future__ import annotations

import contextlib
import getpass
import sys
from typing import Annotated

import anyio
import typer

from integrations.cli import ConfigOption, fail, settings_from, stderr, user_errors
from integrations.cli_detector import _load_detector
from integrations.cli_knowledge import opened_store
from integrations.mcp_proxy import ServerUnreachableError, serve_stdio_via, server_headers
from integrations.mcp_server import LocalUser, local_server
from integrations.server_security import api_tokens, is_loopback
from integrations.settings import Settings
from integrations.wiring import chat_model, store_location, tool_context
from knowledge.backend import StoreLockedError
from knowledge.open import open_backend

# Over the LLM's own budget: scoring, search and the HTTP round trip of a forwarded triage.
FORWARD_MARGIN_S = 60.0


def default_server_url(settings: Settings) -> str:
    """The MCP endpoint of a `logtriage serve` on this machine with these settings."""
    host = settings.host if is_loopback(settings.host) else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port}/mcp"


def store_lock(settings: Settings) -> StoreLockedError | None:
    """Why the embedded store can't be opened here (another process holds it), or None when it can."""
    if settings.qdrant_url:  # a Qdrant server serves any number of processes
        return None
    try:
        open_backend(store_location(settings)).close()
    except StoreLockedError as err:
        return err
    return None


def serve_local(settings: Settings) -> None:
    held = store_lock(settings)
    if held is not None:
        fail(f"{held} Or use `--via auto`, which forwards the tools to a running `logtriage serve`.")
    with contextlib.ExitStack() as stack:
        # Loading only: while serving, the SDK itself points fd 1 away from the protocol stream.
        with contextlib.redirect_stdout(sys.stderr):
            detector = _load_detector(settings)
            store = stack.enter_context(opened_store(settings, detector))
            with user_errors(), stderr.status("loading the LLM for triage explanations") as status:
                model = chat_model(settings, on_status=status.update)
        ctx = tool_context(settings, detector, store, model)
        stderr.print(f"logtriage MCP server on stdio ({store_location(settings).describe()})")
        local_server(lambda: ctx, LocalUser(getpass.getuser())).run("stdio")


def serve_forwarded(settings: Settings, url: str, why: str) -> None:
    tokens = api_tokens(settings)
    headers = server_headers(tokens[0] if tokens else None, getpass.getuser())
    stderr.print(f"logtriage MCP server on stdio, forwarding to {url}")
    try:
        anyio.run(serve_stdio_via, url, headers, settings.llm_budget_s + FORWARD_MARGIN_S)
    except ServerUnreachableError as err:
        fail(f"{err} {why}")


def mcp(
    via: Annotated[
        str,
        typer.Option(
            "--via",
            help="where tools run: auto (here, or the running server when it holds the store), local, server",
        ),
    ] = "auto",
    server_url: Annotated[
        str | None,
        typer.Option(
            "--server-url",
            help="the running server's MCP endpoint; default: http://127.0.0.1:<LOGTRIAGE_PORT>/mcp",
            show_default=False,
        ),
    ] = None,
    llm: Annotated[
        str | None, typer.Option("--llm", help="LLM backend for triage: local, openai or none")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Serve the logtriage tools to an MCP client over stdio (see docs/mcp.md for client configs)."""
    if via not in ("auto", "local", "server"):
        fail(f"unknown --via {via!r}; choose auto, local or server")
    settings = settings_from(config, llm_backend=llm)
    url = server_url or default_server_url(settings)
    if via == "server":
        serve_forwarded(settings, url, "(--via server forwards every call there.)")
    elif via == "auto" and store_lock(settings) is not None:
        why = (
            "The tools run there because another process holds the incident store; to run them here "
            "instead, stop that process or set LOGTRIAGE_QDRANT_URL."
        )
        serve_forwarded(settings, url, why)
    else:
        serve_local(settings)


def register(app: typer.Typer) -> None:
    app.command()(mcp)
