"""The three kinds of error a tool call can end in.

- `ToolInputError` ("retry"): the arguments were wrong. The message says how to fix them, and a
  surface hands it back to the caller (the LLM retries; HTTP answers 4xx; MCP sets isError).
- `ToolFailedError` ("tool failed"): the arguments were fine but a backend failed. It names the
  tool and its parameters, so the failure can be reported as a structured result.
- Configuration errors are raised by the entry points (`integrations.settings.ConfigError`).
"""

from __future__ import annotations

from typing import Any


class ToolInputError(ValueError):
    """The caller's arguments can't be used; the message says what to change."""


class UnknownIncidentError(ToolInputError):
    """The incident id names no stored incident (HTTP surfaces answer 404)."""


class ToolFailedError(RuntimeError):
    """A backend failed while running a tool with valid arguments."""

    def __init__(self, tool: str, params: dict[str, Any], reason: str) -> None:
        self.tool = tool
        self.params = params
        self.reason = reason
        super().__init__(f"{tool} failed ({reason}); parameters: {params}")
