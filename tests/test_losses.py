"""The InfoNCE maths: perfect and random predictors, masks, temperature, action conditioning, bad input."""

import math

import pytest
import torch

from cpc_rl import CPCHead, CPCHeadConfig, InfoNCELoss, NEGATIVE_STRATEGIES, prediction_mask
from cpc_rl.context import ActionEmbedding, ActionRollout


def unit_latents(batch, steps, dim, seed=0):
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, steps, dim, generator=generator)
    return z / z.norm(dim=-1, keepdim=True)


def oracle_context(latents, steps_ahead):
    """c_t = [z_{t+1}, ..., z_{t+K}] (zeros past the end): a context that knows the future."""
    batch, steps, dim = latents.shape
    padded = torch.cat([latents, latents.new_zeros(batch, steps_ahead, dim)], dim=1)
    return torch.cat([padded[:, k : k + steps] for k in range(1, steps_ahead + 1)], dim=-1)


def oracle_loss(dim, steps_ahead, scale=50.0, **kwargs):
    """W_k picks block k of the oracle context, so W_k c_t = scale * z_{t+k}."""
    loss = InfoNCELoss(context_dim=dim * steps_ahead, latent_dim=dim, steps_ahead=steps_ahead, **kwargs)
    with torch.no_grad():
        loss.predictors.zero_()
        for k in range(steps_ahead):
            loss.predictors[k, :, k * dim : (k + 1) * dim] = scale * torch.eye(dim)
    return loss


@pytest.mark.parametrize("strategy", [s for s in NEGATIVE_STRATEGIES if not s.startswith("same_group")] + ["same_group", "same_group_excluding_own"])
@pytest.mark.parametrize("n_negatives", [16, "all"])
def test_perfect_predictor_reaches_accuracy_one_and_loss_near_zero(strategy, n_negatives):
    latents = unit_latents(6, 30, 64)
    loss = oracle_loss(64, 4, negatives=strategy, n_negatives=n_negatives)
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    out = loss(oracle_context(latents, 4), latents, groups=groups)
    assert torch.all(out.accuracy_per_step == 1.0)
    assert out.loss.item() < 1e-3
    assert out.count_per_step.tolist() == [6 * (30 - k) for k in range(1, 5)]


@pytest.mark.parametrize("n_negatives", [1, 7, 31])
def test_random_predictor_gives_log_one_plus_negatives_and_chance_accuracy(n_negatives):
    torch.manual_seed(0)
    latents = unit_latents(16, 64, 32)
    loss = InfoNCELoss(context_dim=32, latent_dim=32, steps_ahead=3, n_negatives=n_negatives)
    with torch.no_grad():
        loss.predictors.normal_(0.0, 1e-3)  # scores ~ 0: no information about the future
    out = loss(torch.randn(16, 64, 32), latents)
    assert out.loss.item() == pytest.approx(math.log(1 + n_negatives), abs=0.01)
    chance = 1.0 / (1 + n_negatives)
    assert out.accuracy_per_step.mean().item() == pytest.approx(chance, abs=0.04)


def test_all_negatives_loss_counts_every_other_latent():
    latents = unit_latents(4, 10, 16)
    loss = InfoNCELoss(context_dim=16, latent_dim=16, steps_ahead=2, negatives="batch", n_negatives="all")
    with torch.no_grad():
        loss.predictors.zero_()
    out = loss(torch.randn(4, 10, 16), latents)
    # all scores equal: loss = log(number of columns) = log(B*T), the positive plus B*T - 1 negatives
    assert out.loss.item() == pytest.approx(math.log(4 * 10), abs=1e-5)
    loss.negatives = "same_sequence"
    assert loss(torch.randn(4, 10, 16), latents).loss.item() == pytest.approx(math.log(10), abs=1e-5)
    loss.negatives = "batch_excluding_own"
    assert loss(torch.randn(4, 10, 16), latents).loss.item() == pytest.approx(math.log(1 + 3 * 10), abs=1e-5)


