"""What the tools need, built once by an entry point and passed to every call.

`ToolContext` is a frozen dataclass of long-lived backends (the detector, the incident store, an
explainer), so tools read no environment and open nothing themselves. `Caller` says who is
asking through which surface; tools with side effects require an authenticated caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel, Field

from detectors import Detector
from knowledge.blend import BlendPolicy
from knowledge.records import Source
from knowledge.store import IncidentStore
from tools.answer import Answer
from tools.limits import InputLimits


class ExplanationFailed(RuntimeError):
    """The explainer (an LLM) failed or ran past its time budget; the answer is degraded."""


class Explainer(Protocol):
    """Writes the explanation of a grounded answer. The assistant's LLM implements it."""

    def explain(self, answer: Answer, lines: list[str], on_token: Callable[[str], None] | None = None) -> str:
        """Return a short explanation citing the answer's evidence lines and similar incidents.

        Raises `ExplanationFailed` on any failure, including running past the time budget.
        """
        ...


@dataclass(frozen=True)
class Uncertainty:
    """When an answer is `inconclusive`: the detector is unsure AND nothing similar is known.

    The detector is unsure when its probability sits within `margin` of the threshold, measured
    as a share of the distance from the threshold to 0 (below it) or to 1 (above it). A past
    incident is known when its similarity is at least `known_similarity`.
    """

    margin: float = 0.5
    known_similarity: float = 0.9


@dataclass(frozen=True)
class ToolContext:
    detector: Detector
    store: IncidentStore | None = None  # None: no incident memory (scores are the detector's alone)
    explainer: Explainer | None = None  # None: explanations are the grounded summary alone
    limits: InputLimits = field(default_factory=InputLimits)
    similar_k: int = 5
    evidence_k: int = 5
    blend_policy: BlendPolicy = field(default_factory=BlendPolicy)
    uncertainty: Uncertainty = field(default_factory=Uncertainty)


class Caller(BaseModel):
    """Who calls a tool, through which surface. Filled by the surface, never by an LLM."""

    user: str | None = Field(default=None, description="the person on whose behalf the call runs")
    source: Source = "api"
    authenticated: bool = Field(
        default=False,
        description="the surface verified the user (a signed Slack request, a token, a local shell)",
    )
