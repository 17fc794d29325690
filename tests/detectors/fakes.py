"""Test doubles shared by the detector tests.

`HashEncoder` stands in for the real line encoder at the `TextEncoder` boundary: each text maps
to a fixed unit vector derived from its SHA-256, so equal texts get equal vectors in every
process, different texts get (almost surely) different ones, and every call is recorded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def hash_vector(text: str, dim: int, salt: str = "") -> np.ndarray:
    """The unit vector `HashEncoder(dim, salt)` returns for `text`."""
    seed = int.from_bytes(hashlib.sha256(f"{salt}\x00{text}".encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dim)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


class HashEncoder:
    """A deterministic `TextEncoder` that counts what it is asked to encode."""

    def __init__(self, dim: int = 16, salt: str = "") -> None:
        self._dim = dim
        self.salt = salt
        self.calls: list[list[str]] = []

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def identity(self) -> str:
        return f"hash-encoder:{self._dim}:{self.salt}"

    @property
    def encoded_texts(self) -> list[str]:
        """Every text passed to `encode`, in call order, duplicates included."""
        return [text for call in self.calls for text in call]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = hash_vector(text, self._dim, self.salt)
        return out
