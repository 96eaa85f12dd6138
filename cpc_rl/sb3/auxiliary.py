"""The CPC auxiliary loss for stable-baselines3 on-policy algorithms (PPO, A2C, sb3-contrib's RecurrentPPO).

The pixel encoder is the policy's own features extractor (for a Dict observation, its image branch), so
CPC's gradient shapes the features the policy acts on. A :class:`~cpc_rl.model.CPCHead` (GRU context,
predictors ``W_k``) is registered as the submodule ``policy.cpc_head``: the policy optimizer trains it,
``model.save()`` stores it and ``load()`` restores it. Its sequences are the rollout itself, read per env in
time order from ``rollout_buffer.observations`` and ``episode_starts``.

Two ways to combine it with the RL loss, chosen by ``mode``:

- ``"separate"``: after the algorithm's own update, a CPC phase on the same rollout: ``epochs`` passes
  over the env sequences in chunks of ``batch_envs``, each one optimizer step on ``weight * L_cpc``.
- ``"joint"``: every optimizer step of the algorithm follows the gradient of ``L_rl + weight * L_cpc``.
  Where the update encodes the whole rollout in one batch (A2C), the CPC loss is computed on those very
  features, put back in (env, time) order, and joined to the graph, so the encoder runs once for both
  losses. Otherwise (PPO's shuffled minibatches) each optimizer step also takes the CPC gradient of a
  chunk of ``batch_envs`` env sequences, added by a step pre-hook on the policy optimizer (a public
  PyTorch API), and the summed gradient is clipped to ``max_grad_norm`` again.
- ``"auto"`` (default): joint for whole-rollout updates (A2C), separate otherwise (PPO, RecurrentPPO).
  docs/results.md has the measurements behind this choice.

Which optimizer takes the separate phase's steps, chosen by ``optimizer``:

- ``"shared"`` (default): the policy's own optimizer, the head being one more parameter group in it. With
  Adam, the CPC and RL gradients then share the running moments, so ``weight`` sets the size of the CPC
  steps only relative to the RL gradients, not in absolute terms.
- ``"own"``: an optimizer of the policy's class and kwargs over the encoder and the head, with its own
  moments and its own ``learning_rate`` (None: the algorithm's current one). The RL update's Adam state is
  left to the RL gradients, and the CPC learning rate sets the size of the CPC steps. Saved and loaded with
  the model as ``cpc_optimizer``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.preprocessing import preprocess_obs

from cpc_rl.config import CPCHeadConfig
from cpc_rl.losses import CPCOutput
from cpc_rl.model import CPCHead
from cpc_rl.sb3.spaces import image_observation_key

CPC_MODES = ("auto", "separate", "joint")
CPC_OPTIMIZERS = ("shared", "own")

# Separate mode's default chunk: about this many frames (whole env sequences) per CPC step. Dense negative
# scoring grows with the square of the chunk; measured on 2 CPU cores, a PPO rollout of 8 envs x 128 steps
# took 0.86 s per CPC phase in one chunk of 8 envs, 0.71 s in two chunks of 4 and 0.74 s in four of 2.
SEPARATE_CHUNK_FRAMES = 512


@dataclass
class CPCAuxiliaryConfig:
    """How the CPC head is attached to an SB3 agent; ``cpc_kwargs`` is a flat dict of these fields and
    those of :class:`~cpc_rl.config.CPCHeadConfig` (``steps_ahead``, ``negatives``, ...).

    :param weight: weight of the CPC loss against the RL loss
    :param mode: ``"separate"`` (a CPC phase after the RL update), ``"joint"`` (in every RL step) or
        ``"auto"`` (joint where the update takes the whole rollout at once, as A2C's does; else separate)
    :param epochs: separate mode: passes over the rollout per update
    :param batch_envs: env sequences per CPC step (None: separate mode takes chunks of about 512 frames,
        i.e. 4 envs of a 128-step rollout; joint mode takes the share of envs that matches the algorithm's
        minibatch share of the rollout)
    :param image_key: Dict observations: the image key to encode (None: the only image key)
    :param optimizer: separate mode: ``"shared"`` (the CPC steps go through the policy's optimizer) or
        ``"own"`` (an optimizer of the same class, with moments of its own, over the encoder and the head)
    :param learning_rate: ``optimizer="own"``: the CPC phase's learning rate (None: the algorithm's current one)
    """

    weight: float = 1.0
    mode: str = "auto"
    epochs: int = 1
    batch_envs: Optional[int] = None
    image_key: Optional[str] = None
    optimizer: str = "shared"
    learning_rate: Optional[float] = None

    def __post_init__(self) -> None:
        if self.mode not in CPC_MODES:
            raise ValueError(f"mode={self.mode!r} is not known; choose one of {', '.join(CPC_MODES)}")
        if not self.weight >= 0:
            raise ValueError(f"weight must be non-negative, got {self.weight!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")
        if self.batch_envs is not None and (not isinstance(self.batch_envs, int) or self.batch_envs < 1):
            raise ValueError(f"batch_envs must be a positive integer or None, got {self.batch_envs!r}")
        if self.optimizer not in CPC_OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r} is not known; choose one of {', '.join(CPC_OPTIMIZERS)}")
        if self.learning_rate is not None:
            if self.optimizer != "own":
                raise ValueError(
                    f"learning_rate={self.learning_rate!r} applies only to the CPC phase's own optimizer: "
                    "add optimizer='own', or leave learning_rate unset"
                )
            if isinstance(self.learning_rate, bool) or not self.learning_rate > 0:
                raise ValueError(f"learning_rate must be a positive number or None, got {self.learning_rate!r}")


def split_cpc_kwargs(cpc_kwargs: Optional[Dict[str, Any]]) -> Tuple[CPCAuxiliaryConfig, CPCHeadConfig]:
    """Split a flat ``cpc_kwargs`` dict into the auxiliary and head configs; unknown keys are an error."""
    cpc_kwargs = dict(cpc_kwargs or {})
    auxiliary_fields = {f.name for f in dataclasses.fields(CPCAuxiliaryConfig)}
    head_fields = {f.name for f in dataclasses.fields(CPCHeadConfig)}
    unknown = sorted(set(cpc_kwargs) - auxiliary_fields - head_fields)
    if unknown:
        raise ValueError(f"unknown cpc_kwargs {unknown}; known: {sorted(auxiliary_fields | head_fields)}")
    auxiliary = CPCAuxiliaryConfig(**{k: v for k, v in cpc_kwargs.items() if k in auxiliary_fields})
    head = CPCHeadConfig(**{k: v for k, v in cpc_kwargs.items() if k in head_fields})
    return auxiliary, head


class CPCAuxiliaryMixin:
    """Adds the CPC auxiliary loss to an SB3 on-policy algorithm; combine it with the algorithm class, e.g.
    ``class CPCPPO(CPCAuxiliaryMixin, PPO)``.

    :param cpc_kwargs: flat dict of :class:`CPCAuxiliaryConfig` and :class:`~cpc_rl.config.CPCHeadConfig`
        fields, e.g. ``dict(steps_ahead=12, weight=1.0, negatives="batch", action_conditioning=False)``
    """

    def __init__(self, *args, cpc_kwargs: Optional[Dict[str, Any]] = None, **kwargs):
        # Validate before SB3 builds anything; stored as a plain dict so model.save() keeps it as data.
        split_cpc_kwargs(cpc_kwargs)
        self.cpc_kwargs = dict(cpc_kwargs or {})
        super().__init__(*args, **kwargs)

    def _excluded_save_params(self) -> List[str]:
        # Only cpc_kwargs is saved: the configs, mode and buffers are rebuilt from it by _setup_model on load.
        runtime = [name for name in self.__dict__ if name.startswith("_cpc_")] + ["cpc_config", "cpc_mode", "cpc_optimizer"]
        return super()._excluded_save_params() + runtime

    def _get_torch_save_params(self) -> Tuple[List[str], List[str]]:
        state_dicts, tensors = super()._get_torch_save_params()
        if getattr(self, "cpc_optimizer", None) is not None:
            state_dicts = state_dicts + ["cpc_optimizer"]
        return state_dicts, tensors

    # --- set-up -------------------------------------------------------------------------------------

    def _setup_model(self) -> None:
        # Checked before the policy is built, so a non-image space gets this message, not a CNN's assertion.
        self.cpc_config, head_config = split_cpc_kwargs(self.cpc_kwargs)
        self._cpc_image_key = image_observation_key(self.observation_space, image_key=self.cpc_config.image_key)
        super()._setup_model()
        if head_config.steps_ahead >= self.n_steps:
            raise ValueError(
                f"steps_ahead={head_config.steps_ahead} must be shorter than n_steps={self.n_steps}, the rollout "
                "length that CPC reads its sequences from: raise n_steps or lower steps_ahead"
            )
        n_actions = int(self.action_space.n) if isinstance(self.action_space, spaces.Discrete) else None
        action_dim = None
        if n_actions is None and head_config.action_conditioning:
            if not isinstance(self.action_space, spaces.Box):
                raise ValueError(f"action_conditioning supports Discrete and Box action spaces, got {self.action_space}")
            action_dim = int(np.prod(self.action_space.shape))
        latent_dim = self._cpc_encoder().features_dim
        head = CPCHead(latent_dim, head_config, n_actions=n_actions, action_dim=action_dim).to(self.device)
        self.policy.add_module("cpc_head", head)
        self._cpc_rollout: Optional[Dict[str, Any]] = None
        self._cpc_outputs: List[CPCOutput] = []
        whole_rollout_updates = getattr(self, "batch_size", None) is None  # A2C
        mode = self.cpc_config.mode
        self.cpc_mode = ("joint" if whole_rollout_updates else "separate") if mode == "auto" else mode
        self.cpc_optimizer: Optional[torch.optim.Optimizer] = None
        if self.cpc_config.optimizer == "own":
            if self.cpc_mode != "separate":
                raise ValueError(
                    f"optimizer='own' needs the separate CPC phase, but the mode is {self.cpc_mode!r}"
                    f"{' (auto, for ' + type(self).__name__ + ')' if mode == 'auto' else ''}: add mode='separate'"
                )
            # The head belongs to this optimizer alone; the encoder to both (each with its own moments).
            params = list(self._cpc_encoder().parameters()) + list(head.parameters())
            self.cpc_optimizer = self.policy.optimizer_class(params, lr=self._cpc_learning_rate(), **self.policy.optimizer_kwargs)
        else:
            self.policy.optimizer.add_param_group({"params": list(head.parameters())})
        self._cpc_shared_forward = self.cpc_mode == "joint" and whole_rollout_updates
        self._cpc_capture = False
        if self._cpc_shared_forward:
            self._cpc_record_sample_order()
            self._cpc_encoder().register_forward_hook(self._cpc_forward_hook)

    def _cpc_encoder(self) -> torch.nn.Module:
        """The policy's pixel encoder: the (actor's) features extractor, or its image branch for Dict inputs."""
        extractor = self.policy.pi_features_extractor
        if self._cpc_image_key is None:
            return extractor
        branches = getattr(extractor, "extractors", None)
        if branches is None or self._cpc_image_key not in branches:
            raise ValueError(
                f"{type(extractor).__name__} has no per-key 'extractors'; CPC on Dict observations needs SB3's "
                "CombinedExtractor (the default of MultiInputPolicy) or one with the same layout"
            )
        return branches[self._cpc_image_key]

    # --- sequences from the rollout -----------------------------------------------------------------

    def _cpc_read_rollout(self) -> None:
        """Copy the rollout to tensors ``(n_envs, n_steps, ...)`` once per update."""
        buffer = self.rollout_buffer
        observations = buffer.observations
        if self._cpc_image_key is not None:
            observations = observations[self._cpc_image_key]
        to_tensor = lambda array: torch.as_tensor(np.swapaxes(array, 0, 1)).to(self.device)  # noqa: E731
        self._cpc_rollout = {
            "observations": to_tensor(observations),
            "episode_starts": to_tensor(buffer.episode_starts).bool(),
            "actions": to_tensor(buffer.actions),
        }

    def _cpc_latents(self, observations: torch.Tensor) -> torch.Tensor:
        """``(B, T, *obs)`` raw observations to the encoder's latents ``(B, T, D)``."""
        batch, steps = observations.shape[:2]
        space = self.observation_space if self._cpc_image_key is None else self.observation_space[self._cpc_image_key]
        frames = preprocess_obs(observations.reshape(batch * steps, *observations.shape[2:]), space, self.policy.normalize_images)
        return self._cpc_encoder()(frames).reshape(batch, steps, -1)

    def cpc_loss(self, env_indices: Optional[torch.Tensor] = None) -> CPCOutput:
        """The CPC loss on the current rollout's sequences of the given envs (all if None)."""
        if self._cpc_rollout is None:
            self._cpc_read_rollout()  # outside train(): the buffer is still in (n_steps, n_envs) order
        rollout = self._cpc_rollout
        if env_indices is not None:
            rollout = {key: value[env_indices] for key, value in rollout.items()}
        return self._cpc_head_loss(self._cpc_latents(rollout["observations"]), rollout)

    def _cpc_head_loss(self, latents: torch.Tensor, rollout: Dict[str, torch.Tensor]) -> CPCOutput:
        """The head's loss on latents ``(B, T, D)`` of the given rollout sequences."""
        actions = rollout["actions"] if self.policy.cpc_head.config.action_conditioning else None
        return self.policy.cpc_head(latents, episode_starts=rollout["episode_starts"], actions=actions)

    def _cpc_chunks(self, batch_envs: int) -> List[torch.Tensor]:
        order = torch.randperm(self.n_envs, device=self.device)
        return list(order.split(batch_envs))

    # --- joint, sharing the update's forward pass (whole-rollout updates) -----------------------------

    def _cpc_record_sample_order(self) -> None:
        """Remember which rollout entries each batch of ``rollout_buffer.get()`` holds: the buffer shuffles
        them, and the CPC loss needs them back in time order."""
        buffer = self.rollout_buffer
        get_samples = buffer._get_samples
        self._cpc_batch_indices: Optional[np.ndarray] = None

        def recording_get_samples(batch_inds, env=None):
            self._cpc_batch_indices = batch_inds
            return get_samples(batch_inds, env)

        buffer._get_samples = recording_get_samples

    def _cpc_forward_hook(self, module, inputs, output):
        """During the update, join ``weight * L_cpc`` on these very features to the graph."""
        rollout_size = self.n_steps * self.n_envs
        indices = self._cpc_batch_indices
        if not (self._cpc_capture and torch.is_grad_enabled() and indices is not None and len(indices) == rollout_size):
            return None
        # Flattened buffer entry i is env i // n_steps at step i % n_steps; row j of ``output`` is entry indices[j].
        inverse = torch.argsort(torch.as_tensor(indices, device=output.device))
        latents = output.index_select(0, inverse).reshape(self.n_envs, self.n_steps, -1)
        result = self._cpc_head_loss(latents, self._cpc_rollout)
        self._cpc_outputs.append(result._replace(loss=result.loss.detach()))
        return _JoinAuxiliaryLoss.apply(output, self.cpc_config.weight * result.loss)

    # --- training -----------------------------------------------------------------------------------

    def _cpc_backward(self, env_indices: torch.Tensor) -> None:
        with torch.enable_grad():
            output = self.cpc_loss(env_indices)
            (self.cpc_config.weight * output.loss).backward()
        self._cpc_outputs.append(output._replace(loss=output.loss.detach()))

    def _cpc_joint_pre_step(self, optimizer, args, kwargs) -> None:
        if not self._cpc_joint_chunks:
            self._cpc_joint_chunks = self._cpc_chunks(self._cpc_joint_batch_envs)
        self._cpc_backward(self._cpc_joint_chunks.pop())
        torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)

    def _cpc_joint_chunk_size(self) -> int:
        """Env sequences per joint step: the minibatch's share of the rollout, ``batch_size / n_steps`` envs.
        (Only minibatch algorithms get here: whole-rollout updates share their forward pass instead.)"""
        if self.cpc_config.batch_envs is not None:
            return min(self.cpc_config.batch_envs, self.n_envs)
        return min(self.n_envs, max(1, round(self.batch_size / self.n_steps)))

    def _cpc_learning_rate(self) -> float:
        """The own optimizer's learning rate: the configured one, else the algorithm's current one."""
        if self.cpc_config.learning_rate is not None:
            return float(self.cpc_config.learning_rate)
        return float(self.lr_schedule(self._current_progress_remaining))

    def _cpc_separate_phase(self) -> None:
        batch_envs = min(self.cpc_config.batch_envs or max(1, SEPARATE_CHUNK_FRAMES // self.n_steps), self.n_envs)
        self.policy.set_training_mode(True)
        optimizer = self.policy.optimizer if self.cpc_optimizer is None else self.cpc_optimizer
        if self.cpc_optimizer is not None:
            learning_rate = self._cpc_learning_rate()
            for group in self.cpc_optimizer.param_groups:
                group["lr"] = learning_rate
            self.logger.record("cpc/learning_rate", learning_rate)
        # Clip what this optimizer steps: with an own optimizer, the RL heads still hold the last RL gradients.
        params = [p for group in optimizer.param_groups for p in group["params"]]
        for _ in range(self.cpc_config.epochs):
            for env_indices in self._cpc_chunks(batch_envs):
                optimizer.zero_grad()
                self._cpc_backward(env_indices)
                torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
                optimizer.step()

    def train(self) -> None:
        # Read the rollout first: the algorithm's rollout_buffer.get() flattens its arrays in place.
        self._cpc_read_rollout()
        self._cpc_outputs = []
        if self._cpc_shared_forward:
            self._cpc_capture = True
            try:
                super().train()
            finally:
                self._cpc_capture = False
        elif self.cpc_mode == "joint":
            self._cpc_joint_batch_envs = self._cpc_joint_chunk_size()
            self._cpc_joint_chunks: List[torch.Tensor] = []
            handle = self.policy.optimizer.register_step_pre_hook(self._cpc_joint_pre_step)
            try:
                super().train()
            finally:
                handle.remove()
        else:
            super().train()
            self._cpc_separate_phase()
        self._cpc_log()
        self._cpc_rollout = None  # free the copied rollout until the next update

    def _cpc_log(self) -> None:
        if not self._cpc_outputs:
            return
        loss = torch.stack([o.loss for o in self._cpc_outputs]).mean()
        accuracy = torch.stack([o.accuracy_per_step for o in self._cpc_outputs]).nanmean(0)
        self.logger.record("cpc/loss", loss.item())
        self.logger.record("cpc/accuracy", accuracy.nanmean().item())
        for k, value in enumerate(accuracy.tolist(), start=1):
            self.logger.record(f"cpc/accuracy_k{k}", value)
        self.cpc_last_loss = loss.item()


class _JoinAuxiliaryLoss(torch.autograd.Function):
    """Passes ``features`` through unchanged and joins ``auxiliary_loss`` to the graph: when the RL loss is
    back-propagated through the features, the auxiliary loss gets gradient 1, so the step follows
    ``L_rl + auxiliary_loss`` and the encoder's backward runs once for both."""

    @staticmethod
    def forward(ctx, features, auxiliary_loss):
        return features.clone()

    @staticmethod
    def backward(ctx, grad_features):
        return grad_features, torch.ones((), dtype=grad_features.dtype, device=grad_features.device)
