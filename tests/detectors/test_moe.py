"""Tests for detectors.moe: Top-P expert selection, the MoE block and its balancing loss."""

from __future__ import annotations

import pytest
import torch

from detectors.moe import TopPMoE, load_balance_loss, top_p_mask


def _mask(probs: list[float], top_p: float) -> list[bool]:
    return top_p_mask(torch.tensor(probs), top_p).tolist()


def _seed_top_p_mask(gate_probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """The seed project's routing: a cut-off computed in sorted order, applied to unsorted gates."""
    sorted_probs, _ = torch.sort(gate_probs, dim=-1, descending=True)
    remove = torch.cumsum(sorted_probs, dim=-1) > top_p
    return ~remove  # indexes ranks, but was used as if it indexed experts


def _random_gates(generator: torch.Generator, *shape: int, spread: float = 3.0) -> torch.Tensor:
    return torch.softmax(torch.randn(*shape, generator=generator) * spread, dim=-1)


# -- top_p_mask: hand-computed cases ------------------------------------------------------------


def test_top_p_keeps_the_two_largest_experts_in_their_original_positions() -> None:
    # Ranked: expert 1 (0.6), expert 3 (0.25) -> 0.85 >= 0.8, so experts 0 and 2 are dropped.
    assert _mask([0.1, 0.6, 0.05, 0.25], 0.8) == [False, True, False, True]


def test_top_p_keeps_only_the_top_expert_when_it_alone_reaches_p() -> None:
    assert _mask([0.05, 0.9, 0.03, 0.02], 0.8) == [False, True, False, False]


def test_top_p_keeps_the_top_expert_even_when_p_is_tiny() -> None:
    assert _mask([0.3, 0.2, 0.5], 1e-6) == [False, False, True]


def test_top_p_of_one_keeps_every_expert_with_nonzero_mass() -> None:
    # Dyadic values so the running sum is exact: the zero-mass expert has 1.0 ranked above it.
    assert _mask([0.5, 0.25, 0.0, 0.25], 1.0) == [True, True, False, True]
    assert _mask([0.1, 0.6, 0.05, 0.25], 1.0) == [True, True, True, True]


def test_top_p_stops_as_soon_as_the_kept_mass_reaches_p_exactly() -> None:
    # 0.5 + 0.25 == 0.75 exactly, so the third-ranked expert is not needed.
    assert _mask([0.125, 0.5, 0.25, 0.125], 0.75) == [False, True, True, False]


def test_top_p_keeps_exactly_one_of_two_tied_top_experts_when_one_reaches_p() -> None:
    kept = _mask([0.375, 0.25, 0.375], 0.375)
    assert sum(kept) == 1
    assert kept[1] is False


def test_top_p_keeps_both_tied_top_experts_when_p_needs_more_than_one() -> None:
    assert _mask([0.375, 0.25, 0.375], 0.5) == [True, False, True]


def test_top_p_breaks_a_tie_at_the_cut_by_keeping_only_one_of_the_tied_experts() -> None:
    kept = _mask([0.25, 0.5, 0.25], 0.6)
    assert kept[1] is True
    assert sum(kept) == 2


def test_top_p_mask_works_per_token_on_a_batch_of_sequences() -> None:
    gates = torch.tensor(
        [
            [[0.1, 0.6, 0.05, 0.25], [0.05, 0.9, 0.03, 0.02], [0.25, 0.25, 0.25, 0.25]],
            [[0.625, 0.25, 0.0625, 0.0625], [0.0, 0.0, 0.5, 0.5], [0.02, 0.03, 0.05, 0.9]],
        ]
    )
    kept = top_p_mask(gates, 0.8)
    assert kept.shape == (2, 3, 4)
    assert kept.dtype == torch.bool
    assert kept[0, 0].tolist() == [False, True, False, True]
    assert kept[0, 1].tolist() == [False, True, False, False]
    assert kept[0, 2].tolist() == [True, True, True, True]
    assert kept[1, 0].tolist() == [True, True, False, False]
    assert kept[1, 1].tolist() == [False, False, True, True]
    assert kept[1, 2].tolist() == [False, False, False, True]


def test_top_p_mask_does_not_modify_its_input() -> None:
    gates = torch.tensor([[0.1, 0.6, 0.05, 0.25]])
    before = gates.clone()
    top_p_mask(gates, 0.8)
    assert torch.equal(gates, before)


# -- top_p_mask: properties over random softmaxes -----------------------------------------------


@pytest.mark.parametrize("top_p", [0.05, 0.5, 0.8, 0.95])
def test_top_p_always_keeps_the_most_probable_expert(top_p: float) -> None:
    generator = torch.Generator().manual_seed(1234)
    gates = _random_gates(generator, 64, 16, 6)  # (B, L, E)
    kept = top_p_mask(gates, top_p)
    top = gates.argmax(dim=-1, keepdim=True)
    assert torch.gather(kept, -1, top).all()


@pytest.mark.parametrize("top_p", [0.3, 0.6, 0.8, 0.9])
def test_top_p_keeps_the_minimal_descending_prefix_that_reaches_p(top_p: float) -> None:
    generator = torch.Generator().manual_seed(7)
    gates = _random_gates(generator, 2000, 5).double()
    kept = top_p_mask(gates, top_p)
    for probs, keep in zip(gates, kept, strict=True):
        n_kept = int(keep.sum())
        ranked = torch.sort(probs, descending=True).values
        # The kept experts are exactly the n_kept most probable ones ...
        if n_kept < len(probs):
            assert probs[keep].min() >= probs[~keep].max()
        # ... and n_kept is the fewest whose mass reaches p.
        assert float(ranked[: n_kept - 1].sum()) < top_p
        assert n_kept == len(probs) or float(ranked[:n_kept].sum()) >= top_p


# -- regression: the seed's sorted-order mask applied to unsorted gates --------------------------


def test_seed_bug_sorted_mask_on_unsorted_gates_keeps_the_wrong_experts() -> None:
    gates = torch.tensor([0.1, 0.6, 0.05, 0.25])
    assert _seed_top_p_mask(gates, 0.8).tolist() == [True, False, False, False]  # expert 0: wrong
    assert top_p_mask(gates, 0.8).tolist() == [False, True, False, True]


def test_seed_bug_zeroed_every_gate_when_the_top_expert_alone_reached_p() -> None:
    gates = torch.tensor([0.05, 0.9, 0.03, 0.02])
    assert not _seed_top_p_mask(gates, 0.8).any()
    assert top_p_mask(gates, 0.8).tolist() == [False, True, False, False]


# -- TopPMoE -------------------------------------------------------------------------------------


def _moe(top_p: float = 0.8, seed: int = 0) -> TopPMoE:
    torch.manual_seed(seed)
    moe = TopPMoE(d_model=8, d_ff=16, n_experts=4, top_p=top_p, dropout=0.0)
    # A wide router so gates are far from uniform and Top-P actually drops experts.
    with torch.no_grad():
        moe.router.weight.mul_(8.0)
    return moe


def _inputs(batch: int = 2, length: int = 5, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, 8, generator=generator)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[1, 3:] = False
    return x, mask


@pytest.mark.parametrize("top_p", [0.0, -0.1, 1.01])
def test_top_p_moe_rejects_top_p_outside_zero_to_one(top_p: float) -> None:
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        TopPMoE(d_model=8, d_ff=16, n_experts=4, top_p=top_p, dropout=0.0)


def test_dense_moe_combines_every_expert_by_its_softmax_gate() -> None:
    moe = _moe()
    moe.dense = True
    x, mask = _inputs()
    y, stats = moe(x, mask)
    assert torch.equal(stats.combine_weights, stats.gate_probs)
    assert torch.equal(stats.gate_probs, torch.softmax(moe.router(x), dim=-1))
    expected = sum(stats.gate_probs[..., e : e + 1] * moe.experts[e](x) for e in range(4))
    torch.testing.assert_close(y, expected)


def test_gated_moe_renormalises_the_kept_gates_and_zeroes_the_dropped_ones() -> None:
    moe = _moe(top_p=0.6)
    x, mask = _inputs()
    y, stats = moe(x, mask)
    kept = top_p_mask(stats.gate_probs, 0.6)
    assert not kept.all(), "the test needs some dropped experts to be meaningful"
    combine = stats.combine_weights
    assert torch.equal(combine[~kept], torch.zeros(int((~kept).sum())))
    torch.testing.assert_close(combine.sum(dim=-1), torch.ones(2, 5))
    expected_combine = stats.gate_probs * kept / (stats.gate_probs * kept).sum(-1, keepdim=True)
    torch.testing.assert_close(combine, expected_combine)
    expected = sum(combine[..., e : e + 1] * moe.experts[e](x) for e in range(4))
    torch.testing.assert_close(y, expected)


def test_gated_moe_uses_only_the_top_expert_for_a_confident_router() -> None:
    moe = _moe(top_p=0.5)
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.bias.copy_(torch.tensor([0.0, 0.0, 10.0, 0.0]))
    x, mask = _inputs()
    y, stats = moe(x, mask)
    one_hot = torch.tensor([0.0, 0.0, 1.0, 0.0]).expand(2, 5, 4)
    assert torch.equal(stats.combine_weights, one_hot)
    torch.testing.assert_close(y, moe.experts[2](x))


@pytest.mark.parametrize("dense", [True, False])
def test_gradients_reach_the_router_and_every_expert(dense: bool) -> None:
    moe = _moe(top_p=0.99)
    moe.dense = dense
    x, mask = _inputs()
    y, _ = moe(x, mask)
    (y**2).sum().backward()
    assert moe.router.weight.grad is not None
    assert float(moe.router.weight.grad.abs().sum()) > 0.0
    for expert in moe.experts:
        for parameter in expert.parameters():
            assert parameter.grad is not None and float(parameter.grad.abs().sum()) > 0.0


# -- load_balance_loss ----------------------------------------------------------------------------


def test_load_balance_loss_is_one_for_perfectly_uniform_routing() -> None:
    gates = torch.full((2, 3, 4), 0.25)
    selected = torch.ones(2, 3, 4, dtype=torch.bool)
    mask = torch.ones(2, 3, dtype=torch.bool)
    assert float(load_balance_loss(gates, selected, mask)) == pytest.approx(1.0)


def test_load_balance_loss_is_the_expert_count_when_routing_collapses_onto_one_expert() -> None:
    gates = torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(2, 3, 4)
    selected = gates > 0
    mask = torch.ones(2, 3, dtype=torch.bool)
    assert float(load_balance_loss(gates, selected, mask)) == pytest.approx(4.0)


def test_load_balance_loss_matches_the_switch_formula_on_a_hand_example() -> None:
    gates = torch.tensor([[[0.5, 0.5], [1.0, 0.0]]])
    selected = torch.tensor([[[True, True], [True, False]]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    # f = (2/3, 1/3), P = (0.75, 0.25): 2 * (2/3 * 0.75 + 1/3 * 0.25) = 7/6
    assert float(load_balance_loss(gates, selected, mask)) == pytest.approx(7 / 6)


def test_load_balance_loss_ignores_padded_tokens() -> None:
    generator = torch.Generator().manual_seed(3)
    gates = _random_gates(generator, 2, 6, 4)
    selected = top_p_mask(gates, 0.7)
    mask = torch.tensor([[True] * 6, [True, True, True, False, False, False]])
    before = load_balance_loss(gates, selected, mask)
    garbage_gates = gates.clone()
    garbage_gates[1, 3:] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    garbage_selected = selected.clone()
    garbage_selected[1, 3:] = torch.tensor([True, False, False, False])
    after = load_balance_loss(garbage_gates, garbage_selected, mask)
    assert float(after) == pytest.approx(float(before), abs=1e-7)
    # And the padding really was different enough to matter had it been counted:
    counted = load_balance_loss(garbage_gates, garbage_selected, torch.ones(2, 6, dtype=torch.bool))
    assert float(counted) != pytest.approx(float(before), abs=1e-3)


def test_moe_balance_loss_does_not_depend_on_what_padded_positions_contain() -> None:
    moe = _moe()
    x, mask = _inputs()
    noisy = x.clone()
    noisy[1, 3:] = torch.randn(2, 8, generator=torch.Generator().manual_seed(9)) * 50
    with torch.no_grad():
        _, stats = moe(x, mask)
        _, noisy_stats = moe(noisy, mask)
    assert float(noisy_stats.balance_loss) == pytest.approx(float(stats.balance_loss), abs=1e-6)
