#!/usr/bin/env bash
# The README's main job: set up (or reuse) .venv, then a short headless PPO+CPC training on MiniWorld with a
# progress bar and a TensorBoard log under runs/. Extra arguments go to agents.ppo_cpc (e.g. --total-timesteps).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
cd "$root"
exec "$CPC_RL_PYTHON" -m agents.ppo_cpc --env MiniWorld-OneRoom-v0 --total-timesteps 20000 --n-envs 8 --log-dir runs "$@"
