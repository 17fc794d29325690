"""What the detector says about one sequence. Every surface shows these fields."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Verdict = Literal["anomalous", "normal"]


class LineEvidence(BaseModel):
    """One line and how much it pushed the anomaly score (positive: towards anomalous)."""

    index: int = Field(description="0-based position of the line in the scored input")
    line: str
    template: str = Field(description="the line with its variables masked, as the model saw it")
    contribution: float = Field(
        description=(
            "anomalous verdicts: how far the anomaly logit falls when this line is left out; "
            "normal verdicts: this line's additive share of the anomaly logit"
        )
    )


class ExpertUsage(BaseModel):
    """How much one Mixture-of-Experts expert was used for this sequence, over all layers."""

    expert: int
    mean_gate: float = Field(description="mean weight given to this expert over lines and layers")
    share_selected: float = Field(description="share of (line, layer) routing decisions that kept it")


class DetectorResult(BaseModel):
    verdict: Verdict
    probability: float = Field(description="calibrated probability that the sequence is anomalous")
    threshold: float = Field(description="probability at or above which the verdict is anomalous")
    threshold_source: str = Field(description="how the threshold was chosen (data and rule)")
    category: str
    category_probability: float
    evidence: list[LineEvidence] = Field(description="the lines that drove the verdict, strongest first")
    experts: list[ExpertUsage]
    n_lines: int
    n_windows: int = Field(description="windows the input was cut into (inputs over max_lines)")
    model_version: str
