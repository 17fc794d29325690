"""Top-P Mixture-of-Experts feed-forward block.

Top-P routing keeps, for each token, the fewest experts whose gate probabilities sum to at
least `top_p`, taken in descending order of probability. The seed project computed that
cut-off in sorted order but applied it to the unsorted gates, which keeps the wrong experts
and zeroes every gate when the top expert alone reaches p; `top_p_mask` below fixes both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def top_p_mask(gate_probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Boolean mask of the experts each token keeps, in the experts' original order.

    gate_probs: (..., E) probabilities summing to 1 over the last axis.
    Returns a bool tensor of the same shape. An expert is kept when the probability mass
    of the experts ranked strictly above it is still below `top_p`; the top-ranked expert
    is therefore always kept.
    """
    sorted_probs, sorted_idx = torch.sort(gate_probs, dim=-1, descending=True)  # (..., E)
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # (..., E)
    keep_sorted = mass_before < top_p
    keep_sorted[..., 0] = True
    # Map the decision from rank order back to expert order.
    keep = torch.zeros_like(keep_sorted)
    keep.scatter_(-1, sorted_idx, keep_sorted)
    return keep


@dataclass
class RoutingStats:
    """What the router did on one forward pass, for the load-balancing loss and for reports."""

    gate_probs: torch.Tensor  # (B, L, E) softmax of router logits
    combine_weights: torch.Tensor  # (B, L, E) weights actually applied (0 for dropped experts)
    balance_loss: torch.Tensor  # scalar


class Expert(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TopPMoE(nn.Module):
    """A feed-forward block made of `n_experts` experts and a learned router.

    `dense=True` (training stage one) mixes every expert by its softmax gate; `dense=False`
    (stage two and inference) keeps only the Top-P experts and renormalises their gates.
    All experts are evaluated and the dropped ones weighted by zero: with four small experts
    on a CPU this is faster than gathering tokens per expert, and the result is identical.
    """

    def __init__(self, d_model: int, d_ff: int, n_experts: int, top_p: float, dropout: float) -> None:
        super().__init__()
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.n_experts = n_experts
        self.top_p = top_p
        self.router = nn.Linear(d_model, n_experts)
        self.experts = nn.ModuleList(Expert(d_model, d_ff, dropout) for _ in range(n_experts))
        self.dense = False

    def forward(self, x: torch.Tensor, token_mask: torch.Tensor) -> tuple[torch.Tensor, RoutingStats]:
        """x: (B, L, D); token_mask: (B, L) bool, True for real lines (not padding)."""
        gate_probs = torch.softmax(self.router(x), dim=-1)  # (B, L, E)
        if self.dense:
            combine = gate_probs
        else:
            kept = top_p_mask(gate_probs, self.top_p).to(gate_probs.dtype)  # (B, L, E)
            combine = gate_probs * kept
            combine = combine / combine.sum(dim=-1, keepdim=True)
        expert_out = torch.stack([expert(x) for expert in self.experts], dim=-2)  # (B, L, E, D)
        y = (combine.unsqueeze(-1) * expert_out).sum(dim=-2)  # (B, L, D)
        balance = load_balance_loss(gate_probs, combine > 0, token_mask)
        return y, RoutingStats(gate_probs=gate_probs, combine_weights=combine, balance_loss=balance)


def load_balance_loss(
    gate_probs: torch.Tensor, selected: torch.Tensor, token_mask: torch.Tensor
) -> torch.Tensor:
    """Switch-Transformer style auxiliary loss over real tokens only: E * sum_e f_e * P_e.

    f_e is the share of routing decisions that went to expert e, P_e its mean gate
    probability. It is 1.0 when routing is uniform and grows as it collapses onto few experts.
    """
    n_experts = gate_probs.shape[-1]
    weights = token_mask.to(gate_probs.dtype).unsqueeze(-1)  # (B, L, 1)
    n_tokens = weights.sum().clamp(min=1.0)
    chosen = selected.to(gate_probs.dtype) * weights  # (B, L, E)
    share_routed = chosen.sum(dim=(0, 1)) / chosen.sum().clamp(min=1.0)  # (E,)
    mean_prob = (gate_probs * weights).sum(dim=(0, 1)) / n_tokens  # (E,)
    return n_experts * torch.sum(share_routed * mean_prob)
