"""The `logtriage` command line. An entry point: the only place (with the server) that reads settings."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from detectors.encoder import EncoderNotFoundError
from detectors.model_io import ModelDirError
from detectors.sequences import InputFormatError
from integrations.settings import ConfigError, Settings, load_settings
from knowledge.backend import BackendError, StoreLockedError
from knowledge.records import IncidentNotFoundError

USAGE_ERROR = 2  # bad input or configuration, as with argparse and click

app = typer.Typer(
    name="logtriage",
    help="Is this log anomalous, have we seen it before, what is it? Log triage for on-call engineers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stderr = Console(stderr=True, soft_wrap=True)  # errors stay one greppable line at any width
stdout = Console(soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="TOML settings file (env: LOGTRIAGE_CONFIG)", show_default=False),
]


def fail(message: str) -> NoReturn:
    """Print a one-line error that says what to do, and exit with the usage-error code."""
    stderr.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(USAGE_ERROR)


@contextmanager
def user_errors() -> Iterator[None]:
    """Map the errors a user can fix to a message and exit code 2; anything else is a bug and raises."""
    try:
        yield
    except (
        InputFormatError,
        ConfigError,
        ModelDirError,
        EncoderNotFoundError,
        StoreLockedError,
        BackendError,
        IncidentNotFoundError,
    ) as err:
        fail(str(err))
    except ValueError as err:  # our libraries raise ValueError only for bad arguments or data
        fail(str(err))


def settings_from(config: Path | None, **flags: object) -> Settings:
    with user_errors():
        return load_settings(config, **flags)


_registered = False


def register_commands() -> typer.Typer:
    """Attach every command to `app` (once) and return it; tests drive the same app."""
    global _registered
    if not _registered:
        # Imported here so the command modules can import this one's helpers.
        from integrations import (
            cli_assistant,
            cli_detector,
            cli_finetune,
            cli_knowledge,
            cli_mcp,
            cli_server,
            cli_slack,
        )

        cli_detector.register(app)
        cli_knowledge.register(app)
        cli_assistant.register(app)
        cli_server.register(app)
        cli_mcp.register(app)
        cli_slack.register(app)
        cli_finetune.register(app)
        _registered = True
    return app


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    register_commands()
    try:
        app()
    except BrokenPipeError:  # `logtriage score big.log | head` is normal use, not a crash
        sys.stderr.close()
        sys.exit(0)
    except ConfigError as err:  # raised while building an app (e.g. `serve` with half a Slack setup)
        stderr.print(f"[bold red]error:[/] {err}", highlight=False)
        sys.exit(USAGE_ERROR)


if __name__ == "__main__":
    main()
