"""Errors of the local LLM backend, each naming the setting that fixes it."""

from __future__ import annotations

# The settings and flags an operator changes; error messages name them so the fix is one step.
MODEL_SETTING = "LOGTRIAGE_LLM_MODEL"
ADAPTER_SETTING = "LOGTRIAGE_LLM_ADAPTER (--adapter)"
BUDGET_SETTING = "LOGTRIAGE_LLM_BUDGET_S"


class LLMError(RuntimeError):
    """The local model failed to load or to generate."""


class LocalModelError(ValueError):
    """A configured model or adapter path is unusable: a configuration error, raised loudly."""


class LLMBudgetExceeded(TimeoutError):
    """Generation ran past its time budget; the partial answer is discarded."""

    def __init__(self, budget_s: float, generated_tokens: int | None = None) -> None:
        done = f" after {generated_tokens} tokens" if generated_tokens is not None else ""
        super().__init__(
            f"the local LLM ran past its time budget of {budget_s:g} s{done}; "
            f"raise {BUDGET_SETTING} or ask for a shorter answer"
        )
        self.budget_s = budget_s
