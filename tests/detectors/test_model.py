"""Tests for detectors.model: shapes, padding invariance, the exact per-line decomposition."""

from __future__ import annotations

import pytest
import torch

from detectors.model import Block, SequenceModel, SequenceModelConfig


def _config(**overrides: object) -> SequenceModelConfig:
    values: dict[str, object] = {
        "encoder_dim": 8,
        "d_model": 16,
        "n_layers": 1,
        "n_heads": 8,
        "d_ff": 12,
        "n_experts": 4,
        "top_p": 0.8,
        "max_lines": 10,
        "dropout": 0.0,
        "categories": ["normal", "disk", "network"],
    }
    values.update(overrides)
    return SequenceModelConfig(**values)  # type: ignore[arg-type]


def _model(**overrides: object) -> SequenceModel:
    torch.manual_seed(0)
    return SequenceModel(_config(**overrides)).eval()


def _batch(lengths: list[int], width: int | None = None, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Random embeddings (B, L, dim) and a mask with the given number of real lines per row."""
    width = width or max(lengths)
    generator = torch.Generator().manual_seed(11)
    x = torch.randn(len(lengths), width, dim, generator=generator)
    mask = torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return x, mask


def test_forward_returns_every_field_with_the_documented_shape() -> None:
    model = _model(n_layers=2)
    x, mask = _batch([5, 3, 1])
    with torch.no_grad():
        out = model(x, mask)
    assert out.anomaly_logit.shape == (3,)
    assert out.category_logits.shape == (3, 3)
    assert out.line_contributions.shape == (3, 5)
    assert out.pooled.shape == (3, 16)
    assert len(out.routing) == 2
    for stats in out.routing:
        assert stats.gate_probs.shape == (3, 5, 4)
        assert stats.combine_weights.shape == (3, 5, 4)
        assert stats.balance_loss.shape == ()
    assert out.balance_loss.shape == ()
    assert float(out.balance_loss) == pytest.approx(
        float((out.routing[0].balance_loss + out.routing[1].balance_loss) / 2)
    )


def test_appending_padding_with_garbage_embeddings_changes_no_output() -> None:
    model = _model(n_layers=2)
    x, mask = _batch([4, 2])
    padded_x = torch.cat([x, 100 * torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(5))], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(2, 5, dtype=torch.bool)], dim=1)
    # Positions already padded in the short row get garbage too.
    padded_x[1, 2:4] = -77.0
    with torch.no_grad():
        out = model(x, mask)
        padded = model(padded_x, padded_mask)
    torch.testing.assert_close(padded.anomaly_logit, out.anomaly_logit, atol=1e-5, rtol=0)
    torch.testing.assert_close(padded.category_logits, out.category_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(padded.pooled, out.pooled, atol=1e-5, rtol=0)
    torch.testing.assert_close(padded.line_contributions[:, :4], out.line_contributions, atol=1e-5, rtol=0)


def test_a_sequence_scores_the_same_alone_and_padded_inside_a_batch() -> None:
    model = _model()
    x, mask = _batch([6, 3])
    with torch.no_grad():
        together = model(x, mask)
        alone = model(x[1:, :3], mask[1:, :3])
    torch.testing.assert_close(together.anomaly_logit[1:], alone.anomaly_logit, atol=1e-5, rtol=0)
    torch.testing.assert_close(together.category_logits[1:], alone.category_logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dense", [True, False])
def test_line_contributions_plus_bias_add_up_to_the_anomaly_logit(dense: bool) -> None:
    model = _model(n_layers=2)
    model.set_dense(dense)
    x, mask = _batch([5, 2, 4])
    with torch.no_grad():
        model.anomaly_head.bias.fill_(0.375)
        out = model(x, mask)
    total = out.line_contributions.sum(dim=1) + model.anomaly_head.bias
    torch.testing.assert_close(total, out.anomaly_logit, atol=1e-5, rtol=1e-5)


def test_line_contributions_are_exactly_zero_on_padding() -> None:
    model = _model()
    x, mask = _batch([5, 2, 4])
    with torch.no_grad():
        out = model(x, mask)
    assert torch.equal(out.line_contributions[~mask], torch.zeros(int((~mask).sum())))
    assert bool((out.line_contributions[mask] != 0).all())


def test_config_rejects_d_model_not_divisible_by_n_heads() -> None:
    with pytest.raises(ValueError, match=r"d_model \(10\) must be divisible by n_heads \(4\)"):
        SequenceModelConfig(d_model=10, n_heads=4)


def test_a_window_longer_than_max_lines_is_rejected_with_a_hint_to_window_it() -> None:
    model = _model(max_lines=4)
    x, mask = _batch([5])
    with pytest.raises(ValueError, match="window of 5 lines exceeds max_lines=4; window it first"):
        model(x, mask)


def test_a_window_of_exactly_max_lines_is_accepted() -> None:
    model = _model(max_lines=4)
    x, mask = _batch([4])
    assert model(x, mask).anomaly_logit.shape == (1,)


def test_a_backward_pass_reaches_every_parameter_group() -> None:
    model = _model(n_layers=2, dropout=0.1).train()
    model.set_dense(True)
    x, mask = _batch([4, 3])
    out = model(x, mask)
    loss = (
        torch.nn.functional.binary_cross_entropy_with_logits(out.anomaly_logit, torch.tensor([1.0, 0.0]))
        + torch.nn.functional.cross_entropy(out.category_logits, torch.tensor([2, 0]))
        + out.balance_loss
    )
    loss.backward()
    no_gradient = [
        name
        for name, parameter in model.named_parameters()
        if parameter.grad is None or float(parameter.grad.abs().sum()) == 0.0
    ]
    assert no_gradient == []
    # Position rows past the longest window (4 of max_lines=10) are not used, so get nothing.
    positions = model.positions.weight.grad
    assert positions is not None
    assert bool((positions[:4].abs().sum(dim=1) > 0).all())
    assert torch.equal(positions[4:], torch.zeros(6, 16))
    groups = {name.split(".")[0] for name, p in model.named_parameters() if p.grad is not None}
    assert groups == {"project", "positions", "blocks", "final_norm", "anomaly_head", "category_head"}
    routers = [block.moe.router.weight.grad for block in model.blocks if isinstance(block, Block)]
    assert all(g is not None and float(g.abs().sum()) > 0.0 for g in routers)


def test_set_dense_switches_every_block_on_and_off() -> None:
    model = _model(n_layers=3)
    moes = [block.moe for block in model.blocks if isinstance(block, Block)]
    assert [moe.dense for moe in moes] == [False, False, False]  # gated by default
    model.set_dense(True)
    assert [moe.dense for moe in moes] == [True, True, True]
    model.set_dense(False)
    assert [moe.dense for moe in moes] == [False, False, False]


def test_dense_and_gated_routing_give_different_combine_weights() -> None:
    model = _model()
    block = model.blocks[0]
    assert isinstance(block, Block)
    with torch.no_grad():
        block.moe.router.weight.mul_(20.0)
    x, mask = _batch([6])
    with torch.no_grad():
        model.set_dense(True)
        dense = model(x, mask).routing[0]
        model.set_dense(False)
        gated = model(x, mask).routing[0]
    assert torch.equal(dense.combine_weights, dense.gate_probs)
    assert bool((gated.combine_weights == 0).any())
    assert not bool((dense.combine_weights == 0).any())


def test_config_survives_a_dict_round_trip() -> None:
    config = _config(top_p=0.65, max_lines=32)
    data = config.to_dict()
    assert data == {
        "encoder_dim": 8,
        "d_model": 16,
        "n_layers": 1,
        "n_heads": 8,
        "d_ff": 12,
        "n_experts": 4,
        "top_p": 0.65,
        "max_lines": 32,
        "dropout": 0.0,
        "categories": ["normal", "disk", "network"],
    }
    assert SequenceModelConfig.from_dict(data) == config
    assert SequenceModelConfig.from_dict(data).n_categories == 3


def test_config_from_dict_ignores_unknown_keys_and_fills_defaults() -> None:
    config = SequenceModelConfig.from_dict({"d_model": 32, "added_in_a_later_version": True})
    assert config == SequenceModelConfig(d_model=32)
