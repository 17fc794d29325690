"""`logtriage serve`: the HTTP API, the alert webhooks, health and metrics, under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from integrations.cli import ConfigOption, settings_from, stderr, user_errors
from integrations.server_security import api_tokens, check_exposure


def serve(
    host: Annotated[str | None, typer.Option("--host", help="listen address (env: LOGTRIAGE_HOST)")] = None,
    port: Annotated[int | None, typer.Option("--port", help="listen port (env: LOGTRIAGE_PORT)")] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="allow a non-loopback address without LOGTRIAGE_API_TOKEN")
    ] = False,
    llm: Annotated[str | None, typer.Option("--llm", help="LLM backend: local, openai or none")] = None,
    config: ConfigOption = None,
) -> None:
    """Serve the API (/v1), the alert webhooks (/webhooks), /healthz, /readyz, /metrics and /docs."""
    import uvicorn

    from integrations.server import create_app
    from integrations.server_deps import build_server_deps
    from integrations.server_runtime import settle_for_serving

    settings = settings_from(config, host=host, port=port, llm_backend=llm)
    with user_errors():
        check_exposure(settings, insecure)
    if not api_tokens(settings):
        stderr.print("[yellow]warning:[/] no LOGTRIAGE_API_TOKEN: the API and webhooks are open to this host")
    with user_errors():
        # Built here rather than in the app's lifespan, so the interpreter is settled once they are loaded.
        deps = build_server_deps(settings)
    try:
        settle_for_serving()
        stderr.print(f"logtriage serving on http://{settings.host}:{settings.port} (docs at /docs)")
        uvicorn.run(create_app(settings, deps), host=settings.host, port=settings.port, log_level="warning")
    finally:
        deps.close()


def register(app: typer.Typer) -> None:
    app.command()(serve)
