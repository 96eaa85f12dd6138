"""CPC composed: encoder -> GRU context -> InfoNCE over K steps ahead."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from cpc_rl.config import CPCConfig, CPCHeadConfig
from cpc_rl.context import ActionEmbedding, ActionRollout, GRUContext
from cpc_rl.encoders import build_encoder
from cpc_rl.losses import CPCOutput, InfoNCELoss


class CPCHead(nn.Module):
    """The part of CPC that sits on top of an encoder: it takes latents ``z_t`` from anywhere.

    The RL agents use it on the policy's own features, the standalone trainers on a :class:`CPC` encoder.

    :param latent_dim: size of ``z_t``
    :param config: context, predictors and loss settings (with ``projection_dim``, the GRU and the loss work on
        :meth:`project` of the latents)
    :param n_actions: number of discrete actions, for CPC|Action
    :param action_dim: size of continuous actions, for CPC|Action
    """

    def __init__(
        self,
        latent_dim: int,
        config: Optional[CPCHeadConfig] = None,
        n_actions: Optional[int] = None,
        action_dim: Optional[int] = None,
    ):
        super().__init__()
        self.config = config = config or CPCHeadConfig()
        self.projection: Optional[nn.Module] = None
        if config.projection_dim is not None:
            self.projection = nn.Sequential(
                nn.Linear(latent_dim, latent_dim), nn.ReLU(), nn.Linear(latent_dim, config.projection_dim)
            )
            latent_dim = config.projection_dim
        self.context = GRUContext(latent_dim, config.context_dim, config.context_layers)
        rollout = None
        if config.action_conditioning:
            if n_actions is None and action_dim is None:
                raise ValueError("action_conditioning=True needs the action space: pass n_actions or action_dim")
            embedding = ActionEmbedding(n_actions, action_dim, config.action_embed_dim)
            rollout = ActionRollout(embedding, config.context_dim, config.steps_ahead)
        self.loss = InfoNCELoss(
            context_dim=config.context_dim,
            latent_dim=latent_dim,
            steps_ahead=config.steps_ahead,
            negatives=config.negatives,
            n_negatives=config.n_negatives,
            temperature=config.temperature,
            action_rollout=rollout,
        )

    def forward(
        self,
        latents: torch.Tensor,
        episode_starts: Optional[torch.Tensor] = None,
        valid: Optional[torch.Tensor] = None,
        actions: Optional[torch.Tensor] = None,
        groups: Optional[torch.Tensor] = None,
        hidden: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> CPCOutput:
        """
        :param latents: ``(B, T, D)``
        :param episode_starts: ``(B, T)`` bool; resets the context and masks predictions across episodes
        :param valid: ``(B, T)`` bool, False on padding
        :param actions: per-step actions, for CPC|Action
        :param groups: ``(B,)`` labels for the ``same_group*`` negative strategies
        :param hidden: GRU state carried in from an earlier call
        :param generator: torch generator for reproducible negatives
        """
        latents = self.project(latents)
        context, _ = self.context(latents, hidden, episode_starts)
        return self.loss(context, latents, episode_starts, valid, actions, groups, generator)

    def project(self, latents: torch.Tensor) -> torch.Tensor:
        """The latents the GRU and the loss see: ``latents`` itself, or its projection (``projection_dim``)."""
        return latents if self.projection is None else self.projection(latents)


class CPC(nn.Module):
    """Encoder plus :class:`CPCHead`, built from a :class:`~cpc_rl.config.CPCConfig`.

    :param config: the model
    :param n_actions: number of discrete actions, for CPC|Action
    :param action_dim: size of continuous actions, for CPC|Action
    """

    def __init__(self, config: CPCConfig, n_actions: Optional[int] = None, action_dim: Optional[int] = None):
        super().__init__()
        self.config = config
        self.encoder = build_encoder(config.encoder.name, **config.encoder.kwargs)
        self.head = CPCHead(self.encoder.out_dim, config.head, n_actions, action_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents ``z_t`` ``(B, T, D)``."""
        return self.encoder(x)

    def context(self, x: torch.Tensor, episode_starts: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Contexts ``c_t`` ``(B, T, H)``, the representation the paper probes for audio."""
        return self.head.context(self.head.project(self.encoder(x)), None, episode_starts)[0]

    def forward(
        self,
        x: torch.Tensor,
        episode_starts: Optional[torch.Tensor] = None,
        valid: Optional[torch.Tensor] = None,
        actions: Optional[torch.Tensor] = None,
        groups: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> CPCOutput:
        """The CPC loss of a batch of sequences ``x`` (see :class:`CPCHead` for the other arguments)."""
        return self.head(self.encoder(x), episode_starts, valid, actions, groups, generator=generator)
