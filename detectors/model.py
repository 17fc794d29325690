"""The sequence model: line embeddings in, anomaly logit and category logits out.

    line embeddings (B, L, encoder_dim)
      -> linear projection + learned positions        (B, L, d_model)
      -> n_layers x [self-attention, Top-P MoE FFN]   (B, L, d_model), pre-norm residuals
      -> final LayerNorm, masked mean over real lines  (B, d_model)
      -> anomaly head (1 logit) and category head (n_categories logits)

The anomaly head is linear on the mean of per-line states, so its logit splits exactly into
one additive term per line. Those terms are the "lines that drove the verdict".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from detectors.moe import RoutingStats, TopPMoE


@dataclass
class SequenceModelConfig:
    """Every dimension of the model, by name. Saved as config.json in the model directory."""

    encoder_dim: int = 384  # width of the line encoder's output (all-MiniLM-L6-v2: 384)
    d_model: int = 64  # width of the sequence model
    n_layers: int = 2
    n_heads: int = 8
    d_ff: int = 128  # hidden width of each expert
    n_experts: int = 4
    top_p: float = 0.8
    max_lines: int = 128  # longest window the positional table covers; longer input is windowed
    dropout: float = 0.1
    categories: list[str] = field(default_factory=lambda: ["normal", "anomaly"])

    @property
    def n_categories(self) -> int:
        return len(self.categories)

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SequenceModelConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class SequenceOutput:
    anomaly_logit: torch.Tensor  # (B,)
    category_logits: torch.Tensor  # (B, C)
    line_contributions: torch.Tensor  # (B, L) additive share of each line in anomaly_logit; 0 on padding
    pooled: torch.Tensor  # (B, D) sequence embedding
    routing: list[RoutingStats]  # one per layer

    @property
    def balance_loss(self) -> torch.Tensor:
        return torch.stack([r.balance_loss for r in self.routing]).mean()


class Block(nn.Module):
    def __init__(self, cfg: SequenceModelConfig) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(cfg.d_model)
        self.attn = nn.MultiheadAttention(cfg.d_model, cfg.n_heads, dropout=cfg.dropout, batch_first=True)
        self.ffn_norm = nn.LayerNorm(cfg.d_model)
        self.moe = TopPMoE(cfg.d_model, cfg.d_ff, cfg.n_experts, cfg.top_p, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, h: torch.Tensor, token_mask: torch.Tensor) -> tuple[torch.Tensor, RoutingStats]:
        """h: (B, L, D); token_mask: (B, L) True on real lines."""
        x = self.attn_norm(h)
        attended, _ = self.attn(x, x, x, key_padding_mask=~token_mask, need_weights=False)
        h = h + self.dropout(attended)
        ffn_out, routing = self.moe(self.ffn_norm(h), token_mask)
        h = h + self.dropout(ffn_out)
        return h, routing


class SequenceModel(nn.Module):
    def __init__(self, cfg: SequenceModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.project = nn.Linear(cfg.encoder_dim, cfg.d_model)
        self.positions = nn.Embedding(cfg.max_lines, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(cfg.d_model)
        self.anomaly_head = nn.Linear(cfg.d_model, 1)
        self.category_head = nn.Linear(cfg.d_model, cfg.n_categories)

    def set_dense(self, dense: bool) -> None:
        """Stage one trains with every expert (dense); stage two and inference use Top-P."""
        for block in self.blocks:
            assert isinstance(block, Block)
            block.moe.dense = dense

    def forward(self, line_embeddings: torch.Tensor, token_mask: torch.Tensor) -> SequenceOutput:
        """line_embeddings: (B, L, encoder_dim); token_mask: (B, L) bool, True on real lines."""
        batch, length, _ = line_embeddings.shape
        if length > self.cfg.max_lines:
            raise ValueError(
                f"window of {length} lines exceeds max_lines={self.cfg.max_lines}; window it first"
            )
        positions = torch.arange(length, device=line_embeddings.device)  # (L,)
        h = self.project(line_embeddings) + self.positions(positions)  # (B, L, D)
        h = self.dropout(h)
        routing: list[RoutingStats] = []
        for block in self.blocks:
            h, stats = block(h, token_mask)
            routing.append(stats)
        h = self.final_norm(h)  # (B, L, D)
        weights = token_mask.to(h.dtype)  # (B, L)
        n_lines = weights.sum(dim=1, keepdim=True).clamp(min=1.0)  # (B, 1)
        pooled = (h * weights.unsqueeze(-1)).sum(dim=1) / n_lines  # (B, D), padding excluded
        per_line = self.anomaly_head.weight.squeeze(0)  # (D,)
        contributions = (h @ per_line) * weights / n_lines  # (B, L); sums to logit - bias
        anomaly_logit = self.anomaly_head(pooled).squeeze(-1)  # (B,)
        return SequenceOutput(
            anomaly_logit=anomaly_logit,
            category_logits=self.category_head(pooled),
            line_contributions=contributions,
            pooled=pooled,
            routing=routing,
        )
