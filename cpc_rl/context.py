"""The autoregressive context ``g_ar``: a GRU over ``z_{<=t}`` giving ``c_t``, and the action roll-out of CPC|Action."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class GRUContext(nn.Module):
    """GRU context network that resets its state at episode starts.

    A reset inside a sequence is handled without a Python loop over time: the batch is cut into its
    episode segments, which run as one packed batch, and the outputs are scattered back.

    :param input_dim: size of ``z_t``
    :param hidden_dim: size of ``c_t``
    :param num_layers: stacked GRU layers
    """

    def __init__(self, input_dim: int, hidden_dim: int = 256, num_layers: int = 1):
        super().__init__()
        self.gru = nn.GRU(input_dim, hidden_dim, num_layers=num_layers, batch_first=True)
        self.out_dim = hidden_dim
        self.num_layers = num_layers

    def initial_state(self, batch_size: int, device: Optional[torch.device] = None) -> torch.Tensor:
        """Zero hidden state ``(num_layers, B, H)``."""
        return torch.zeros(self.num_layers, batch_size, self.out_dim, device=device)

    def forward(
        self,
        z: torch.Tensor,
        hidden: Optional[torch.Tensor] = None,
        episode_starts: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        :param z: latents ``(B, T, D)``
        :param hidden: state carried from the previous call ``(num_layers, B, H)``; zeros if None
        :param episode_starts: ``(B, T)`` bool, True where step t begins a new episode (the state is reset
            to zero before it)
        :return: context ``(B, T, H)`` and the state after the last step ``(num_layers, B, H)``
        """
        if z.dim() != 3:
            raise ValueError(f"z must have rank 3 (B, T, D), got shape {tuple(z.shape)}")
        batch, steps, _ = z.shape
        if hidden is None:
            hidden = self.initial_state(batch, z.device)
        if episode_starts is None:
            return self.gru(z, hidden.contiguous())
        if episode_starts.shape != (batch, steps):
            raise ValueError(f"episode_starts must have shape {(batch, steps)}, got {tuple(episode_starts.shape)}")
        episode_starts = episode_starts.to(device=z.device, dtype=torch.bool)
        keep = (~episode_starts[:, 0]).to(hidden.dtype)[None, :, None]
        if not bool(episode_starts[:, 1:].any()):
            return self.gru(z, (hidden * keep).contiguous())
        return self._forward_segments(z, hidden * keep, episode_starts)

    def _forward_segments(self, z: torch.Tensor, hidden: torch.Tensor, episode_starts: torch.Tensor):
        batch, steps, dim = z.shape
        boundaries = episode_starts.clone()
        boundaries[:, 0] = True  # every row opens a segment, carrying ``hidden`` in unless it is a reset
        flat_boundaries = boundaries.reshape(-1)
        segment = torch.cumsum(flat_boundaries.long(), 0) - 1  # (B*T,) segment of each step, row-major
        n_segments = int(segment[-1]) + 1
        segment_start = torch.nonzero(flat_boundaries).squeeze(1)  # (S,) flat index where each segment starts
        offset = torch.arange(batch * steps, device=z.device) - segment_start[segment]
        lengths = torch.bincount(segment, minlength=n_segments)
        padded = z.new_zeros(n_segments, int(lengths.max()), dim)
        padded[segment, offset] = z.reshape(-1, dim)
        row_first = segment[:: steps]  # (B,) first segment of each row
        row_last = segment[steps - 1 :: steps]  # (B,) last segment of each row
        h0 = hidden.new_zeros(self.num_layers, n_segments, self.out_dim)
        h0[:, row_first] = hidden
        packed = pack_padded_sequence(padded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, h_segments = self.gru(packed, h0)
        out, _ = pad_packed_sequence(out, batch_first=True)
        context = out[segment, offset].reshape(batch, steps, self.out_dim)
        return context, h_segments[:, row_last]


class ActionEmbedding(nn.Module):
    """Embeds actions for CPC|Action: discrete ids through a lookup table, continuous vectors linearly.

    :param n_actions: number of discrete actions (give this or ``action_dim``)
    :param action_dim: size of a continuous action vector
    :param embed_dim: embedding size
    """

    def __init__(self, n_actions: Optional[int] = None, action_dim: Optional[int] = None, embed_dim: int = 32):
        super().__init__()
        if (n_actions is None) == (action_dim is None):
            raise ValueError("give exactly one of n_actions (discrete) or action_dim (continuous)")
        self.discrete = n_actions is not None
        self.embed = nn.Embedding(n_actions, embed_dim) if self.discrete else nn.Linear(action_dim, embed_dim)
        self.out_dim = embed_dim

    def forward(self, actions: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` ids (or ``(B, T, 1)`` as SB3 stores them) or ``(B, T, A)`` vectors -> ``(B, T, E)``."""
        if self.discrete:
            if actions.dim() == 3 and actions.shape[-1] == 1:
                actions = actions[..., 0]
            if actions.dim() != 2:
                raise ValueError(f"discrete actions must be (B, T) ids, got shape {tuple(actions.shape)}")
            return self.embed(actions.long())
        if actions.dim() != 3:
            raise ValueError(f"continuous actions must be (B, T, A), got shape {tuple(actions.shape)}")
        return self.embed(actions.float())


class ActionRollout(nn.Module):
    """CPC|Action: roll a GRU forward from ``c_t`` on the actions actually taken, ``a_t .. a_{t+k-1}``.

    Its state after k actions is what ``W_k`` reads to predict ``z_{t+k}``. All ``B * T`` roll-outs run as
    one GRU batch of length K.

    :param embedding: the action embedding
    :param context_dim: size of ``c_t`` (the roll-out's state)
    :param steps_ahead: K
    """

    def __init__(self, embedding: ActionEmbedding, context_dim: int, steps_ahead: int):
        super().__init__()
        self.embedding = embedding
        self.gru = nn.GRU(embedding.out_dim, context_dim, batch_first=True)
        self.steps_ahead = steps_ahead

    def forward(self, context: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """:param context: ``(B, T, H)``; :param actions: per step, see :class:`ActionEmbedding`.
        :return: ``(B, T, K, H)``, entry k-1 being the state after actions ``a_t .. a_{t+k-1}``."""
        batch, steps, hidden = context.shape
        embedded = self.embedding(actions)  # (B, T, E)
        if embedded.shape[:2] != (batch, steps):
            raise ValueError(f"actions must cover the same (B, T) = {(batch, steps)} as the context")
        # Steps past the end are clamped; predictions that would use them are masked by the loss.
        window = torch.arange(steps, device=context.device)[:, None] + torch.arange(self.steps_ahead, device=context.device)
        window = window.clamp_max(steps - 1)  # (T, K)
        inputs = embedded[:, window].reshape(batch * steps, self.steps_ahead, -1)
        out, _ = self.gru(inputs, context.reshape(1, batch * steps, hidden).contiguous())
        return out.reshape(batch, steps, self.steps_ahead, hidden)
