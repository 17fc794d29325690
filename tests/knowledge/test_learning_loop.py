"""The learning loop, end to end on real parts: five corrections teach the store a category the
detector never saw, with no retraining, and normal logs are not flagged more often."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from detectors.embedding_cache import TemplateEmbeddingCache
from detectors.encoder import TransformerEncoder

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_learning_loop import run_learning_loop  # noqa: E402

pytestmark = pytest.mark.slow


def test_five_corrections_teach_an_unseen_category_without_retraining(tmp_path: Path) -> None:
    cache = TemplateEmbeddingCache(TransformerEncoder(None), persist_path=tmp_path / "templates.sqlite")
    figures = run_learning_loop("network_timeout", tmp_path / "loop", cache)
    assert figures.corrections == 5
    assert figures.detector_recall_before < 0.9  # the detector alone really misses it
    assert figures.memory_recall_after >= 0.9
    assert figures.detector_recall_after < 0.9  # the gain is the store's, not a retrained model's
    assert figures.fpr_after - figures.fpr_before <= 0.01
