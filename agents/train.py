"""Train an SB3 agent with (or without) the CPC auxiliary loss on a MiniWorld task: the code behind
``agents.ppo_cpc``, ``agents.a2c_cpc`` and ``agents.recurrent_ppo_cpc``.

Each run writes ``<log-dir>/<run-name>/``:

- ``config.json``: every setting of the run (and what the report builder needs: env_id, algo, cpc, seed,
  total_timesteps)
- ``tb/``: TensorBoard events (SB3's ``rollout/``, ``train/``, ``time/`` tags; ``cpc/loss``,
  ``cpc/accuracy``, ``cpc/accuracy_k{k}`` with CPC) and the hyperparameters as a text table
- ``episodes.csv``: every finished training episode (step, return, length, success)
- ``checkpoints/step_<n>.zip``: periodic checkpoints; Ctrl-C (or SIGTERM) saves one before exiting
- ``model.zip``: the final model; ``status.json``: running / completed / interrupted / failed

``--resume RUN_DIR`` (or a checkpoint zip) continues from the newest checkpoint with its step count,
optimizer state and CPC head; the episode log is cut back to that step so nothing is counted twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import signal
import sys
import traceback
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

ALGOS = ("ppo", "a2c", "recurrent_ppo")
INTERRUPTED = 130  # exit status after Ctrl-C or SIGTERM, once the checkpoint is saved
DEFAULT_TOTAL_TIMESTEPS = 100_000

# Per-algorithm defaults for MiniWorld (3 actions, 60x80 frames). A2C's SB3 default of 5 steps per rollout
# is far shorter than a useful CPC horizon: 32 steps with 8 ahead leaves 24 predictions per sequence at k=8.
# A2C's CPC weight is 0.1: in its joint update a weight of 1 cost 16 points of success on OneRoom at 60k
# steps, 0.1 did not (docs/results.md).
ALGO_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "ppo": dict(n_steps=128, batch_size=256, n_epochs=10, learning_rate=3e-4, cpc_steps_ahead=12, cpc_weight=1.0),
    "a2c": dict(n_steps=32, batch_size=None, n_epochs=None, learning_rate=7e-4, cpc_steps_ahead=8, cpc_weight=0.1),
    "recurrent_ppo": dict(n_steps=128, batch_size=256, n_epochs=10, learning_rate=3e-4, cpc_steps_ahead=12, cpc_weight=1.0),
}


def _flag(help_text: str, **kwargs):
    return field(metadata={"help": help_text}, **kwargs)


@dataclass
class Args:
    """Command-line arguments; each field is a ``--flag`` (underscores become dashes)."""

    env: str = _flag("gymnasium id of the task, e.g. MiniWorld-FourRooms-v0", default="MiniWorld-OneRoom-v0")
    total_timesteps: Optional[int] = _flag(
        f"env steps to train for, in total, counting a resumed run's earlier steps (default {DEFAULT_TOTAL_TIMESTEPS}; "
        "a resumed run keeps its own unless given)", default=None)
    n_envs: int = _flag("parallel environments", default=8)
    seed: int = _flag("random seed (env i gets seed + i)", default=0)
    log_dir: str = _flag("folder that holds one sub-folder per run", default="runs")
    run_name: Optional[str] = _flag("run folder name (default: <env>__<algo>[_cpc]__seed<seed>)", default=None)
    device: str = _flag("torch device: auto, cpu, cuda", default="auto")
    no_cpc: bool = _flag("train the same agent without the CPC auxiliary loss", default=False)
    resume: Optional[str] = _flag("continue a run: its folder or a checkpoint zip", default=None)
    checkpoint_every: int = _flag("env steps between checkpoints", default=25_000)
    vec_env: str = _flag("auto, dummy or subproc", default="auto")
    n_steps: Optional[int] = _flag("rollout length per env (algorithm default if unset)", default=None)
    batch_size: Optional[int] = _flag("PPO minibatch size (algorithm default if unset)", default=None)
    n_epochs: Optional[int] = _flag("PPO epochs per rollout (algorithm default if unset)", default=None)
    learning_rate: Optional[float] = _flag("learning rate (algorithm default if unset)", default=None)
    ent_coef: float = _flag("entropy bonus coefficient", default=0.0)
    features_dim: Optional[int] = _flag("size of the pixel encoder's output z_t (NatureCNN's last layer; SB3's 512 if unset)", default=None)
    cpc_weight: Optional[float] = _flag("weight of the CPC loss (algorithm default if unset: 1 for PPO, 0.1 for A2C)", default=None)
    cpc_steps_ahead: Optional[int] = _flag("K, steps predicted ahead (algorithm default if unset)", default=None)
    cpc_mode: str = _flag("auto (joint for A2C, separate for PPO), separate (a CPC phase after each update) or joint (in every update step)", default="auto")
    cpc_epochs: int = _flag("separate mode: CPC passes over each rollout", default=1)
    cpc_optimizer: str = _flag("separate mode: shared (the CPC steps go through the policy's Adam) or own (an Adam of its own over encoder and head)", default="shared")
    cpc_learning_rate: Optional[float] = _flag("--cpc-optimizer own: the CPC phase's learning rate (the agent's if unset)", default=None)
    cpc_negatives: str = _flag("negative strategy: batch, batch_excluding_own, same_sequence", default="batch")
    cpc_n_negatives: str = _flag("negatives per positive, or 'all'", default="128")
    cpc_context_dim: int = _flag("size of the CPC GRU context", default=256)
    cpc_temperature: Optional[float] = _flag("score temperature (unset: none)", default=None)
    cpc_action_conditioning: bool = _flag("CPC|Action: predict the future given the actions taken", default=False)
    cpc_projection_dim: Optional[int] = _flag(
        "CPC on an MLP projection of z_t of this size, not on z_t itself (unset: on z_t)", default=None)
    variant: str = _flag("free label of this configuration, for ablations in the comparison report", default="")
    torch_threads: int = _flag("torch CPU threads (0: torch's default; compare sets cores / parallel runs)", default=0)
    progress: bool = _flag("show a progress bar", default=True)
    verbose: int = _flag("SB3 verbosity (1 prints the training tables)", default=0)


def build_parser(algo: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m agents.{algo}_cpc",
        description=f"Train {algo.upper()} with the CPC auxiliary loss (or without: --no-cpc) on MiniWorld, headless.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for f in dataclasses.fields(Args):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            # A switch that is off by default is a plain flag; BooleanOptionalAction would read "--no-cpc" as
            # the negative form of "--cpc" and store False.
            action = argparse.BooleanOptionalAction if f.default else "store_true"
            parser.add_argument(flag, action=action, default=f.default, help=f.metadata["help"])
            continue
        kind = {"int": int, "float": float, "Optional[int]": int, "Optional[float]": float}.get(str(f.type), str)
        parser.add_argument(flag, type=kind, default=f.default, help=f.metadata["help"])
    return parser


def parse_args(algo: str, argv=None) -> Args:
    namespace = build_parser(algo).parse_args(argv)
    return Args(**vars(namespace))


def resolve(args: Args, algo: str) -> Dict[str, Any]:
    """The run's full configuration: defaults of the algorithm filled in, CPC settings gathered."""
    if algo not in ALGOS:
        raise ValueError(f"algo={algo!r} is not known; choose one of {ALGOS}")
    defaults = ALGO_DEFAULTS[algo]
    pick = lambda name: getattr(args, name) if getattr(args, name) is not None else defaults[name]  # noqa: E731
    algo_kwargs: Dict[str, Any] = dict(n_steps=pick("n_steps"), learning_rate=pick("learning_rate"), ent_coef=args.ent_coef)
    if algo != "a2c":
        algo_kwargs.update(batch_size=pick("batch_size"), n_epochs=pick("n_epochs"))
    n_negatives: Any = args.cpc_n_negatives
    if n_negatives != "all":
        try:
            n_negatives = int(n_negatives)
        except ValueError:
            raise ValueError(f"--cpc-n-negatives must be a positive integer or 'all', got {n_negatives!r}") from None
    if args.features_dim is not None and args.features_dim < 1:
        raise ValueError(f"--features-dim must be a positive integer, got {args.features_dim}")
    if args.cpc_projection_dim is not None and args.cpc_projection_dim < 1:
        raise ValueError(f"--cpc-projection-dim must be a positive integer, got {args.cpc_projection_dim}")
    if args.cpc_optimizer not in ("shared", "own"):
        raise ValueError(f"--cpc-optimizer must be shared or own, got {args.cpc_optimizer!r}")
    if args.cpc_learning_rate is not None and args.cpc_optimizer != "own":
        raise ValueError("--cpc-learning-rate sets the CPC phase's own optimizer: add --cpc-optimizer own")
    if args.cpc_optimizer == "own" and (args.cpc_mode == "joint" or (args.cpc_mode == "auto" and algo == "a2c")):
        raise ValueError(f"--cpc-optimizer own needs the separate CPC phase, and {algo}'s mode here is joint: "
                         "add --cpc-mode separate")
    cpc_kwargs = None
    if not args.no_cpc:
        cpc_kwargs = dict(
            weight=pick("cpc_weight"), mode=args.cpc_mode, epochs=args.cpc_epochs, steps_ahead=pick("cpc_steps_ahead"),
            negatives=args.cpc_negatives, n_negatives=n_negatives, context_dim=args.cpc_context_dim,
            temperature=args.cpc_temperature, action_conditioning=args.cpc_action_conditioning,
            optimizer=args.cpc_optimizer, learning_rate=args.cpc_learning_rate, projection_dim=args.cpc_projection_dim,
        )
    variant = f"__{args.variant}" if args.variant else ""
    run_name = args.run_name or f"{args.env}__{algo}{'' if args.no_cpc else '_cpc'}{variant}__seed{args.seed}"
    return dict(
        env_id=args.env, algo=algo, cpc=not args.no_cpc, seed=args.seed, variant=args.variant,
        total_timesteps=args.total_timesteps if args.total_timesteps is not None else DEFAULT_TOTAL_TIMESTEPS,
        n_envs=args.n_envs, vec_env=args.vec_env, checkpoint_every=args.checkpoint_every, run_name=run_name,
        algo_kwargs=algo_kwargs, cpc_kwargs=cpc_kwargs, features_dim=args.features_dim,
    )