def test_prediction_mask_drops_targets_across_an_episode_start_and_past_the_end():
    valid = torch.ones(1, 10, dtype=torch.bool)
    starts = torch.zeros(1, 10, dtype=torch.bool)
    starts[0, 4] = True  # a new episode begins at t=4
    mask = prediction_mask(3, valid, starts)  # [k-1, b, target t]
    for k in (1, 2, 3):
        for target in range(10):
            source = target - k
            expected = source >= 0 and (source >= 4) == (target >= 4)
            assert bool(mask[k - 1, 0, target]) == expected, (k, target)


def test_a_target_across_an_episode_start_is_left_out_of_the_loss():
    latents = unit_latents(2, 12, 32)
    loss = oracle_loss(32, 2)
    starts = torch.zeros(2, 12, dtype=torch.bool)
    starts[0, 6] = True
    out = loss(oracle_context(latents, 2), latents, episode_starts=starts)
    # k=1 loses the one pair (5 -> 6); k=2 loses (4 -> 6) and (5 -> 7)
    assert out.count_per_step.tolist() == [2 * 11 - 1, 2 * 10 - 2]
    # the oracle would have got the crossing pairs right too; make them wrong and the loss must not move
    scrambled = oracle_context(latents, 2)
    scrambled[0, 5] = -scrambled[0, 5]
    scrambled[0, 4, 32:] = -scrambled[0, 4, 32:]
    again = loss(scrambled, latents, episode_starts=starts)
    assert torch.all(again.accuracy_per_step == 1.0)


def test_padding_is_neither_target_nor_negative():
    latents = unit_latents(3, 16, 32)
    valid = torch.ones(3, 16, dtype=torch.bool)
    valid[1, 10:] = False
    loss = InfoNCELoss(context_dim=32, latent_dim=32, steps_ahead=2, n_negatives="all")
    with torch.no_grad():
        loss.predictors.zero_()
    out = loss(torch.randn(3, 16, 32), latents, valid=valid)
    assert out.count_per_step.tolist() == [3 * 15 - 6, 3 * 14 - 6]
    n_real = int(valid.sum())
    assert out.loss.item() == pytest.approx(math.log(n_real), abs=1e-5)


def test_temperature_divides_the_scores():
    latents = unit_latents(4, 20, 16)
    context = torch.randn(4, 20, 16)
    plain = InfoNCELoss(16, 16, 2, n_negatives="all")
    warm = InfoNCELoss(16, 16, 2, n_negatives="all", temperature=0.5)
    with torch.no_grad():
        warm.predictors.copy_(plain.predictors)
        doubled = InfoNCELoss(16, 16, 2, n_negatives="all")
        doubled.predictors.copy_(2 * plain.predictors)
    assert warm(context, latents).loss.item() == pytest.approx(doubled(context, latents).loss.item(), rel=1e-5)
    assert warm(context, latents).loss.item() != pytest.approx(plain(context, latents).loss.item(), rel=1e-3)


def test_gradients_reach_predictors_and_context():
    latents = unit_latents(4, 20, 16).requires_grad_(True)
    context = torch.randn(4, 20, 8, requires_grad=True)
    loss = InfoNCELoss(8, 16, 3, n_negatives=5)
    loss(context, latents).loss.backward()
    assert latents.grad.abs().sum() > 0
    assert context.grad.abs().sum() > 0
    assert loss.predictors.grad.abs().sum() > 0


