"""Environments for cpc-rl: MiniWorld (headless through EGL) as vectorised stable-baselines3 envs."""

from envs.miniworld import (
    DISPLAY_ENV_VAR,
    EGL_INSTALL_HINT,
    EpisodeSuccess,
    check_env_id,
    check_image_observation_space,
    image_observation_key,
    import_miniworld,
    make_env,
    make_vec_env,
    miniworld_env_ids,
)

__all__ = [
    "DISPLAY_ENV_VAR",
    "EGL_INSTALL_HINT",
    "EpisodeSuccess",
    "check_env_id",
    "check_image_observation_space",
    "image_observation_key",
    "import_miniworld",
    "make_env",
    "make_vec_env",
    "miniworld_env_ids",
]