def algorithm_class(algo: str, cpc: bool):
    from sb3_contrib import RecurrentPPO
    from stable_baselines3 import A2C, PPO

    from cpc_rl.sb3 import CPCA2C, CPCPPO, CPCRecurrentPPO

    classes = {"ppo": (PPO, CPCPPO), "a2c": (A2C, CPCA2C), "recurrent_ppo": (RecurrentPPO, CPCRecurrentPPO)}
    return classes[algo][1 if cpc else 0]


def policy_name(algo: str, observation_space) -> str:
    from gymnasium import spaces

    dict_obs = isinstance(observation_space, spaces.Dict)
    if algo == "recurrent_ppo":
        return "MultiInputLstmPolicy" if dict_obs else "CnnLstmPolicy"
    return "MultiInputPolicy" if dict_obs else "CnnPolicy"


def write_json(path: Path, data: Dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def write_status(run_dir: Path, status: str, num_timesteps: int, error: Optional[str] = None) -> None:
    write_json(run_dir / "status.json", {"status": status, "num_timesteps": int(num_timesteps), "error": error})


def find_resume_checkpoint(resume: str) -> Tuple[Path, Path]:
    """``(run_dir, checkpoint)`` for ``--resume``: a run folder (its newest checkpoint) or a checkpoint zip."""
    from cpc_rl.sb3.callbacks import list_checkpoints

    path = Path(resume)
    if path.is_file():
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return run_dir, path
    if not path.is_dir():
        raise ValueError(f"--resume {resume}: no such run folder or checkpoint file")
    checkpoints = list_checkpoints(path / "checkpoints")
    if not checkpoints:
        raise ValueError(f"--resume {resume}: the run folder has no checkpoints/step_*.zip to resume from")
    return path, checkpoints[-1]


def load_checkpoint(algorithm, checkpoint: Path, env, device: str):
    """Load an SB3 zip the user asked for; a broken file gets a clear error instead of a deep traceback."""
    try:
        return algorithm.load(checkpoint, env=env, device=device)
    except (zipfile.BadZipFile, EOFError, KeyError, RuntimeError, ValueError) as error:
        raise ValueError(
            f"checkpoint {checkpoint} is corrupt or not a {algorithm.__name__} checkpoint ({type(error).__name__}: "
            f"{error}); resume from an earlier one in its checkpoints/ folder"
        ) from error


def hyperparameter_table(config: Dict[str, Any]) -> str:
    rows = ["|setting|value|", "|-|-|"]
    flat = {k: v for k, v in config.items() if not isinstance(v, dict)}
    for group in ("algo_kwargs", "cpc_kwargs"):
        flat.update({f"{group}.{k}": v for k, v in (config.get(group) or {}).items()})
    rows += [f"|{k}|{v}|" for k, v in sorted(flat.items())]
    return "\n".join(rows)


def raise_keyboard_interrupt(signum, frame):
    """Signal handler: SIGTERM stops training the way Ctrl-C does (a checkpoint is saved first)."""
    raise KeyboardInterrupt(f"signal {signum}")


def train(algo: str, args: Args) -> Path:
    """Run (or resume) one training run; returns its folder."""
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.logger import configure

    from cpc_rl.sb3.callbacks import EpisodeLogger, PeriodicCheckpoint, ProgressBar, checkpoint_path, save_atomically
    from envs import check_env_id, check_image_observation_space, make_vec_env

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    checkpoint = None
    if args.resume:
        run_dir, checkpoint = find_resume_checkpoint(args.resume)
        if not (run_dir / "config.json").is_file():
            raise ValueError(f"--resume: {run_dir} has no config.json; is it a run folder written by agents/?")
        config = json.loads((run_dir / "config.json").read_text())
        if args.total_timesteps is not None:
            config["total_timesteps"] = args.total_timesteps
            write_json(run_dir / "config.json", config)
    else:
        config = resolve(args, algo)
        check_env_id(config["env_id"])
        run_dir = Path(args.log_dir) / config["run_name"]
        if (run_dir / "config.json").exists():
            raise ValueError(f"{run_dir} already holds a run: continue it with --resume {run_dir}, or pick another --run-name")
        run_dir.mkdir(parents=True, exist_ok=True)
        config["versions"] = _versions()
        write_json(run_dir / "config.json", config)

    venv = make_vec_env(config["env_id"], n_envs=config["n_envs"], seed=config["seed"], vec_env=config["vec_env"])
    try:
        check_image_observation_space(venv.observation_space, config["env_id"])
        model = _load_or_build(config, checkpoint, venv, run_dir, args)
    except Exception as error:
        venv.close()
        if checkpoint is None:  # a new run that could not start; a failed resume leaves the run as it was
            write_status(run_dir, "failed", 0, f"{type(error).__name__}: {error}")
        raise
    model.set_logger(configure(str(run_dir / "tb"), ["tensorboard"] + (["stdout"] if args.verbose else [])))

    on_save = lambda path: write_status(run_dir, "running", model.num_timesteps)  # noqa: E731
    callbacks = [
        EpisodeLogger(run_dir / "episodes.csv"),
        PeriodicCheckpoint(run_dir / "checkpoints", config["checkpoint_every"], on_save=on_save),
    ]
    if args.progress:
        callbacks.append(ProgressBar(config["total_timesteps"]))
    # log_interval=1: TensorBoard gets every update (SB3's A2C default of 100 updates is 25,600 steps here).
    remaining = config["total_timesteps"] - model.num_timesteps
    write_status(run_dir, "running", model.num_timesteps)
    previous_sigterm = signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    try:
        if remaining > 0:
            model.learn(remaining, callback=CallbackList(callbacks), reset_num_timesteps=False, log_interval=1)
    except KeyboardInterrupt:
        path = save_atomically(model, checkpoint_path(run_dir / "checkpoints", model.num_timesteps))
        write_status(run_dir, "interrupted", model.num_timesteps)
        print(f"\ninterrupted at step {model.num_timesteps}: saved {path}; continue with --resume {run_dir}", file=sys.stderr)
        raise
    except Exception as error:
        write_status(run_dir, "failed", model.num_timesteps, f"{type(error).__name__}: {error}")
        traceback.print_exc()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        venv.close()
    save_atomically(model, run_dir / "model.zip")
    write_status(run_dir, "completed", model.num_timesteps)
    print(f"done: {model.num_timesteps} steps; run folder {run_dir} (tensorboard --logdir {run_dir / 'tb'})", file=sys.stderr)
    return run_dir


def _load_or_build(config: Dict[str, Any], checkpoint: Optional[Path], venv, run_dir: Path, args: Args):
    """The model of a run: loaded from its checkpoint when resuming, else built from the configuration."""
    from torch.utils.tensorboard import SummaryWriter

    from cpc_rl.sb3.callbacks import truncate_episode_log

    algorithm = algorithm_class(config["algo"], config["cpc"])
    if checkpoint is not None:
        model = load_checkpoint(algorithm, checkpoint, venv, args.device)
        dropped = truncate_episode_log(run_dir / "episodes.csv", model.num_timesteps)
        print(f"resuming {run_dir} from {checkpoint.name} at step {model.num_timesteps} "
              f"({dropped} later episodes dropped from the log)", file=sys.stderr)
        return model
    extra: Dict[str, Any] = {} if config["cpc_kwargs"] is None else {"cpc_kwargs": config["cpc_kwargs"]}
    policy = policy_name(config["algo"], venv.observation_space)
    if config.get("features_dim") is not None:  # absent from the configs of runs made before the flag existed
        # NatureCNN takes features_dim; MultiInput policies' CombinedExtractor names its image output cnn_output_dim.
        key = "cnn_output_dim" if policy.startswith("MultiInput") else "features_dim"
        extra["policy_kwargs"] = {"features_extractor_kwargs": {key: config["features_dim"]}}
    model = algorithm(
        policy, venv, seed=config["seed"], device=args.device, verbose=args.verbose, **config["algo_kwargs"], **extra,
    )
    writer = SummaryWriter(str(run_dir / "tb"))
    writer.add_text("hyperparameters", hyperparameter_table(config))
    writer.close()
    return model


def _versions() -> Dict[str, str]:
    import gymnasium
    import stable_baselines3

    return {"python": platform.python_version(), "torch": torch.__version__, "stable_baselines3": stable_baselines3.__version__, "gymnasium": gymnasium.__version__}


def main(algo: str, argv=None) -> None:
    args = parse_args(algo, argv)
    try:
        train(algo, args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(INTERRUPTED) from None