def test_action_conditioning_learns_a_future_that_only_the_actions_determine():
    """z_{t+1} is a fixed embedding of the action a_t (plus noise): only CPC|Action can predict it."""
    torch.manual_seed(0)
    n_actions, dim, batch, steps = 16, 16, 16, 24
    table = unit_latents(1, n_actions, dim)[0] * 3

    def batch_of_sequences():
        actions = torch.randint(n_actions, (batch, steps))
        latents = torch.cat([torch.randn(batch, 1, dim), table[actions[:, :-1]]], dim=1)
        return latents + 0.1 * torch.randn_like(latents), actions

    def train(action_conditioning):
        config = CPCHeadConfig(steps_ahead=1, context_dim=16, negatives="batch", n_negatives=8, action_conditioning=action_conditioning)
        head = CPCHead(dim, config, n_actions=n_actions)
        optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
        for _ in range(150):
            latents, actions = batch_of_sequences()
            # the context sees nothing of the future: zero latents in, so c_t carries no information
            context, _ = head.context(torch.zeros_like(latents))
            out = head.loss(context, latents, actions=actions)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
        latents, actions = batch_of_sequences()
        context, _ = head.context(torch.zeros_like(latents))
        return head.loss(context, latents, actions=actions).accuracy_per_step[0].item()

    # a negative with the same action (1 in 16) is a coin flip; otherwise the action tells them apart
    assert train(True) > 0.5
    assert train(False) < 0.3  # chance is 1/9


def test_action_rollout_state_after_k_actions():
    torch.manual_seed(0)
    rollout = ActionRollout(ActionEmbedding(n_actions=3, embed_dim=4), context_dim=5, steps_ahead=2)
    context = torch.randn(2, 6, 5)
    actions = torch.randint(3, (2, 6))
    out = rollout(context, actions)
    assert out.shape == (2, 6, 2, 5)
    # entry [b, t, 1] depends on a_t and a_{t+1} only: changing a_{t+2} leaves it alone
    changed = actions.clone()
    changed[:, 4] = (changed[:, 4] + 1) % 3
    again = rollout(context, changed)
    assert torch.allclose(out[:, 2], again[:, 2])
    assert not torch.allclose(out[:, 3, 1], again[:, 3, 1])


def test_loss_needs_actions_when_built_with_conditioning():
    head = CPCHead(8, CPCHeadConfig(steps_ahead=2, context_dim=8, action_conditioning=True), n_actions=3)
    with pytest.raises(ValueError, match="actions"):
        head(torch.randn(2, 10, 8))
    with pytest.raises(ValueError, match="n_actions"):
        CPCHead(8, CPCHeadConfig(action_conditioning=True))


def test_horizon_not_shorter_than_the_sequence_raises_naming_steps_ahead():
    loss = InfoNCELoss(8, 8, steps_ahead=10)
    with pytest.raises(ValueError, match="steps_ahead=10.*T=10"):
        loss(torch.randn(2, 10, 8), torch.randn(2, 10, 8))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(negatives="speaker"), "negatives"),
        (dict(n_negatives=0), "n_negatives"),
        (dict(n_negatives="many"), "n_negatives"),
        (dict(steps_ahead=0), "steps_ahead"),
        (dict(temperature=0.0), "temperature"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    arguments = dict(context_dim=8, latent_dim=8, steps_ahead=2) | kwargs
    with pytest.raises(ValueError, match=name):
        InfoNCELoss(**arguments)


def test_wrong_input_rank_raises_naming_the_argument():
    loss = InfoNCELoss(8, 8, 2)
    with pytest.raises(ValueError, match="latents"):
        loss(torch.randn(2, 10, 8), torch.randn(20, 8))
    with pytest.raises(ValueError, match="context"):
        loss(torch.randn(20, 8), torch.randn(2, 10, 8))


def test_dense_and_gathered_negative_scoring_agree(monkeypatch):
    import cpc_rl.losses as losses

    latents = unit_latents(4, 30, 16)
    context = torch.randn(4, 30, 8)
    loss = InfoNCELoss(8, 16, 3, n_negatives=20)
    dense = loss(context, latents, generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(losses, "DENSE_SCORES_MAX_ELEMENTS", 0)
    gathered = loss(context, latents, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(dense.loss, gathered.loss, atol=1e-5)
    assert torch.equal(dense.accuracy_per_step, gathered.accuracy_per_step)
