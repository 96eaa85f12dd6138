"""Environments for cpc-rl: MiniWorld (headless through EGL) as vectorised stable-baselines3 envs."""

from envs import miniworld
from envs.miniworld import *  # noqa: F401,F403  (the public names are miniworld.__all__)

__all__ = list(miniworld.__all__)
