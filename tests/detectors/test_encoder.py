"""Tests for detectors.encoder: the real bundled MiniLM encoder (slow) and its error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectors.encoder import EncoderNotFoundError, TransformerEncoder, default_encoder_path


@pytest.fixture(scope="module")
def encoder() -> TransformerEncoder:
    return TransformerEncoder(batch_size=4)


TEXTS = [
    "<TS> ERROR order-service connection refused",
    "ok",
    "<TS> INFO [api] <ID> from <IP> took <NUM> and then retried the whole request pipeline twice",
    "Receiving block <BLK> src: /<IP> dest: /<IP>",
    "RAS KERNEL INFO instruction cache parity error corrected",
    "disk full",
]


@pytest.mark.slow
def test_the_default_encoder_gives_384_wide_unit_vectors(encoder: TransformerEncoder) -> None:
    vectors = encoder.encode(TEXTS)
    assert encoder.dim == 384
    assert vectors.shape == (len(TEXTS), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), np.ones(len(TEXTS)), atol=1e-5)


@pytest.mark.slow
def test_vectors_come_back_in_input_order_despite_length_sorted_batches(encoder: TransformerEncoder) -> None:
    # batch_size=4 with lengths out of order: sorting regroups the texts across two batches.
    together = encoder.encode(TEXTS)
    for text, vector in zip(TEXTS, together, strict=True):
        alone = encoder.encode([text])[0]
        assert float(vector @ alone) > 0.9999, text


@pytest.mark.slow
def test_different_texts_get_different_vectors_and_equal_texts_equal_ones(
    encoder: TransformerEncoder,
) -> None:
    vectors = encoder.encode(["disk full", "disk full", "user logged in"])
    assert float(vectors[0] @ vectors[1]) > 0.9999
    assert float(vectors[0] @ vectors[2]) < 0.9


@pytest.mark.slow
def test_encoding_nothing_returns_an_empty_array(encoder: TransformerEncoder) -> None:
    assert encoder.encode([]).shape == (0, 384)


@pytest.mark.slow
def test_the_encoder_identity_is_stable_across_loads(encoder: TransformerEncoder) -> None:
    again = TransformerEncoder()
    assert again.identity == encoder.identity
    assert encoder.identity.startswith(f"{default_encoder_path().name}:")
    assert len(encoder.identity.split(":")[-1]) == 16


def test_a_missing_encoder_directory_names_the_setting_that_fixes_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-encoder"
    with pytest.raises(EncoderNotFoundError, match="LOGTRIAGE_ENCODER_PATH") as caught:
        TransformerEncoder(missing)
    assert str(missing) in str(caught.value)


def test_a_directory_without_config_json_is_not_an_encoder(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(EncoderNotFoundError, match=r"config\.json missing"):
        TransformerEncoder(tmp_path)
