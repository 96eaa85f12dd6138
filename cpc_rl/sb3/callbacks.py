"""SB3 callbacks for the agent scripts: an episode log, a progress bar and periodic checkpoints."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import List, Optional, Union

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

EPISODE_COLUMNS = ("step", "return", "length", "success")
CHECKPOINT_PATTERN = "step_{:010d}.zip"


class EpisodeLogger(BaseCallback):
    """Appends every finished training episode to a CSV: ``step,return,length,success``.

    ``step`` is the global env-step count when the episode ended; ``success`` comes from ``is_success``
    (0 if the env does not report it). Monitor's ``info["episode"]`` marks a finished episode.

    :param path: the CSV file; created with a header, appended to if it exists (a resumed run)
    """

    def __init__(self, path: Union[str, Path]):
        super().__init__()
        self.path = Path(path)
        self._file = None
        self._writer = None

    def _on_training_start(self) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._file = open(self.path, "a", newline="")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(EPISODE_COLUMNS)

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            episode = info.get("episode")
            if episode is not None:
                success = int(bool(info.get("is_success", False)))
                self._writer.writerow([self.num_timesteps, f"{episode['r']:.6g}", int(episode["l"]), success])
        return True

    def _on_rollout_end(self) -> None:
        self._file.flush()

    def _on_training_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def truncate_episode_log(path: Union[str, Path], last_step: int) -> int:
    """Drop the episodes that ended after ``last_step`` (a checkpoint's step count) before resuming, so the
    replayed steps are not counted twice. Returns the number of rows dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    if not rows:
        return 0
    header, body = rows[0], rows[1:]
    kept = [row for row in body if row and int(row[0]) <= last_step]
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(kept)
    os.replace(tmp, path)
    return len(body) - len(kept)


class ProgressBar(BaseCallback):
    """A tqdm bar over env steps with steps/s and the mean return and success of the last 100 episodes.

    :param total_timesteps: the run's target step count (a resumed run starts part-way)
    :param mininterval: seconds between redraws (longer when output is not a terminal)
    """

    def __init__(self, total_timesteps: int, mininterval: Optional[float] = None):
        super().__init__()
        self.total_timesteps = total_timesteps
        self.mininterval = mininterval
        self._bar = None
        self._last = 0

    def _on_training_start(self) -> None:
        import sys

        from tqdm.auto import tqdm

        interval = self.mininterval if self.mininterval is not None else (0.5 if sys.stderr.isatty() else 10.0)
        self._last = self.model.num_timesteps
        # On-policy algorithms stop after whole rollouts, so the run ends at the next multiple past the target.
        per_rollout = getattr(self.model, "n_steps", 1) * self.model.n_envs
        total = self._last + -(-(self.total_timesteps - self._last) // per_rollout) * per_rollout
        self._bar = tqdm(
            total=max(total, self._last), initial=self._last, unit="step", unit_scale=True,
            mininterval=interval, dynamic_ncols=True, smoothing=0.05,
        )

    def _on_step(self) -> bool:
        self._bar.update(self.num_timesteps - self._last)
        self._last = self.num_timesteps
        return True

    def _on_rollout_end(self) -> None:
        episodes = self.model.ep_info_buffer
        if episodes:
            postfix = {"return": f"{np.mean([e['r'] for e in episodes]):.3f}"}
            if self.model.ep_success_buffer:
                postfix["success"] = f"{np.mean(self.model.ep_success_buffer):.2f}"
            self._bar.set_postfix(postfix, refresh=False)

    def _on_training_end(self) -> None:
        if self._bar is not None:
            self._bar.close()


def save_atomically(model: BaseAlgorithm, path: Union[str, Path]) -> Path:
    """``model.save`` to a temporary name, then rename: an interrupted save never leaves a broken zip."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    model.save(tmp)
    os.replace(tmp, path)
    return path


def checkpoint_path(checkpoint_dir: Union[str, Path], num_timesteps: int) -> Path:
    return Path(checkpoint_dir) / CHECKPOINT_PATTERN.format(num_timesteps)


def list_checkpoints(checkpoint_dir: Union[str, Path]) -> List[Path]:
    """The checkpoints in a folder, oldest first (the file names carry the step count)."""
    return sorted(Path(checkpoint_dir).glob("step_*.zip"))


class PeriodicCheckpoint(BaseCallback):
    """Saves ``checkpoints/step_<n>.zip`` every ``every`` steps, keeping the newest ``keep``.

    It saves when a rollout starts, i.e. after the update on the previous rollout: a checkpoint's weights
    have been trained on every step its count includes.

    :param checkpoint_dir: folder of the checkpoints
    :param every: env steps between checkpoints
    :param keep: how many checkpoints to keep
    :param on_save: called with the path after each save (e.g. to update the run's status file)
    """

    def __init__(self, checkpoint_dir: Union[str, Path], every: int, keep: int = 3, on_save=None):
        super().__init__()
        if every < 1:
            raise ValueError(f"checkpoint interval must be positive, got {every}")
        self.checkpoint_dir = Path(checkpoint_dir)
        self.every = every
        self.keep = keep
        self.on_save = on_save
        self._next = None

    def _on_training_start(self) -> None:
        self._next = (self.model.num_timesteps // self.every + 1) * self.every

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        if self.model.num_timesteps >= self._next:
            self.save()
            self._next = (self.model.num_timesteps // self.every + 1) * self.every

    def save(self) -> Path:
        path = save_atomically(self.model, checkpoint_path(self.checkpoint_dir, self.model.num_timesteps))
        for old in list_checkpoints(self.checkpoint_dir)[: -self.keep]:
            old.unlink()
        if self.on_save is not None:
            self.on_save(path)
        return path
