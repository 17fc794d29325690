"""Tests for detectors.embedding_cache: encode each template once, bounded memory, SQLite reuse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectors.embedding_cache import CacheStats, TemplateEmbeddingCache
from tests.detectors.fakes import HashEncoder, hash_vector


def _expected(templates: list[str], dim: int = 16, salt: str = "") -> np.ndarray:
    return np.stack([hash_vector(t, dim, salt) for t in templates])


def test_embed_returns_the_encoders_vectors_in_input_order() -> None:
    cache = TemplateEmbeddingCache(HashEncoder())
    templates = ["b <NUM>", "a", "c <IP>"]
    out = cache.embed(templates)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, _expected(templates))


def test_each_unique_template_is_encoded_once_across_calls() -> None:
    encoder = HashEncoder()
    cache = TemplateEmbeddingCache(encoder)
    cache.embed(["a", "b"])
    cache.embed(["b", "c"])
    out = cache.embed(["c", "a", "b"])
    assert encoder.calls == [["a", "b"], ["c"]]
    np.testing.assert_array_equal(out, _expected(["c", "a", "b"]))


def test_duplicates_within_a_batch_are_encoded_once() -> None:
    encoder = HashEncoder()
    cache = TemplateEmbeddingCache(encoder)
    out = cache.embed(["x", "y", "x", "x", "y"])
    assert encoder.calls == [["x", "y"]]
    np.testing.assert_array_equal(out, _expected(["x", "y", "x", "x", "y"]))


def test_a_fully_cached_batch_does_not_call_the_encoder() -> None:
    encoder = HashEncoder()
    cache = TemplateEmbeddingCache(encoder)
    cache.embed(["a", "b"])
    cache.embed(["a", "b", "a"])
    assert encoder.calls == [["a", "b"]]


def test_stats_count_misses_and_encodings() -> None:
    cache = TemplateEmbeddingCache(HashEncoder())
    cache.embed(["a", "b"])
    cache.embed(["a", "c", "c"])
    assert (cache.stats.misses, cache.stats.encoded, cache.stats.loaded_from_disk) == (3, 3, 0)


def test_an_empty_batch_returns_an_empty_array_of_the_right_width() -> None:
    encoder = HashEncoder(dim=5)
    out = TemplateEmbeddingCache(encoder).embed([])
    assert out.shape == (0, 5)
    assert encoder.calls == []


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_entries must be at least 1"):
        TemplateEmbeddingCache(HashEncoder(), max_entries=0)


# -- the LRU bound --------------------------------------------------------------------------------


def test_memory_never_holds_more_than_max_entries() -> None:
    cache = TemplateEmbeddingCache(HashEncoder(), max_entries=3)
    for i in range(10):
        cache.embed([f"t{i}", f"u{i}"])
        assert len(cache) <= 3
    assert len(cache) == 3


def test_a_batch_larger_than_max_entries_still_returns_every_vector() -> None:
    encoder = HashEncoder()
    cache = TemplateEmbeddingCache(encoder, max_entries=2)
    templates = [f"template {i}" for i in range(7)] + ["template 0"]
    out = cache.embed(templates)
    np.testing.assert_array_equal(out, _expected(templates))
    assert len(cache) == 2
    assert encoder.calls == [templates[:7]]


def test_the_least_recently_used_template_is_evicted_first() -> None:
    encoder = HashEncoder()
    cache = TemplateEmbeddingCache(encoder, max_entries=2)
    cache.embed(["a"])
    cache.embed(["b"])
    cache.embed(["a"])  # a is now more recent than b
    cache.embed(["c"])  # evicts b, keeps a
    cache.embed(["a"])
    cache.embed(["b"])
    assert encoder.calls == [["a"], ["b"], ["c"], ["b"]]


def test_a_batch_mixing_a_cached_template_and_a_new_one_returns_both_at_capacity() -> None:
    cache = TemplateEmbeddingCache(HashEncoder(), max_entries=2)
    cache.embed(["a", "b"])  # full: a is the least recently used
    out = cache.embed(["a", "c"])  # two templates, within max_entries
    np.testing.assert_array_equal(out, _expected(["a", "c"]))


# -- SQLite persistence ---------------------------------------------------------------------------


def test_a_new_cache_on_the_same_file_encodes_nothing_it_already_stored(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "embeddings.sqlite"
    first = TemplateEmbeddingCache(HashEncoder(), persist_path=path)
    first.embed(["a", "b", "c"])
    first.close()

    encoder = HashEncoder()
    second = TemplateEmbeddingCache(encoder, persist_path=path)
    out = second.embed(["c", "a", "b", "d"])
    assert encoder.calls == [["d"]]
    assert second.stats == CacheStats(hits=0, misses=4, encoded=1, loaded_from_disk=3)
    np.testing.assert_array_equal(out, _expected(["c", "a", "b", "d"]))
    second.close()


def test_templates_evicted_from_memory_come_back_from_disk_not_the_encoder(tmp_path: Path) -> None:
    encoder = HashEncoder()
    cache = TemplateEmbeddingCache(encoder, max_entries=1, persist_path=tmp_path / "e.sqlite")
    cache.embed(["a"])
    cache.embed(["b"])  # evicts a from memory
    out = cache.embed(["a"])
    assert encoder.calls == [["a"], ["b"]]
    assert cache.stats.loaded_from_disk == 1
    np.testing.assert_array_equal(out, _expected(["a"]))
    cache.close()


def test_a_different_encoder_identity_never_reads_another_encoders_vectors(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    first = TemplateEmbeddingCache(HashEncoder(salt="model-one"), persist_path=path)
    first.embed(["a", "b"])
    first.close()

    other = HashEncoder(salt="model-two")
    second = TemplateEmbeddingCache(other, persist_path=path)
    out = second.embed(["a", "b"])
    assert other.calls == [["a", "b"]]
    assert second.stats.loaded_from_disk == 0
    np.testing.assert_array_equal(out, _expected(["a", "b"], salt="model-two"))
    second.close()

    # Both encoders' rows now live side by side in the one file.
    again = HashEncoder(salt="model-one")
    third = TemplateEmbeddingCache(again, persist_path=path)
    np.testing.assert_array_equal(third.embed(["b"]), _expected(["b"], salt="model-one"))
    assert again.calls == []
    third.close()


def test_more_templates_than_one_sqlite_query_binds_are_loaded_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    templates = [f"template {i}" for i in range(1203)]
    first = TemplateEmbeddingCache(HashEncoder(dim=4), persist_path=path)
    first.embed(templates)
    first.close()

    encoder = HashEncoder(dim=4)
    second = TemplateEmbeddingCache(encoder, persist_path=path)
    out = second.embed(templates)
    assert encoder.calls == []
    assert second.stats.loaded_from_disk == 1203
    np.testing.assert_array_equal(out, _expected(templates, dim=4))
    second.close()


def test_after_close_the_cache_keeps_serving_from_memory_and_closing_again_is_harmless(
    tmp_path: Path,
) -> None:
    encoder = HashEncoder()
    cache = TemplateEmbeddingCache(encoder, persist_path=tmp_path / "e.sqlite")
    cache.embed(["a"])
    cache.close()
    cache.close()
    np.testing.assert_array_equal(cache.embed(["a", "b"]), _expected(["a", "b"]))
    assert encoder.calls == [["a"], ["b"]]
