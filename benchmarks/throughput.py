"""Training throughput (env steps/s) of PPO and A2C with and without CPC, measured alternately in one run.

    python benchmarks/throughput.py                                  # MiniWorld-OneRoom-v0, 8 envs, CPU
    python benchmarks/throughput.py --algo ppo --rounds 5 --cpc-mode joint

Both agents of an algorithm use the agent scripts' defaults (agents/train.py) and their own copy of the
same vectorised env. After one warm-up update each, they take turns learning ``--updates`` updates per
round, so both see the same machine state; steps/s is total steps over total time. The raw env step rate
(random actions, no learning) is printed as the ceiling. Target: the CPC agent keeps at least 85% of the
vanilla agent's steps/s (ratio >= 0.85).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from agents.train import ALGO_DEFAULTS, Args, algorithm_class, policy_name, resolve
from envs import make_vec_env


def raw_env_rate(env_id: str, n_envs: int, steps: int, seed: int) -> float:
    venv = make_vec_env(env_id, n_envs=n_envs, seed=seed, vec_env="dummy")
    venv.reset()
    actions = np.zeros(n_envs, dtype=np.int64)
    start = time.perf_counter()
    for _ in range(steps // n_envs):
        actions[:] = [venv.action_space.sample() for _ in range(n_envs)]
        venv.step(actions)
    rate = (steps // n_envs) * n_envs / (time.perf_counter() - start)
    venv.close()
    return rate


def build(algo: str, cpc: bool, args: argparse.Namespace):
    agent_args = Args(env=args.env, n_envs=args.n_envs, seed=args.seed, no_cpc=not cpc, cpc_mode=args.cpc_mode)
    config = resolve(agent_args, algo)
    venv = make_vec_env(args.env, n_envs=args.n_envs, seed=args.seed, vec_env="dummy")
    extra = {"cpc_kwargs": config["cpc_kwargs"]} if cpc else {}
    model = algorithm_class(algo, cpc)(policy_name(algo, venv.observation_space), venv, seed=args.seed, device="cpu", **config["algo_kwargs"], **extra)
    return model, venv


def measure(algo: str, args: argparse.Namespace):
    models = {cpc: build(algo, cpc, args) for cpc in (False, True)}
    per_update = ALGO_DEFAULTS[algo]["n_steps"] * args.n_envs
    for model, _ in models.values():  # warm-up: the first update pays one-off costs
        model.learn(per_update, reset_num_timesteps=False)
    steps = {False: 0, True: 0}
    seconds = {False: 0.0, True: 0.0}
    for _ in range(args.rounds):
        for cpc, (model, _) in models.items():
            before = model.num_timesteps
            start = time.perf_counter()
            model.learn(args.updates * per_update, reset_num_timesteps=False)
            seconds[cpc] += time.perf_counter() - start
            steps[cpc] += model.num_timesteps - before
    for _, venv in models.values():
        venv.close()
    return {cpc: steps[cpc] / seconds[cpc] for cpc in steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MiniWorld-OneRoom-v0")
    parser.add_argument("--algo", choices=("ppo", "a2c", "both"), default="both")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two agents")
    parser.add_argument("--updates", type=int, default=2, help="updates per agent per round")
    parser.add_argument("--cpc-mode", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    algos = ("ppo", "a2c") if args.algo == "both" else (args.algo,)
    print(f"{args.env}, {args.n_envs} envs (in-process), torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"CPC mode {args.cpc_mode}, {args.rounds} rounds x {args.updates} updates per agent")
    raw = raw_env_rate(args.env, args.n_envs, 4000, args.seed)
    print(f"raw env steps/s (random actions, no learning): {raw:.0f}")
    for algo in algos:
        rates = measure(algo, args)
        print(f"{algo}: vanilla {rates[False]:.0f} steps/s, with CPC {rates[True]:.0f} steps/s, "
              f"ratio {rates[True] / rates[False]:.3f} (target >= 0.85)")


if __name__ == "__main__":
    main()
