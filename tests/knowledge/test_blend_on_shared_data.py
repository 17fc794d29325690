"""On the shared public data, blending in the memory of labelled history never lowers F1."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from detectors import TrainConfig
from detectors.embedding_cache import TemplateEmbeddingCache
from detectors.encoder import TransformerEncoder

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_blend import bgl_blend, hdfs_blend  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

QUICK = TrainConfig(dense_epochs=2, gated_epochs=2, seed=0)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> TemplateEmbeddingCache:
    folder = tmp_path_factory.mktemp("blend-cache")
    return TemplateEmbeddingCache(TransformerEncoder(None), persist_path=folder / "templates.sqlite")


def test_the_blend_does_not_lower_f1_on_bgl(shared_data: Path, cache: TemplateEmbeddingCache) -> None:
    figures = bgl_blend(shared_data, cache, QUICK)
    assert figures["with_memory"]["f1"] >= figures["detector_alone"]["f1"]


def test_the_blend_does_not_lower_f1_on_hdfs(shared_data: Path, cache: TemplateEmbeddingCache) -> None:
    figures = hdfs_blend(shared_data, cache, n_train=800, config=QUICK, n_test=600)
    assert figures["with_memory"]["f1"] >= figures["detector_alone"]["f1"]
    assert figures["decided_by"]["memory"] > 0  # the memory really took part
