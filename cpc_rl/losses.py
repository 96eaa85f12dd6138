"""InfoNCE with per-step prediction heads ``W_k``, as classification (positive in column 0).

For a context ``c_t`` and a target ``z_{t+k}`` the score is ``f_k = z_{t+k}^T W_k c_t`` (divided by a
temperature if one is set). Cross-entropy of the positive against N negatives is the InfoNCE loss; its
minimum over ``W_k`` and the encoder bounds ``I(x_{t+k}; c_t) >= log(N + 1) - L``.

All K steps are computed at once: predictions are aligned to their *target* position, so that every
target position shares one set of negatives across k and one batched product scores them.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import nn
from torch.nn import functional as F

from cpc_rl.context import ActionRollout
from cpc_rl.negatives import NegativeCount, candidate_mask, check_strategy, resolve_negative_count, sample_negatives, strategy_groups


# Sampled negatives are scored densely (against all B*T latents, then picked) while the dense scores,
# K * (B*T)^2 of them, stay under this many elements (128 MiB); beyond, the negatives are gathered.
# Measured forward+backward on 2 CPU cores, 128 negatives, D=512, K=12: B*T=256: 18 ms dense vs 80 ms
# gathered; B*T=1024: 295 ms vs 319 ms.
DENSE_SCORES_MAX_ELEMENTS = 32 * 2**20


class CPCOutput(NamedTuple):
    """The result of a CPC loss evaluation.

    ``loss`` keeps its graph; the per-step tensors are detached, for logging and plots.
    A step with no valid prediction in the batch has ``count`` 0 and NaN loss and accuracy.
    """

    loss: torch.Tensor  # scalar: mean over k of the per-step losses
    loss_per_step: torch.Tensor  # (K,)
    accuracy_per_step: torch.Tensor  # (K,) share of predictions whose positive scores above every negative
    count_per_step: torch.Tensor  # (K,) number of valid predictions


def prediction_mask(
    steps_ahead: int,
    valid: torch.Tensor,
    episode_starts: Optional[torch.Tensor],
) -> torch.Tensor:
    """Which predictions count, indexed by target position.

    Entry ``[k-1, b, t]`` is the prediction of ``z_{b,t}`` from ``c_{b,t-k}``: it counts only if ``t - k``
    lies in the sequence, both steps are real (not padding) and no episode starts in ``(t-k, t]``.

    :param steps_ahead: K
    :param valid: ``(B, T)`` bool, False on padding
    :param episode_starts: ``(B, T)`` bool, True where a new episode begins (None: one episode per row)
    :return: ``(K, B, T)`` bool
    """
    batch, steps = valid.shape
    ks = torch.arange(1, steps_ahead + 1, device=valid.device)[:, None]  # (K, 1)
    source = torch.arange(steps, device=valid.device)[None, :] - ks  # (K, T)
    in_range = source >= 0
    source = source.clamp_min(0)
    mask = in_range[:, None, :] & valid[None] & valid[:, source].permute(1, 0, 2)
    if episode_starts is not None:
        episode = torch.cumsum(episode_starts.to(device=valid.device, dtype=torch.long), dim=1)  # (B, T)
        mask &= episode[None] == episode[:, source].permute(1, 0, 2)
    return mask


class InfoNCELoss(nn.Module):
    """The CPC objective: K linear predictors and the InfoNCE loss against sampled (or all) negatives.

    :param context_dim: size of ``c_t``
    :param latent_dim: size of ``z_t``
    :param steps_ahead: K, predict ``z_{t+1} .. z_{t+K}``
    :param negatives: negative-sampling strategy, see :mod:`cpc_rl.negatives`
    :param n_negatives: negatives per positive, or ``"all"`` to score against every candidate
    :param temperature: divide scores by this (None: no scaling, as in the paper)
    :param action_rollout: CPC|Action; if given, ``W_k`` reads the roll-out state after k actions
        instead of ``c_t``
    """

    def __init__(
        self,
        context_dim: int,
        latent_dim: int,
        steps_ahead: int,
        negatives: str = "batch",
        n_negatives: NegativeCount = 128,
        temperature: Optional[float] = None,
        action_rollout: Optional[ActionRollout] = None,
    ):
        super().__init__()
        if not isinstance(steps_ahead, int) or steps_ahead < 1:
            raise ValueError(f"steps_ahead must be a positive integer, got {steps_ahead!r}")
        check_strategy(negatives)
        resolve_negative_count(n_negatives)
        if temperature is not None and temperature <= 0:
            raise ValueError(f"temperature must be positive or None, got {temperature!r}")
        self.steps_ahead = steps_ahead
        self.negatives = negatives
        self.n_negatives = n_negatives
        self.temperature = temperature
        self.action_rollout = action_rollout
        # W_k for every k in one tensor (K, D, H), initialised like nn.Linear.
        self.predictors = nn.Parameter(torch.empty(steps_ahead, latent_dim, context_dim))
        bound = 1.0 / math.sqrt(context_dim)
        nn.init.uniform_(self.predictors, -bound, bound)

    def predict(self, context: torch.Tensor, actions: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Predictions ``W_k c_t`` for every k and t: ``(K, B, T, D)``, entry ``[k-1, b, t]`` targets ``z_{t+k}``."""
        if self.action_rollout is None:
            # One GEMM (B*T, H) x (H, K*D); as fast as it gets on CPU, where the einsum ran as a batched matmul.
            steps_ahead, latent_dim, context_dim = self.predictors.shape
            flat = F.linear(context, self.predictors.reshape(steps_ahead * latent_dim, context_dim))
            return flat.reshape(*context.shape[:2], steps_ahead, latent_dim).permute(2, 0, 1, 3)
        if actions is None:
            raise ValueError("this loss was built with action conditioning: pass the actions taken")
        rolled = self.action_rollout(context, actions)  # (B, T, K, H)
        return torch.einsum("btkh,kdh->kbtd", rolled, self.predictors)

    def forward(
        self,
        context: torch.Tensor,
        latents: torch.Tensor,
        episode_starts: Optional[torch.Tensor] = None,
        valid: Optional[torch.Tensor] = None,
        actions: Optional[torch.Tensor] = None,
        groups: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> CPCOutput:
        """
        :param context: ``c_t`` ``(B, T, H)``
        :param latents: ``z_t`` ``(B, T, D)``
        :param episode_starts: ``(B, T)`` bool; no prediction crosses an episode start
        :param valid: ``(B, T)`` bool, False on padding steps (neither targets, sources nor negatives)
        :param actions: actions per step, for CPC|Action
        :param groups: ``(B,)`` group label per sequence, for the ``same_group*`` strategies
        :param generator: torch generator for reproducible negative sampling
        """
        if context.dim() != 3:
            raise ValueError(f"context must have rank 3 (B, T, H), got shape {tuple(context.shape)}")
        if latents.dim() != 3:
            raise ValueError(f"latents must have rank 3 (B, T, D), got shape {tuple(latents.shape)}")
        batch, steps, _ = latents.shape
        if context.shape[:2] != (batch, steps):
            raise ValueError(f"context {tuple(context.shape)} and latents {tuple(latents.shape)} differ in (B, T)")
        if self.steps_ahead >= steps:
            raise ValueError(
                f"steps_ahead={self.steps_ahead} must be shorter than the sequence length T={steps}: "
                "use longer sequences (e.g. a larger n_steps) or a smaller steps_ahead"
            )
        if valid is None:
            valid = torch.ones(batch, steps, dtype=torch.bool, device=latents.device)
        mask = prediction_mask(self.steps_ahead, valid.bool(), episode_starts)  # (K, B, T)

        predictions = self.predict(context, actions)  # (K, B, T, D), indexed by source position
        predictions = _align_to_targets(predictions)  # (K, B, T, D), indexed by target position
        positive = (predictions * latents[None]).sum(-1)  # (K, B, T)

        count = resolve_negative_count(self.n_negatives)
        flat = latents.reshape(batch * steps, -1)
        if count is None:
            negative, negative_valid = self._score_all(predictions, flat, valid, groups)
        else:
            sampled = sample_negatives(self.negatives, count, valid, groups, generator)
            if self.steps_ahead * (batch * steps) ** 2 <= DENSE_SCORES_MAX_ELEMENTS:
                # RL-sized batches: one GEMM against every latent, then pick the sampled columns; its backward
                # is a GEMM too, where gathering N latent vectors per target scatter-adds them back.
                index = sampled.index[None].expand(self.steps_ahead, -1, -1, -1)
                negative = torch.gather(predictions @ flat.T, 3, index)  # (K, B, T, N)
            else:  # embedding's backward accumulates faster than indexing's
                negative = torch.einsum("kbtd,btnd->kbtn", predictions, F.embedding(sampled.index, flat))
            negative_valid = sampled.valid[None].expand_as(negative)
        mask = mask & negative_valid.any(-1)

        logits = torch.cat([positive[..., None], negative.masked_fill(~negative_valid, float("-inf"))], dim=-1)
        if self.temperature is not None:
            logits = logits / self.temperature
        # Cross-entropy with the positive at index 0.
        per_prediction = -torch.log_softmax(logits, dim=-1)[..., 0]  # (K, B, T)
        correct = (logits[..., 0] > logits[..., 1:].max(-1).values).float()
        return _reduce(per_prediction, correct, mask)

    def _score_all(self, predictions, flat, valid, groups):
        """Dense scores against every allowed candidate: ``(K, B, T, B*T)`` and its validity mask."""
        batch, steps = valid.shape
        labels, exclude_own = strategy_groups(self.negatives, batch, groups, flat.device)
        allowed = candidate_mask(labels, exclude_own, steps) & valid.reshape(1, -1)  # (B, B*T)
        allowed = allowed[:, None, :].expand(batch, steps, batch * steps).clone()  # (B, T, B*T)
        own = torch.arange(batch * steps, device=flat.device).reshape(batch, steps)
        allowed.scatter_(2, own[..., None], False)  # the positive is never a negative
        scores = predictions @ flat.T  # (K, B, T, B*T)
        return scores, allowed[None].expand_as(scores)


def _align_to_targets(predictions: torch.Tensor) -> torch.Tensor:
    """Shift ``[k-1, b, t]`` (made at t) to ``[k-1, b, t+k]`` (aimed at t+k); vacated slots are masked later.

    A zero-padded shift per k: unlike an advanced-indexing gather, its backward is a plain slice copy.
    """
    steps = predictions.shape[2]
    return torch.stack(
        [F.pad(predictions[k - 1, :, : steps - k], (0, 0, k, 0)) for k in range(1, predictions.shape[0] + 1)]
    )


def _reduce(per_prediction: torch.Tensor, correct: torch.Tensor, mask: torch.Tensor) -> CPCOutput:
    weights = mask.float()
    count = weights.sum(dim=(1, 2))  # (K,)
    per_prediction = per_prediction.masked_fill(~mask, 0.0)
    loss_per_step = per_prediction.sum(dim=(1, 2)) / count.clamp_min(1.0)
    accuracy_per_step = (correct * weights).sum(dim=(1, 2)) / count.clamp_min(1.0)
    present = count > 0
    if bool(present.any()):
        loss = loss_per_step[present].mean()
    else:  # nothing to predict in this batch: a zero that keeps the graph
        loss = per_prediction.sum() * 0.0
    nan = torch.full_like(loss_per_step, float("nan"))
    return CPCOutput(
        loss=loss,
        loss_per_step=torch.where(present, loss_per_step, nan).detach(),
        accuracy_per_step=torch.where(present, accuracy_per_step, nan).detach(),
        count_per_step=count.detach(),
    )
