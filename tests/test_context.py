"""The GRU context: resets at episode starts, carried state, shapes."""

import pytest
import torch

from cpc_rl import GRUContext


def stepwise(context, z, starts, hidden):
    outputs = []
    for t in range(z.shape[1]):
        hidden = hidden * (~starts[:, t]).float()[None, :, None]
        out, hidden = context.gru(z[:, t : t + 1], hidden)
        outputs.append(out)
    return torch.cat(outputs, 1), hidden


@pytest.mark.parametrize("layers", [1, 2])
def test_reset_inside_sequences_matches_a_step_by_step_reference(layers):
    torch.manual_seed(0)
    context = GRUContext(6, 10, num_layers=layers)
    z = torch.randn(4, 15, 6)
    starts = torch.zeros(4, 15, dtype=torch.bool)
    starts[0, 3] = starts[0, 4] = True  # one-step episode in between
    starts[1, 0] = True  # reset at the first step discards the carried state
    starts[2, 14] = True  # reset at the last step
    hidden = torch.randn(layers, 4, 10)
    out, h_n = context(z, hidden, starts)
    ref_out, ref_h = stepwise(context, z, starts, hidden)
    assert torch.allclose(out, ref_out, atol=1e-5)
    assert torch.allclose(h_n, ref_h, atol=1e-5)


def test_state_carried_across_calls_equals_one_long_call():
    torch.manual_seed(0)
    context = GRUContext(4, 8)
    z = torch.randn(3, 20, 4)
    starts = torch.zeros(3, 20, dtype=torch.bool)
    starts[1, 12] = True
    whole, h_whole = context(z, None, starts)
    first, h = context(z[:, :10], None, starts[:, :10])
    second, h_second = context(z[:, 10:], h, starts[:, 10:])
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-5)
    assert torch.allclose(h_second, h_whole, atol=1e-5)


def test_a_reset_hides_the_previous_episode():
    torch.manual_seed(0)
    context = GRUContext(4, 8)
    z = torch.randn(1, 10, 4)
    starts = torch.zeros(1, 10, dtype=torch.bool)
    starts[0, 5] = True
    changed = z.clone()
    changed[0, :5] = torch.randn(5, 4)
    a, _ = context(z, None, starts)
    b, _ = context(changed, None, starts)
    assert torch.allclose(a[0, 5:], b[0, 5:])
    assert not torch.allclose(a[0, :5], b[0, :5])


def test_bad_shapes_are_named():
    context = GRUContext(4, 8)
    with pytest.raises(ValueError, match="z must have rank 3"):
        context(torch.randn(10, 4))
    with pytest.raises(ValueError, match="episode_starts"):
        context(torch.randn(2, 10, 4), None, torch.zeros(2, 9, dtype=torch.bool))
