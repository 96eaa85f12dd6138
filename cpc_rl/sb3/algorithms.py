"""SB3 algorithms with the CPC auxiliary loss: drop-in replacements that take ``cpc_kwargs``.

    from cpc_rl.sb3 import CPCPPO
    model = CPCPPO("CnnPolicy", env, n_steps=128, cpc_kwargs=dict(steps_ahead=12, weight=1.0))
    model.learn(100_000)
    model.save("agent.zip"); model = CPCPPO.load("agent.zip", env=env)
"""

from __future__ import annotations

from sb3_contrib import RecurrentPPO
from stable_baselines3 import A2C, PPO

from cpc_rl.sb3.auxiliary import CPCAuxiliaryMixin


class CPCPPO(CPCAuxiliaryMixin, PPO):
    """PPO with the CPC auxiliary loss; every PPO argument plus ``cpc_kwargs``."""


class CPCA2C(CPCAuxiliaryMixin, A2C):
    """A2C with the CPC auxiliary loss; every A2C argument plus ``cpc_kwargs``.

    A2C's default ``n_steps=5`` is too short for CPC (``steps_ahead`` must be shorter than ``n_steps``);
    the agent script uses ``n_steps=32`` with ``steps_ahead=8``.
    """


class CPCRecurrentPPO(CPCAuxiliaryMixin, RecurrentPPO):
    """sb3-contrib's RecurrentPPO with the CPC auxiliary loss; every RecurrentPPO argument plus ``cpc_kwargs``.

    CPC encodes with the features extractor in front of the policy's LSTM; its own GRU is separate.
    """
