"""Negative sampling: the positive is never a negative, and each strategy draws from the right set."""

import pytest
import torch

from cpc_rl.negatives import NEGATIVE_STRATEGIES, candidate_mask, sample_negatives, strategy_groups

GROUPS = torch.tensor([0, 1, 0, 2, 1, 2, 0])


@pytest.mark.parametrize("strategy", NEGATIVE_STRATEGIES)
def test_no_strategy_samples_the_positive_and_each_stays_in_its_set(strategy):
    batch, steps = len(GROUPS), 9
    valid = torch.ones(batch, steps, dtype=torch.bool)
    generator = torch.Generator().manual_seed(0)
    negatives = sample_negatives(strategy, 400, valid, GROUPS, generator)
    assert negatives.index.shape == (batch, steps, 400)
    positive = torch.arange(batch * steps).reshape(batch, steps, 1)
    assert not torch.any(negatives.index == positive)
    own_sequence = torch.arange(batch)[:, None, None]
    sequence = negatives.index // steps
    labels, exclude_own = strategy_groups(strategy, batch, GROUPS, torch.device("cpu"))
    assert torch.all(labels[sequence] == labels[own_sequence])
    if exclude_own:
        assert not torch.any(sequence == own_sequence)
    if strategy == "same_sequence":
        assert torch.all(sequence == own_sequence)
    # every allowed candidate is reachable: draws cover the whole candidate set of each row
    allowed = candidate_mask(labels, exclude_own, steps)
    for b in range(batch):
        drawn = set(negatives.index[b].flatten().tolist())
        expected = set(torch.nonzero(allowed[b]).flatten().tolist())
        assert drawn == expected, strategy


def test_draws_are_uniform_over_candidates():
    valid = torch.ones(2, 5, dtype=torch.bool)
    negatives = sample_negatives("batch", 20000, valid, generator=torch.Generator().manual_seed(1))
    counts = torch.bincount(negatives.index[0, 0], minlength=10).float()
    assert counts[0] == 0  # the positive
    share = counts[1:] / counts[1:].sum()
    assert torch.allclose(share, torch.full((9,), 1 / 9), atol=0.01)


def test_negatives_on_padding_are_marked_invalid():
    valid = torch.ones(3, 6, dtype=torch.bool)
    valid[2, 3:] = False
    negatives = sample_negatives("batch", 200, valid, generator=torch.Generator().manual_seed(0))
    on_padding = (negatives.index // 6 == 2) & (negatives.index % 6 >= 3)
    assert torch.any(on_padding)
    assert torch.equal(negatives.valid, ~on_padding)


def test_excluding_own_with_a_lonely_sequence_raises():
    valid = torch.ones(3, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="no other sequence"):
        sample_negatives("same_group_excluding_own", 4, valid, torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="no other sequence"):
        sample_negatives("batch_excluding_own", 4, torch.ones(1, 4, dtype=torch.bool))


def test_group_strategies_need_groups_of_the_right_shape():
    valid = torch.ones(3, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="groups"):
        sample_negatives("same_group", 4, valid)
    with pytest.raises(ValueError, match="groups"):
        sample_negatives("same_group", 4, valid, torch.tensor([0, 1]))


def test_unknown_strategy_is_named():
    with pytest.raises(ValueError, match="negatives='nearby'"):
        sample_negatives("nearby", 4, torch.ones(2, 4, dtype=torch.bool))
