"""stable-baselines3 integration: the only place in ``cpc_rl`` that imports SB3."""

from cpc_rl.sb3.algorithms import CPCA2C, CPCPPO, CPCRecurrentPPO
from cpc_rl.sb3.auxiliary import CPC_MODES, CPCAuxiliaryConfig, CPCAuxiliaryMixin, split_cpc_kwargs
from cpc_rl.sb3.spaces import check_image_observation_space, image_observation_key

__all__ = [
    "CPCA2C",
    "CPCPPO",
    "CPCRecurrentPPO",
    "CPC_MODES",
    "CPCAuxiliaryConfig",
    "CPCAuxiliaryMixin",
    "check_image_observation_space",
    "image_observation_key",
    "split_cpc_kwargs",
]
