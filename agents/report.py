"""
Report builder: compare agents trained with and without the CPC auxiliary loss over several seeds.

A run folder (written by the training scripts) holds:

- ``config.json``: at least ``env_id`` (str), ``algo`` (str), ``cpc`` (bool), ``seed`` (int),
  ``total_timesteps`` (int); optionally ``variant`` (str or null; missing or null means ``""``), a
  free label telling apart ablations of the same algorithm (e.g. CPC mode ``"joint"`` vs
  ``"separate"``, or different CPC horizons);
- ``episodes.csv``: header ``step,return,length,success``, one row per finished training episode,
  ``step`` being the global env-step count when it ended (non-decreasing), ``success`` 0 or 1;
- ``status.json``: ``{"status": "running"|"completed"|"failed"|"interrupted", "num_timesteps": int,
  "error": str or null}``.

Runs are grouped by (env, algo, variant, cpc): the seeds of a group are aggregated together, and a
repeated (env, algo, variant, cpc, seed) keeps only the first folder.

Only completed runs go into the numbers; every other run folder is listed in the
"Runs not included" section of ``results.md`` with the reason, never dropped silently. With
``steps=S`` (``--steps S``) every run is instead measured over its first ``S`` env steps, as if ``S``
had been its budget: runs stopped early (interrupted, or still running) count once they have trained
``S`` steps, and runs with fewer steps, or failed ones, are listed as not included.

Definitions used throughout:

- learning curve: at ``n_points`` evenly spaced step marks ``T/n, 2T/n, ..., T``
  (``T = total_timesteps`` of the config), the mean return and success rate of the episodes that
  ended within the trailing window ``(mark - window, mark]``; NaN where no episode ended there;
- ``final``: mean return / success rate of the episodes that ended in the last 10% of the steps,
  ``(0.9 T, T]`` (episodes past ``T``, from SB3 finishing its last rollout, are ignored so that every
  seed is measured over the same budget);
- ``auc``: mean of the learning curve over its marks, ignoring NaNs (area under the curve
  normalised by its length);
- across seeds: mean with a 95% percentile bootstrap confidence interval, and the interquartile mean.

Usage::

    python -m agents.report RUNS_ROOT [RUNS_ROOT ...] --out DIR [--steps S] [--baseline VARIANT:on|off ...]
        [--with-curves OLD_REPORT/results.csv ...]

``--baseline cpu:off`` adds, per env, every group's difference from the no-CPC runs of variant
``cpu`` of the same algo (final and AUC success), beside the usual CPC-minus-no-CPC lines.

``--with-curves OLD/results.csv`` adds the runs of an earlier report whose folders are gone (run folders
stay on the machine that trained them; reports are kept): their learning curves are taken as written,
``final`` is the last mark (its window is the last 10% of the steps) and ``auc`` the mean over the marks,
the same numbers their folders would give. A run both there and in a folder, or a budget differing from
the folders' of the same env, is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

PathLike = Union[str, Path]

CONFIG_FILE = "config.json"
EPISODES_FILE = "episodes.csv"
STATUS_FILE = "status.json"
REPORT_FILES = ("results.csv", "results.md", "curves.png")

EPISODE_COLUMNS = ("step", "return", "length", "success")
RESULT_COLUMNS = ["env", "algo", "variant", "cpc", "seed", "steps", "return", "success_rate"]
# A run's group, without the seed: the seeds of a group are aggregated together.
GROUP_COLUMNS = ["env", "algo", "variant", "cpc"]
STATUSES = ("running", "completed", "failed", "interrupted")
REQUIRED_CONFIG = {"env_id": str, "algo": str, "cpc": bool, "seed": int, "total_timesteps": int}
VARIANT_KEY = "variant"  # optional in config.json: str or null, "" when missing or null

# Fraction of the training budget that "final" averages over; also the default learning-curve window.
FINAL_FRACTION = 0.1
N_POINTS = 50
CONFIDENCE = 0.95
N_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0

# Uncertainty across seeds: rliable (``metrics.aggregate_iqm``, ``library.get_interval_estimates``)
# was the first choice, but in this environment ``import rliable`` fails (rliable imports
# ``arch.bootstrap``, and arch 7.2 breaks at import time with pandas 3: ``deprecate_kwarg() missing
# 1 required positional argument``). The same estimators are a few lines of numpy/scipy, and they
# also behave well with very few seeds (one seed: the CI is the value itself):
# - IQM = ``scipy.stats.trim_mean(x, 0.25)``, which is exactly what ``rliable.metrics.aggregate_iqm``
#   computes (note: with fewer than 4 seeds nothing is trimmed and the IQM equals the mean);
# - CI = percentile bootstrap of the mean over seeds, ``N_RESAMPLES`` resamples drawn from
#   ``numpy.random.default_rng(BOOTSTRAP_SEED)`` so a report is reproducible bit for bit.


class RunLoadError(ValueError):
    """
    A run folder that cannot be read.

    :param run_dir: the run folder
    :param problem: what is wrong with it (without the folder name)
    """

    def __init__(self, run_dir: PathLike, problem: str) -> None:
        self.run_dir = Path(run_dir)
        self.problem = problem
        super().__init__(f"{run_dir}: {problem}")


@dataclass(frozen=True)
class Run:
    """
    One training run, as read from its folder.

    :param run_dir: the run folder
    :param config: content of ``config.json``
    :param episodes: content of ``episodes.csv`` (columns ``step, return, length, success``)
    :param status: content of ``status.json``
    """

    run_dir: Path
    config: Dict[str, Any]
    episodes: pd.DataFrame
    status: Dict[str, Any]


class ReportPaths(NamedTuple):
    """
    Files written by :func:`build_report`.

    :param csv: learning-curve rows of every included run
    :param markdown: summary tables, CPC differences and the runs not included
    :param figure: learning curves
    """

    csv: Path
    markdown: Path
    figure: Path


class Excluded(NamedTuple):
    """
    A run folder left out of the report.

    :param run_dir: the run folder
    :param reason: why it was left out
    """

    run_dir: Path
    reason: str


# ----------------------------------------------------------------------------------------------
# Reading run folders
# ----------------------------------------------------------------------------------------------


def _read_json_object(run_dir: Path, name: str) -> Dict[str, Any]:
    """
    Read a JSON object from a file of a run folder.

    :param run_dir: the run folder
    :param name: file name inside the folder
    :return: the decoded object
    """
    path = run_dir / name
    if not path.is_file():
        raise RunLoadError(run_dir, f"{name} is missing")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunLoadError(run_dir, f"{name} is unreadable ({exc})") from exc
    if not isinstance(content, dict):
        raise RunLoadError(run_dir, f"{name} does not hold a JSON object")
    return content


def _has_type(value: Any, expected: type) -> bool:
    """
    Whether a JSON value has the expected type (``bool`` is not accepted as ``int``).

    :param value: the value
    :param expected: ``str``, ``bool`` or ``int``
    :return: True when the value has that type
    """
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def read_config(run_dir: PathLike) -> Dict[str, Any]:
    """
    Read and check ``config.json`` of a run folder.

    :param run_dir: the run folder
    :return: the config (extra keys are kept), with ``variant`` set to ``""`` when missing or null
    """
    run_dir = Path(run_dir)
    config = _read_json_object(run_dir, CONFIG_FILE)
    for key, expected in REQUIRED_CONFIG.items():
        if key not in config:
            raise RunLoadError(run_dir, f"{CONFIG_FILE} lacks the key '{key}'")
        if not _has_type(config[key], expected):
            raise RunLoadError(run_dir, f"{CONFIG_FILE}: '{key}' should be {expected.__name__}, got {config[key]!r}")
    if not config["env_id"] or not config["algo"]:
        raise RunLoadError(run_dir, f"{CONFIG_FILE}: 'env_id' and 'algo' must not be empty")
    if config["total_timesteps"] <= 0:
        raise RunLoadError(run_dir, f"{CONFIG_FILE}: 'total_timesteps' must be positive, got {config['total_timesteps']}")
    variant = config.get(VARIANT_KEY)
    if variant is not None and not isinstance(variant, str):
        raise RunLoadError(run_dir, f"{CONFIG_FILE}: '{VARIANT_KEY}' should be str or null, got {variant!r}")
    config[VARIANT_KEY] = variant or ""
    return config


def read_status(run_dir: PathLike) -> Dict[str, Any]:
    """
    Read and check ``status.json`` of a run folder.

    :param run_dir: the run folder
    :return: the status, with ``error`` set to None when absent
    """
    run_dir = Path(run_dir)
    status = _read_json_object(run_dir, STATUS_FILE)
    if status.get("status") not in STATUSES:
        raise RunLoadError(run_dir, f"{STATUS_FILE}: 'status' should be one of {', '.join(STATUSES)}, got {status.get('status')!r}")
    if not _has_type(status.get("num_timesteps"), int):
        raise RunLoadError(run_dir, f"{STATUS_FILE}: 'num_timesteps' should be int, got {status.get('num_timesteps')!r}")
    error = status.setdefault("error", None)
    if error is not None and not isinstance(error, str):
        raise RunLoadError(run_dir, f"{STATUS_FILE}: 'error' should be a string or null, got {error!r}")
    return status


def _check_episode_values(run_dir: Path, episodes: pd.DataFrame) -> None:
    """
    Check the values of ``episodes.csv`` (numeric, integral non-decreasing steps, 0/1 success).

    :param run_dir: the run folder (for error messages)
    :param episodes: the four contract columns, already converted to numbers (NaN where not numeric)
    """
    bad = episodes.isna().any(axis=1).to_numpy()
    if bad.any():
        # +2: one for the header, one because data lines count from 1
        raise RunLoadError(run_dir, f"{EPISODES_FILE}: missing or non-numeric value on line {int(np.argmax(bad)) + 2}")
    steps = episodes["step"].to_numpy(dtype=float)
    if (steps != np.floor(steps)).any() or (steps < 0).any():
        raise RunLoadError(run_dir, f"{EPISODES_FILE}: 'step' must be non-negative integers")
    decreasing = np.diff(steps) < 0
    if decreasing.any():
        raise RunLoadError(run_dir, f"{EPISODES_FILE}: 'step' decreases on line {int(np.argmax(decreasing)) + 3}")
    if not episodes["success"].isin([0, 1]).all():
        raise RunLoadError(run_dir, f"{EPISODES_FILE}: 'success' must be 0 or 1")


def read_episodes(run_dir: PathLike) -> pd.DataFrame:
    """
    Read and check ``episodes.csv`` of a run folder.

    :param run_dir: the run folder
    :return: DataFrame with integer ``step``, float ``return``, ``length`` and integer ``success``
    """
    run_dir = Path(run_dir)
    path = run_dir / EPISODES_FILE
    if not path.is_file():
        raise RunLoadError(run_dir, f"{EPISODES_FILE} is missing")
    try:
        raw = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # pandas' parser errors are ValueErrors
        raise RunLoadError(run_dir, f"{EPISODES_FILE} is unreadable ({exc})") from exc
    missing = [column for column in EPISODE_COLUMNS if column not in raw.columns]
    if missing:
        raise RunLoadError(run_dir, f"{EPISODES_FILE} lacks the column(s) {', '.join(missing)}")
    episodes = raw[list(EPISODE_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    _check_episode_values(run_dir, episodes)
    return episodes.astype({"step": np.int64, "return": float, "length": float, "success": np.int64})


def load_run(run_dir: PathLike) -> Run:
    """
    Read a run folder.

    :param run_dir: folder holding ``config.json``, ``episodes.csv`` and ``status.json``
    :return: the run
    :raises RunLoadError: (a ValueError) naming the folder and the problem, for missing or unreadable input
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunLoadError(run_dir, "is not a folder")
    return Run(run_dir=run_dir, config=read_config(run_dir), episodes=read_episodes(run_dir), status=read_status(run_dir))


def find_run_dirs(root: PathLike) -> List[Path]:
    """
    Find the run folders under a root folder.

    :param root: folder to search recursively (it may itself be a run folder)
    :return: every folder under ``root`` holding a ``config.json``, sorted
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    return sorted({path.parent for path in root.rglob(CONFIG_FILE) if path.is_file()})


# ----------------------------------------------------------------------------------------------
# Per-run metrics
# ----------------------------------------------------------------------------------------------


def default_window(total_steps: float) -> float:
    """
    Default trailing window of the learning curve: 10% of the training budget.

    This smooths the curve over many episodes (with 50 marks, consecutive windows overlap) and makes
    the value at the last mark equal to the ``final`` metric.

    :param total_steps: training budget in env steps
    :return: the window length in env steps
    """
    return total_steps * FINAL_FRACTION


def _window_means(episodes: pd.DataFrame, low: float, high: float) -> Tuple[float, float]:
    """
    Mean return and success rate of the episodes that ended in ``(low, high]``.

    :param episodes: episodes with ``step``, ``return`` and ``success`` columns
    :param low: window start (excluded)
    :param high: window end (included)
    :return: (mean return, success rate), NaN for both when no episode ended in the window
    """
    steps = episodes["step"].to_numpy()
    inside = (steps > low) & (steps <= high)
    if not inside.any():
        return float("nan"), float("nan")
    return float(episodes["return"].to_numpy()[inside].mean()), float(episodes["success"].to_numpy()[inside].mean())


def curve_marks(total_steps: int, n_points: int = N_POINTS) -> np.ndarray:
    """
    Step marks of the learning curve: ``n_points`` evenly spaced marks ``T/n, 2T/n, ..., T``, rounded
    to whole steps.

    :param total_steps: training budget ``T`` in env steps
    :param n_points: number of marks
    :return: int64 array of marks
    """
    if total_steps <= 0 or n_points < 1:
        raise ValueError(f"need total_steps > 0 and n_points >= 1, got {total_steps} and {n_points}")
    return np.rint(total_steps * np.arange(1, n_points + 1) / n_points).astype(np.int64)


def learning_curve(
    episodes: pd.DataFrame,
    total_steps: int,
    n_points: int = N_POINTS,
    window: Optional[float] = None,
) -> pd.DataFrame:
    """
    Learning curve of one run.

    :param episodes: episodes with ``step``, ``return`` and ``success`` columns
    :param total_steps: training budget; the last mark
    :param n_points: number of evenly spaced marks (see :func:`curve_marks`)
    :param window: trailing window in env steps; each mark averages the episodes that ended in
        ``(mark - window, mark]``. Default: ``total_steps / 10`` (see :func:`default_window`)
    :return: DataFrame with columns ``steps, return, success_rate``; NaN where no episode ended in the window
    """
    window = default_window(total_steps) if window is None else window
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    marks = curve_marks(total_steps, n_points)
    values = [_window_means(episodes, mark - window, mark) for mark in marks]
    return pd.DataFrame(
        {
            "steps": marks,
            "return": [value[0] for value in values],
            "success_rate": [value[1] for value in values],
        }
    )


def final_metrics(episodes: pd.DataFrame, total_steps: int) -> Dict[str, float]:
    """
    End-of-training performance: mean over the episodes that ended in the last 10% of the budget,
    ``(0.9 T, T]``.

    :param episodes: episodes with ``step``, ``return`` and ``success`` columns
    :param total_steps: training budget ``T``
    :return: ``{"return": ..., "success_rate": ...}``, NaN when no episode ended there
    """
    mean_return, success_rate = _window_means(episodes, total_steps - default_window(total_steps), total_steps)
    return {"return": mean_return, "success_rate": success_rate}


def _nanmean(values: Iterable[float]) -> float:
    """
    Mean of the finite values, NaN (without a warning) when there are none.

    :param values: the values
    :return: the mean
    """
    array = np.asarray(list(values), dtype=float)
    array = array[np.isfinite(array)]
    return float(array.mean()) if array.size else float("nan")


def curve_auc(curve: pd.DataFrame) -> Dict[str, float]:
    """
    Area under a learning curve normalised by its length: the mean over the marks, ignoring NaNs.

    :param curve: output of :func:`learning_curve`
    :return: ``{"return": ..., "success_rate": ...}``, NaN when the curve is all NaN
    """
    return {"return": _nanmean(curve["return"]), "success_rate": _nanmean(curve["success_rate"])}


def run_key(run: Run) -> Dict[str, Any]:
    """
    Identify a run by env, algo, variant, CPC on/off and seed.

    :param run: the run
    :return: ``{"env", "algo", "variant", "cpc", "seed"}``; ``variant`` is ``""`` when the config has
        none (or null)
    """
    config = run.config
    return {
        "env": config["env_id"],
        "algo": config["algo"],
        "variant": config.get(VARIANT_KEY) or "",
        "cpc": config["cpc"],
        "seed": config["seed"],
    }


def summarize_run(run: Run, n_points: int = N_POINTS) -> Dict[str, Any]:
    """
    Summary metrics of one run.

    :param run: the run
    :param n_points: number of learning-curve marks used for the AUC
    :return: run key plus ``final_return, final_success, auc_return, auc_success``
    """
    total = run.config["total_timesteps"]
    final = final_metrics(run.episodes, total)
    auc = curve_auc(learning_curve(run.episodes, total, n_points))
    return {
        **run_key(run),
        "final_return": final["return"],
        "final_success": final["success_rate"],
        "auc_return": auc["return"],
        "auc_success": auc["success_rate"],
    }


# ----------------------------------------------------------------------------------------------
# Aggregation across seeds
# ----------------------------------------------------------------------------------------------


def _finite(values: Iterable[float]) -> np.ndarray:
    """
    The finite values, as a float array.

    :param values: the values
    :return: float array without NaN/inf
    """
    array = np.asarray(list(values), dtype=float).ravel()
    return array[np.isfinite(array)]


def _bootstrap_means(values: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """
    Means of bootstrap resamples (with replacement, same size as ``values``).

    :param values: non-empty float array
    :param n_resamples: number of resamples
    :param rng: random generator
    :return: array of ``n_resamples`` means
    """
    indices = rng.integers(0, values.size, size=(n_resamples, values.size))
    return values[indices].mean(axis=1)


def _percentile_interval(samples: np.ndarray, confidence: float) -> Tuple[float, float]:
    """
    Percentile interval of bootstrap samples.

    :param samples: bootstrap statistics
    :param confidence: coverage, e.g. 0.95
    :return: (low, high)
    """
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def aggregate(
    values: Iterable[float],
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> Dict[str, float]:
    """
    Aggregate one metric across seeds.

    NaN values (a seed without any episode in the measured window) are left out; ``n`` says how many
    values were used.

    :param values: one value per seed
    :param n_resamples: number of bootstrap resamples
    :param seed: seed of the bootstrap random generator (fixed so that reports are reproducible)
    :param confidence: coverage of the confidence interval
    :return: ``{"mean", "ci_low", "ci_high", "iqm", "n"}``; with one value the CI is the value,
        with none everything is NaN
    """
    array = _finite(values)
    if array.size == 0:
        nan = float("nan")
        return {"mean": nan, "ci_low": nan, "ci_high": nan, "iqm": nan, "n": 0}
    low_bound, high_bound = float(array.min()), float(array.max())
    # Clipping to [min, max] changes nothing mathematically (a mean lies between them); it removes
    # float rounding so that identical seeds give exactly that value.
    mean = float(np.clip(array.mean(), low_bound, high_bound))
    if array.size == 1:
        ci_low = ci_high = mean
    else:
        samples = _bootstrap_means(array, n_resamples, np.random.default_rng(seed))
        ci_low, ci_high = (float(np.clip(bound, low_bound, high_bound)) for bound in _percentile_interval(samples, confidence))
    iqm = float(np.clip(stats.trim_mean(array, 0.25), low_bound, high_bound))
    return {"mean": mean, "ci_low": ci_low, "ci_high": ci_high, "iqm": iqm, "n": int(array.size)}


def bootstrap_difference(
    values_a: Iterable[float],
    values_b: Iterable[float],
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> Dict[str, float]:
    """
    Difference of means ``mean(a) - mean(b)`` with a percentile bootstrap CI, resampling the two
    groups of seeds independently.

    :param values_a: one value per seed of the first group
    :param values_b: one value per seed of the second group
    :param n_resamples: number of bootstrap resamples
    :param seed: seed of the bootstrap random generator
    :param confidence: coverage of the confidence interval
    :return: ``{"diff", "ci_low", "ci_high"}``, NaN when a group has no finite value
    """
    array_a, array_b = _finite(values_a), _finite(values_b)
    if array_a.size == 0 or array_b.size == 0:
        nan = float("nan")
        return {"diff": nan, "ci_low": nan, "ci_high": nan}
    rng = np.random.default_rng(seed)
    samples = _bootstrap_means(array_a, n_resamples, rng) - _bootstrap_means(array_b, n_resamples, rng)
    ci_low, ci_high = _percentile_interval(samples, confidence)
    return {"diff": float(array_a.mean() - array_b.mean()), "ci_low": ci_low, "ci_high": ci_high}


# ----------------------------------------------------------------------------------------------
# Choosing the runs
# ----------------------------------------------------------------------------------------------


def _status_text(status: Dict[str, Any]) -> str:
    """
    Describe a status for the "Runs not included" section.

    :param status: content of ``status.json``
    :return: e.g. ``status 'failed' at 1200 steps: CUDA out of memory``
    """
    text = f"status '{status['status']}' at {status['num_timesteps']} steps"
    return f"{text}: {status['error']}" if status.get("error") else text


def _unloadable_reason(error: RunLoadError) -> str:
    """
    Reason for a run folder that could not be read, with its status when that at least is readable.

    :param error: the error raised by :func:`load_run`
    :return: the reason
    """
    try:
        status = read_status(error.run_dir)
    except RunLoadError:
        return error.problem
    if status["status"] == "completed":
        return error.problem
    return f"{_status_text(status)}; {error.problem}"


def exclusion_reason(run: Run) -> Optional[str]:
    """
    Why a readable run cannot be included on its own (other runs are not considered here).

    :param run: the run
    :return: the reason, or None when the run can be included
    """
    if run.status["status"] != "completed":
        return _status_text(run.status)
    total = run.config["total_timesteps"]
    if run.status["num_timesteps"] < total:
        return f"status 'completed' but num_timesteps {run.status['num_timesteps']} < total_timesteps {total}"
    if not (run.episodes["step"] <= total).any():
        return f"no episode finished within total_timesteps {total}"
    return None


def truncate_run(run: Run, steps: int) -> Optional[Run]:
    """
    The run measured over its first ``steps`` env steps, as if that had been its budget: the episodes
    that ended later are dropped and ``total_timesteps`` becomes ``steps`` (the trained budget is kept
    as ``config["budget_timesteps"]``). PPO's and A2C's default schedules are constant, so the first
    ``S`` steps of a longer run are an ``S``-step run.

    :param run: the run
    :param steps: env steps to measure over
    :return: the truncated run, marked completed; None when the run failed or has not trained ``steps``
        steps (:func:`select_runs` then lists it as not included, with its status)
    """
    if run.status["status"] == "failed" or run.status["num_timesteps"] < steps:
        return None
    config = {**run.config, "total_timesteps": steps, "budget_timesteps": run.config["total_timesteps"]}
    status = {**run.status, "status": "completed", "num_timesteps": steps}
    episodes = run.episodes[run.episodes["step"] <= steps].reset_index(drop=True)
    return Run(run_dir=run.run_dir, config=config, episodes=episodes, status=status)


def _budget_mismatches(runs: Sequence[Run]) -> List[Excluded]:
    """
    Runs whose budget differs from the one most runs of the same env used (ties: the larger budget),
    since their curves and final windows would not be comparable.

    :param runs: candidate runs
    :return: the runs to leave out, with the reason
    """
    excluded = []
    for env in sorted({run.config["env_id"] for run in runs}):
        env_runs = [run for run in runs if run.config["env_id"] == env]
        counts = Counter(run.config["total_timesteps"] for run in env_runs)
        budget = max(counts, key=lambda total: (counts[total], total))
        excluded += [
            Excluded(run.run_dir, f"total_timesteps {run.config['total_timesteps']} differs from {budget} used by the other runs of {env}")
            for run in env_runs
            if run.config["total_timesteps"] != budget
        ]
    return excluded


def _duplicates(runs: Sequence[Run]) -> List[Excluded]:
    """
    Runs repeating the env, algo, variant, CPC setting and seed of an earlier run (in the given order);
    runs differing only in their variant are not repeats.

    :param runs: candidate runs
    :return: the repeats to leave out, with the reason
    """
    first: Dict[Tuple[Any, ...], Path] = {}
    excluded = []
    for run in runs:
        key = tuple(run_key(run).values())
        if key in first:
            excluded.append(Excluded(run.run_dir, f"same env, algo, variant, cpc and seed as {first[key]}, which is used instead"))
        else:
            first[key] = run.run_dir
    return excluded


def select_runs(run_dirs: Iterable[PathLike], steps: Optional[int] = None) -> Tuple[List[Run], List[Excluded]]:
    """
    Load run folders and split them into the runs to report and the ones left out.

    :param run_dirs: run folders
    :param steps: measure every run over its first ``steps`` env steps (see :func:`truncate_run`);
        None: completed runs over their whole budget
    :return: (included runs, excluded folders with reasons), both in the given order
    """
    if steps is not None and steps <= 0:
        raise ValueError(f"steps must be a positive number of env steps, got {steps}")
    candidates: List[Run] = []
    excluded: List[Excluded] = []
    for run_dir in run_dirs:
        try:
            run = load_run(run_dir)
        except RunLoadError as error:
            excluded.append(Excluded(Path(run_dir), _unloadable_reason(error)))
            continue
        if steps is not None:
            truncated = truncate_run(run, steps)
            if truncated is None:
                excluded.append(Excluded(run.run_dir, f"{_status_text(run.status)}, not the {steps} steps measured"))
                continue
            run = truncated
        reason = exclusion_reason(run)
        if reason is None:
            candidates.append(run)
        else:
            excluded.append(Excluded(run.run_dir, reason))
    mismatched = _budget_mismatches(candidates)
    candidates = [run for run in candidates if run.run_dir not in {item.run_dir for item in mismatched}]
    repeated = _duplicates(candidates)
    included = [run for run in candidates if run.run_dir not in {item.run_dir for item in repeated}]
    return included, excluded + mismatched + repeated


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------


def read_curves(path: PathLike) -> pd.DataFrame:
    """
    Learning curves from the ``results.csv`` of an earlier report, for runs whose folders are gone
    (run folders are large and stay on the machine that trained them; reports are kept).

    :param path: a ``results.csv`` written by :func:`build_report`
    :return: its rows, columns :data:`RESULT_COLUMNS`, ``variant`` as strings (``""`` for none)
    :raises ValueError: naming the file and the problem (missing, unreadable, wrong columns or types)
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file (give the results.csv of an earlier report)")
    try:
        curves = pd.read_csv(path, dtype={VARIANT_KEY: str})
    except (ValueError, OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a readable CSV ({error})") from None
    missing = [column for column in RESULT_COLUMNS if column not in curves.columns]
    if missing:
        raise ValueError(f"{path}: not a report's results.csv, it lacks the column(s) {', '.join(missing)}")
    if curves.empty:
        raise ValueError(f"{path}: holds no learning curve")
    if curves["cpc"].dtype != bool:
        raise ValueError(f"{path}: column 'cpc' should hold True/False only")
    for column in ("seed", "steps"):
        if not pd.api.types.is_integer_dtype(curves[column]):
            raise ValueError(f"{path}: column '{column}' should hold whole numbers only")
    for column in ("return", "success_rate"):
        if not pd.api.types.is_numeric_dtype(curves[column]):
            raise ValueError(f"{path}: column '{column}' should hold numbers (or nothing) only")
    if curves[["env", "algo"]].isna().any().any():
        raise ValueError(f"{path}: a row lacks its env or algo")
    return _with_variant(curves)[RESULT_COLUMNS]


def summary_from_curves(curves: pd.DataFrame, n_points: int = N_POINTS, source: PathLike = "results.csv") -> pd.DataFrame:
    """
    Summary metrics of runs known only by their learning curves (see :func:`read_curves`).

    With the default window the last mark's window is the last 10% of the budget, so its values are
    the ``final`` metrics, and the AUC is the mean over the marks: the same numbers
    :func:`summary_table` gives from the run folders.

    :param curves: learning-curve rows, columns :data:`RESULT_COLUMNS`
    :param n_points: the marks a curve must have
    :param source: where the curves came from, for error messages
    :return: one row per run, the columns of :func:`summary_table`
    :raises ValueError: when a run's marks are not the ``n_points`` marks of its last step
    """
    rows = []
    for key, curve in curves.groupby(GROUP_COLUMNS + ["seed"], sort=True):
        curve = curve.sort_values("steps")
        steps = curve["steps"].to_numpy()
        env, algo, variant, cpc, seed = key
        if len(steps) != n_points or not np.array_equal(steps, curve_marks(int(steps[-1]), n_points)):
            raise ValueError(
                f"{source}: the curve of {env} {algo} variant={variant or '-'} cpc={_cpc_label(cpc)} seed {seed} "
                f"does not have {n_points} evenly spaced marks (it has {len(steps)}); build with the n_points "
                "its report was made with"
            )
        last = curve.iloc[-1]
        auc = curve_auc(curve)
        rows.append(
            {
                "env": env, "algo": algo, "variant": variant, "cpc": bool(cpc), "seed": int(seed),
                "final_return": float(last["return"]), "final_success": float(last["success_rate"]),
                "auc_return": auc["return"], "auc_success": auc["success_rate"],
            }
        )
    return pd.DataFrame(rows, columns=GROUP_COLUMNS + ["seed", "final_return", "final_success", "auc_return", "auc_success"])


def _merge_earlier(
    curves: pd.DataFrame,
    summary: pd.DataFrame,
    budgets: Dict[str, int],
    earlier: pd.DataFrame,
    earlier_summary: pd.DataFrame,
    source: str,
) -> Tuple[pd.DataFrame, pd.DataFrame, Dict[str, int]]:
    """
    Add runs known by their curves to those read from run folders, refusing repeats and other budgets.

    :return: the merged curves, summary and budgets
    :raises ValueError: when a run is in both, or an env's budgets differ
    """
    key_columns = GROUP_COLUMNS + ["seed"]
    folder_keys = set(map(tuple, summary[key_columns].itertuples(index=False)))
    for key in map(tuple, earlier_summary[key_columns].itertuples(index=False)):
        if key in folder_keys:
            env, algo, variant, cpc, seed = key
            raise ValueError(
                f"{env} {algo} variant={variant or '-'} cpc={_cpc_label(cpc)} seed {seed} is both in a run folder "
                f"and in {source}; leave one of them out"
            )
    merged_budgets = dict(budgets)
    for env, last in earlier.groupby("env")["steps"].max().items():
        if merged_budgets.setdefault(env, int(last)) != int(last):
            raise ValueError(f"{env}: the runs in {source} have total_timesteps {last}, the run folders {budgets[env]}")
    merged_curves = pd.concat([curves, earlier], ignore_index=True) if len(curves) else earlier
    merged_curves = merged_curves.sort_values(key_columns + ["steps"], kind="stable").reset_index(drop=True)
    # seeds in a fixed order, whichever source they came from, so the bootstrap draws the same resamples
    merged_summary = pd.concat([summary, earlier_summary], ignore_index=True) if len(summary) else earlier_summary
    merged_summary = merged_summary.sort_values(key_columns, kind="stable").reset_index(drop=True)
    return merged_curves, merged_summary, merged_budgets


def curves_table(runs: Sequence[Run], n_points: int = N_POINTS) -> pd.DataFrame:
    """
    Learning-curve rows of every run.

    :param runs: the runs
    :param n_points: number of marks per curve
    :return: DataFrame with columns ``env, algo, variant, cpc, seed, steps, return, success_rate``
        (:data:`RESULT_COLUMNS`), sorted by those columns; ``variant`` is ``""`` for runs without one.
        Written as ``results.csv``, where ``""`` becomes an empty field: read it back with
        ``pd.read_csv(path, dtype={"variant": str})`` (empty variants then read as NaN, which
        :func:`curve_bands` and :func:`plot_curves` treat as ``""``)
    """
    frames = [
        learning_curve(run.episodes, run.config["total_timesteps"], n_points).assign(**run_key(run)) for run in runs
    ]
    if not frames:
        return pd.DataFrame({column: [] for column in RESULT_COLUMNS})
    table = pd.concat(frames, ignore_index=True)[RESULT_COLUMNS]
    return table.sort_values(GROUP_COLUMNS + ["seed", "steps"], kind="stable").reset_index(drop=True)


def summary_table(runs: Sequence[Run], n_points: int = N_POINTS) -> pd.DataFrame:
    """
    Summary metrics of every run (see :func:`summarize_run`).

    :param runs: the runs
    :param n_points: number of learning-curve marks used for the AUC
    :return: one row per run, columns ``env, algo, variant, cpc, seed, final_return, final_success,
        auc_return, auc_success``
    """
    columns = GROUP_COLUMNS + ["seed", "final_return", "final_success", "auc_return", "auc_success"]
    return pd.DataFrame([summarize_run(run, n_points) for run in runs], columns=columns)


def _with_variant(curves: pd.DataFrame) -> pd.DataFrame:
    """
    Curves with a string ``variant`` column: NaN (an empty field of ``results.csv`` read back) and a
    missing column (a ``results.csv`` from before variants existed) become ``""``.

    :param curves: output of :func:`curves_table`, possibly read back from ``results.csv``
    :return: a copy with ``variant`` as strings
    """
    curves = curves.copy()
    if VARIANT_KEY not in curves.columns:
        curves[VARIANT_KEY] = ""
    variant = curves[VARIANT_KEY].astype(object)
    curves[VARIANT_KEY] = variant.where(variant.notna(), "").astype(str)
    return curves


def curve_bands(curves: pd.DataFrame, column: str) -> pd.DataFrame:
    """
    Mean across seeds and 95% bootstrap band at every mark of every (env, algo, variant, cpc) group.

    :param curves: output of :func:`curves_table` (or ``results.csv`` read back; a NaN or missing
        ``variant`` counts as ``""``)
    :param column: ``"return"`` or ``"success_rate"``
    :return: DataFrame with columns ``env, algo, variant, cpc, steps, mean, ci_low, ci_high``
    """
    rows = []
    for key, group in _with_variant(curves).groupby(GROUP_COLUMNS + ["steps"], sort=True):
        stats_ = aggregate(group[column])
        rows.append({**dict(zip(GROUP_COLUMNS + ["steps"], key)), **{k: stats_[k] for k in ("mean", "ci_low", "ci_high")}})
    return pd.DataFrame(rows, columns=GROUP_COLUMNS + ["steps", "mean", "ci_low", "ci_high"])


# ----------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------

METRICS = (
    ("final_return", "final return"),
    ("final_success", "final success"),
    ("auc_return", "AUC return"),
    ("auc_success", "AUC success"),
)


def _number(value: float) -> str:
    """
    Format a number for the markdown tables.

    :param value: the number
    :return: three decimals, or ``n/a`` for NaN
    """
    return "n/a" if not np.isfinite(value) else f"{value:.3f}"


def format_cell(stats_: Dict[str, float], n_seeds: int) -> str:
    """
    Format an aggregate as ``mean [ci_low, ci_high] (IQM iqm)``.

    :param stats_: output of :func:`aggregate`
    :param n_seeds: number of seeds in the group; when fewer values were usable, ``n=`` says how many
    :return: the cell text
    """
    if stats_["n"] == 0:
        return "n/a"
    cell = f"{_number(stats_['mean'])} [{_number(stats_['ci_low'])}, {_number(stats_['ci_high'])}] (IQM {_number(stats_['iqm'])})"
    return cell if stats_["n"] == n_seeds else f"{cell} (n={stats_['n']})"


def _cpc_label(cpc: bool) -> str:
    """
    :param cpc: whether CPC was on
    :return: ``on`` or ``off``
    """
    return "on" if cpc else "off"


def _variant_cell(variant: str) -> str:
    """
    :param variant: a run's variant
    :return: the variant for a markdown table cell: ``-`` when empty, ``|`` replaced by ``/``
    """
    return variant.replace("|", "/") if variant else "-"


def _groups(summary: pd.DataFrame) -> Iterator[Tuple[str, bool, str, pd.DataFrame]]:
    """
    The (algo, cpc, variant) groups of one env's summary, sorted by algo, then CPC off before on,
    then variant.

    :param summary: rows of :func:`summary_table` for one env
    :return: (algo, cpc, variant, rows of the group) for every group
    """
    for (algo, cpc, variant), group in summary.groupby(["algo", "cpc", "variant"], sort=True):
        yield algo, bool(cpc), variant, group


def env_table(summary: pd.DataFrame) -> List[str]:
    """
    Markdown table of one env: a row per (algo, variant, cpc), sorted by algo, then CPC off before on,
    then variant (``-`` when empty); a column per metric plus the number of seeds.

    :param summary: rows of :func:`summary_table` for one env
    :return: markdown lines
    """
    lines = [
        "| algo | variant | cpc | seeds | " + " | ".join(title for _, title in METRICS) + " |",
        "|---|---|---|---|" + "---|" * len(METRICS),
    ]
    for algo, cpc, variant, group in _groups(summary):
        cells = [format_cell(aggregate(group[column]), len(group)) for column, _ in METRICS]
        lines.append(f"| {algo} | {_variant_cell(variant)} | {_cpc_label(cpc)} | {len(group)} | " + " | ".join(cells) + " |")
    return lines


def _baseline_variant(variant: str, baseline_variants: Sequence[str]) -> Optional[str]:
    """
    The no-CPC variant a CPC variant is compared with: the same variant when it was run without CPC,
    else the plain no-CPC runs (variant ``""``), else none.

    :param variant: variant of the CPC runs
    :param baseline_variants: variants run without CPC (same env and algo)
    :return: the baseline's variant, or None when there is no baseline
    """
    if variant in baseline_variants:
        return variant
    return "" if "" in baseline_variants else None


def _difference_line(label: str, with_cpc: pd.DataFrame, without: pd.DataFrame, baseline_variant: str) -> str:
    """
    One CPC-minus-no-CPC line.

    :param label: algo, followed by the CPC runs' variant when not empty
    :param with_cpc: summary rows of the CPC runs
    :param without: summary rows of the baseline's no-CPC runs
    :param baseline_variant: the baseline's variant (named in the line when not empty)
    :return: the markdown line
    """
    difference = bootstrap_difference(with_cpc["final_success"], without["final_success"])
    if not np.isfinite(difference["diff"]):
        return f"- {label}: CPC minus no-CPC final success = n/a (no episode in the final window)"
    baseline = f"no CPC {baseline_variant}" if baseline_variant else "no CPC"
    return (
        f"- {label}: CPC minus no-CPC final success = {difference['diff']:+.3f} "
        f"[{_number(difference['ci_low'])}, {_number(difference['ci_high'])}] "
        f"(CPC {_number(_nanmean(with_cpc['final_success']))} over {len(with_cpc)} seed(s), "
        f"{baseline} {_number(_nanmean(without['final_success']))} over {len(without)} seed(s))"
    )


def cpc_differences(summary: pd.DataFrame) -> List[str]:
    """
    Lines giving the CPC-minus-no-CPC difference in final success, one per (algo, variant) run with
    CPC, for every algo also run without CPC.

    The baseline of a CPC variant is the no-CPC runs of the same algo with the same variant if there
    are any, else those with variant ``""``; with neither, the line says there is no baseline. A line
    is labelled ``algo`` or ``algo variant``, and names the baseline's variant when it is not empty.

    :param summary: rows of :func:`summary_table` for one env
    :return: markdown lines (empty when no algo was run both with and without CPC)
    """
    lines = []
    for algo, group in summary.groupby("algo", sort=True):
        with_cpc, without = group[group["cpc"].astype(bool)], group[~group["cpc"].astype(bool)]
        if with_cpc.empty or without.empty:
            continue
        baseline_variants = sorted(set(without["variant"]))
        for variant, cpc_rows in with_cpc.groupby("variant", sort=True):
            label = f"{algo} {variant}" if variant else algo
            baseline = _baseline_variant(variant, baseline_variants)
            if baseline is None:
                wanted = f"with variant '{variant}' or without variant" if variant else "without variant"
                lines.append(
                    f"- {label}: CPC minus no-CPC final success = n/a (no baseline: no no-CPC run of {algo} "
                    f"{wanted}; no-CPC variants: {', '.join(baseline_variants)})"
                )
                continue
            lines.append(_difference_line(label, cpc_rows, without[without["variant"] == baseline], baseline))
    return lines


class Baseline(NamedTuple):
    """A group every other group of the same env and algo is compared with (``--baseline``)."""

    variant: str
    cpc: bool

    def label(self) -> str:
        """:return: e.g. ``variant 'cpu', CPC off`` or ``no variant, CPC on``"""
        variant = f"variant '{self.variant}'" if self.variant else "no variant"
        return f"{variant}, CPC {_cpc_label(self.cpc)}"


def parse_baseline(text: str) -> Baseline:
    """
    Read a ``--baseline`` value: ``VARIANT:off`` or ``VARIANT:on`` (``:off`` for the runs without variant).

    :param text: the value
    :return: the baseline
    :raises ValueError: naming the expected form
    """
    variant, separator, cpc = text.rpartition(":")
    if not separator or cpc not in ("on", "off"):
        raise ValueError(
            f"--baseline {text!r}: expected VARIANT:off or VARIANT:on, the variant and CPC column of a table row "
            "(e.g. cpu:off; ':off' for the runs without variant)"
        )
    return Baseline(variant, cpc == "on")


def _signed_interval(difference: Dict[str, float]) -> str:
    """
    :param difference: output of :func:`bootstrap_difference`
    :return: ``+0.012 [-0.034, +0.056]``, or ``n/a``
    """
    if not np.isfinite(difference["diff"]):
        return "n/a"
    return f"{difference['diff']:+.3f} [{difference['ci_low']:+.3f}, {difference['ci_high']:+.3f}]"


def baseline_differences(summary: pd.DataFrame, baseline: Baseline) -> List[str]:
    """
    Lines giving, for every other (algo, variant, cpc) group of one env, its difference from the
    baseline group of the same algo in final success and AUC success (mean minus mean, with the
    percentile bootstrap CI of :func:`bootstrap_difference`).

    :param summary: rows of :func:`summary_table` for one env
    :param baseline: the group compared with
    :return: markdown lines: a heading line, then one line per group (or per algo without the baseline)
    """
    lines = [f"Differences from {baseline.label()} (group minus baseline, same algo):", ""]
    for algo, group in summary.groupby("algo", sort=True):
        is_base = (group["variant"] == baseline.variant) & (group["cpc"].astype(bool) == baseline.cpc)
        base = group[is_base]
        if base.empty:
            lines.append(f"- {algo}: no run with {baseline.label()}")
            continue
        for group_algo, cpc, variant, rows in _groups(group[~is_base]):
            final = bootstrap_difference(rows["final_success"], base["final_success"])
            auc = bootstrap_difference(rows["auc_success"], base["auc_success"])
            lines.append(
                f"- {group_algo} {_variant_cell(variant)}, CPC {_cpc_label(cpc)}: final success {_signed_interval(final)}, "
                f"AUC success {_signed_interval(auc)} ({len(rows)} seed(s) vs {len(base)})"
            )
    return lines


def check_baselines(summary: pd.DataFrame, baselines: Sequence[Baseline]) -> None:
    """
    Make sure every baseline names a group of the included runs.

    :param summary: output of :func:`summary_table`
    :param baselines: the baselines asked for
    :raises ValueError: naming the baseline and the groups there are
    """
    present = {(variant, bool(cpc)) for variant, cpc in zip(summary["variant"], summary["cpc"])}
    for baseline in baselines:
        if (baseline.variant, baseline.cpc) not in present:
            groups = ", ".join(f"{variant}:{_cpc_label(cpc)}" for variant, cpc in sorted(present)) or "none"
            raise ValueError(
                f"--baseline {baseline.variant}:{_cpc_label(baseline.cpc)}: no included run has {baseline.label()}; "
                f"the groups are (VARIANT:CPC) {groups}"
            )


def excluded_section(excluded: Sequence[Excluded]) -> List[str]:
    """
    Markdown "Runs not included" section.

    :param excluded: folders left out, with the reasons
    :return: markdown lines
    """
    lines = ["## Runs not included", ""]
    if not excluded:
        return lines + ["None."]
    lines += ["| run | reason |", "|---|---|"]
    return lines + [f"| {item.run_dir} | {item.reason.replace('|', '/')} |" for item in excluded]


def format_markdown(
    summary: pd.DataFrame,
    excluded: Sequence[Excluded],
    budgets: Dict[str, int],
    n_points: int = N_POINTS,
    trained: Optional[Dict[str, List[int]]] = None,
    baselines: Sequence[Baseline] = (),
    from_curves: Optional[Dict[str, int]] = None,
) -> str:
    """
    The whole ``results.md``.

    :param summary: output of :func:`summary_table`
    :param excluded: folders left out, with the reasons
    :param budgets: total_timesteps per env (the steps measured)
    :param n_points: number of learning-curve marks used for the AUC
    :param trained: with ``--steps``: per env, the budgets the included runs were planned for
        (see :func:`_planned_budgets`)
    :param baselines: groups to give every other group's difference from (see :func:`baseline_differences`)
    :param from_curves: runs included from the learning curves of earlier reports: count per ``results.csv``
    :return: markdown text
    """
    lines = [
        "# CPC vs no-CPC",
        "",
        f"Runs included: {len(summary)}; not included: {len(excluded)}.",
        "",
    ]
    if from_curves:
        sources = "; ".join(f"{count} from {source}" for source, count in from_curves.items())
        lines += [f"Runs included from the learning curves of earlier reports (their folders are gone): {sources}.", ""]
    lines += [
        "Final: episodes that ended in the last 10% of the training steps. "
        f"AUC: mean of the learning curve over {n_points} evenly spaced marks "
        "(each mark: episodes that ended in the trailing 10% of the steps), ignoring empty windows. "
        f"Cells: mean across seeds [{CONFIDENCE:.0%} percentile bootstrap CI, {N_RESAMPLES} resamples, "
        f"seed {BOOTSTRAP_SEED}] (IQM, the 25% trimmed mean; equal to the mean below 4 seeds).",
        "",
    ]
    for env in sorted(budgets):
        env_summary = summary[summary["env"] == env]
        budget_line = f"total_timesteps: {budgets[env]}"
        if trained and env in trained:
            planned = ", ".join(str(total) for total in trained[env])
            budget_line = f"steps measured: the first {budgets[env]} of each run (runs planned for {planned} steps)"
        lines += [f"## {env}", "", budget_line, ""] + env_table(env_summary) + [""]
        differences = cpc_differences(env_summary)
        lines += (differences or ["- no algo was run both with and without CPC"]) + [""]
        for baseline in baselines:
            lines += baseline_differences(env_summary, baseline) + [""]
    return "\n".join(lines + excluded_section(excluded)) + "\n"


# ----------------------------------------------------------------------------------------------
# Figure
# ----------------------------------------------------------------------------------------------

PANEL_WIDTH_IN = 5.0
FIGURE_HEIGHT_IN = 7.0
FIGURE_DPI = 100


def _plot_band(axes: Any, band: pd.DataFrame, label: str, color: Any, linestyle: str) -> None:
    """
    Draw a mean line with its shaded band.

    :param axes: matplotlib axes
    :param band: rows of :func:`curve_bands` for one group
    :param label: legend label
    :param color: line colour
    :param linestyle: line style
    """
    axes.plot(band["steps"], band["mean"], label=label, color=color, linestyle=linestyle)
    axes.fill_between(band["steps"], band["ci_low"], band["ci_high"], color=color, alpha=0.2, linewidth=0)


def plot_curves(curves: pd.DataFrame) -> Figure:
    """
    Learning curves: one column per env, rows = return and success rate vs steps, one line per
    (algo, variant, cpc) with the mean across seeds and a shaded 95% bootstrap band per mark.

    Lines are labelled ``<algo> <variant> CPC on|off`` (no variant when empty) and ordered like the
    markdown tables (algo, CPC off before on, variant). Every (algo, variant, cpc) of the whole figure
    has its own colour, the same in every panel; CPC on is solid, CPC off dashed (past 10 groups the
    colours repeat with dotted / dash-dot lines).

    :param curves: output of :func:`curves_table` (or ``results.csv`` read back; a NaN or missing
        ``variant`` counts as ``""``)
    :return: the figure (Agg canvas, not registered with pyplot)
    """
    curves = _with_variant(curves)
    envs = sorted(curves["env"].unique())
    figure = Figure(figsize=(PANEL_WIDTH_IN * max(len(envs), 1), FIGURE_HEIGHT_IN), dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    if not envs:
        figure.text(0.5, 0.5, "no runs included", ha="center", va="center")
        return figure
    grid = figure.subplots(2, len(envs), squeeze=False, sharex="col")
    groups = sorted({(algo, bool(cpc), variant) for algo, cpc, variant in curves[["algo", "cpc", "variant"]].itertuples(index=False)})
    styles = {
        group: (f"C{index % 10}", ("-" if group[1] else "--") if index < 10 else (":" if group[1] else "-."))
        for index, group in enumerate(groups)
    }
    for row, (column, ylabel) in enumerate((("return", "mean return"), ("success_rate", "success rate"))):
        bands = curve_bands(curves, column)
        for col, env in enumerate(envs):
            axes = grid[row][col]
            for (algo, cpc, variant), band in bands[bands["env"] == env].groupby(["algo", "cpc", "variant"], sort=True):
                label = " ".join(part for part in (algo, variant, f"CPC {_cpc_label(bool(cpc))}") if part)
                _plot_band(axes, band, label, *styles[(algo, bool(cpc), variant)])
            axes.set_ylabel(ylabel)
            axes.grid(alpha=0.3)
            if row == 0:
                axes.set_title(env)
                axes.legend(loc="best", fontsize="small")
            else:
                axes.set_xlabel("env steps")  # the top row shares this axis
    return figure


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def check_out_dir(out_dir: PathLike, also_allowed: Iterable[str] = ()) -> None:
    """
    Make sure a report may be written into ``out_dir`` without overwriting unrelated data.

    :param out_dir: output folder; it may be absent, empty, or hold only the files of an earlier
        report (``results.csv``, ``results.md``, ``curves.png``)
    :param also_allowed: further entry names that belong there (the comparison tool's ``runs``, ``logs``)
    :raises ValueError: naming the unrelated entries otherwise
    """
    out_dir = Path(out_dir)
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ValueError(f"refusing to write the report to {out_dir}: it exists and is not a folder")
    allowed = set(also_allowed)
    unrelated = sorted(
        entry.name
        for entry in out_dir.iterdir()
        if entry.name not in allowed and (entry.name not in REPORT_FILES or not entry.is_file())
    )
    if unrelated:
        raise ValueError(
            f"refusing to write the report into {out_dir}: it holds entries that are not from an earlier report: "
            + ", ".join(unrelated)
        )


def _budgets(runs: Sequence[Run]) -> Dict[str, int]:
    """
    Training budget per env (after :func:`select_runs`, all runs of an env share it).

    :param runs: included runs
    :return: total_timesteps per env id
    """
    return {run.config["env_id"]: run.config["total_timesteps"] for run in runs}


def _planned_budgets(runs: Sequence[Run]) -> Dict[str, List[int]]:
    """
    The budgets that runs measured over their first steps (:func:`truncate_run`) were planned for.

    :param runs: included, truncated runs
    :return: per env id, the sorted distinct ``budget_timesteps``
    """
    planned: Dict[str, set] = {}
    for run in runs:
        planned.setdefault(run.config["env_id"], set()).add(run.config["budget_timesteps"])
    return {env: sorted(totals) for env, totals in planned.items()}


def build_report(
    run_dirs: Iterable[PathLike],
    out_dir: PathLike,
    n_points: int = N_POINTS,
    also_allowed: Iterable[str] = (),
    steps: Optional[int] = None,
    baselines: Sequence[Baseline] = (),
    earlier_curves: Sequence[PathLike] = (),
) -> ReportPaths:
    """
    Write ``results.csv``, ``results.md`` and ``curves.png`` comparing runs with and without CPC,
    grouped by (env, algo, variant, cpc) (see :func:`curves_table`, :func:`env_table`,
    :func:`cpc_differences`, :func:`plot_curves`).

    :param run_dirs: run folders (see the module docstring); failed, incomplete or unreadable ones are
        listed under "Runs not included" in ``results.md``
    :param out_dir: output folder, created if needed; checked with :func:`check_out_dir` first
    :param n_points: number of learning-curve marks per run
    :param also_allowed: entries besides an earlier report that ``out_dir`` may hold (see :func:`check_out_dir`)
    :param steps: measure every run over its first ``steps`` env steps, including runs stopped after
        that many (see :func:`truncate_run`); None: completed runs over their whole budget
    :param baselines: groups to give every other group's difference from, per env and algo
        (see :func:`baseline_differences`); each must match some included run
    :param earlier_curves: ``results.csv`` files of earlier reports whose runs are to be included though
        their folders are gone (see :func:`read_curves`); not with ``steps``
    :return: the paths written
    :raises ValueError: when ``out_dir`` holds unrelated data, a baseline matches no included run, or the
        earlier curves are unreadable, repeat a run, or have another budget
    """
    out_dir = Path(out_dir)
    check_out_dir(out_dir, also_allowed)
    if earlier_curves and steps is not None:
        raise ValueError("curves from an earlier results.csv cannot be cut to the first steps (their windows are fixed); drop one")
    earlier = [(str(path), read_curves(path)) for path in earlier_curves]
    runs, excluded = select_runs(run_dirs, steps)
    trained = _planned_budgets(runs) if steps is not None else None
    curves = curves_table(runs, n_points)
    summary = summary_table(runs, n_points)
    budgets = _budgets(runs)
    from_curves: Dict[str, int] = {}
    for source, earlier_table in earlier:
        earlier_summary = summary_from_curves(earlier_table, n_points, source)
        curves, summary, budgets = _merge_earlier(curves, summary, budgets, earlier_table, earlier_summary, source)
        from_curves[source] = len(earlier_summary)
    check_baselines(summary, baselines)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = ReportPaths(csv=out_dir / REPORT_FILES[0], markdown=out_dir / REPORT_FILES[1], figure=out_dir / REPORT_FILES[2])
    curves.to_csv(paths.csv, index=False)
    markdown = format_markdown(summary, excluded, budgets, n_points, trained, baselines, from_curves)
    paths.markdown.write_text(markdown, encoding="utf-8")
    plot_curves(curves).savefig(paths.figure, format="png")
    return paths


def _collect_run_dirs(roots: Sequence[Path]) -> List[Path]:
    """
    Run folders under several roots, each folder once even when roots overlap.

    :param roots: folders to search
    :return: run folders, sorted
    """
    found: Dict[Path, Path] = {}
    for root in roots:
        for run_dir in find_run_dirs(root):
            found.setdefault(run_dir.resolve(), run_dir)
    return sorted(found.values())


def main(argv: Optional[Sequence[str]] = None) -> int:
    """
    Command line: ``python -m agents.report RUNS_ROOT [RUNS_ROOT ...] --out DIR``.

    :param argv: arguments (default: ``sys.argv[1:]``)
    :return: exit status (errors exit through SystemExit with a message)
    """
    parser = argparse.ArgumentParser(prog="python -m agents.report", description="Compare runs with and without CPC over seeds.")
    parser.add_argument("roots", nargs="+", type=Path, metavar="RUNS_ROOT", help="folder searched recursively for run folders")
    parser.add_argument("--out", required=True, type=Path, help="output folder for results.csv, results.md, curves.png")
    parser.add_argument("--n-points", type=int, default=N_POINTS, help="learning-curve marks per run (default: %(default)s)")
    parser.add_argument(
        "--steps", type=int, default=None,
        help="measure every run over its first STEPS env steps, counting runs stopped after that many "
        "(default: completed runs over their whole budget)",
    )
    parser.add_argument(
        "--baseline", action="append", default=[], metavar="VARIANT:on|off",
        help="also give every group's difference from this group (same env and algo), in final and AUC "
        "success; e.g. cpu:off, or :off for the runs without variant; repeatable",
    )
    parser.add_argument(
        "--with-curves", action="append", default=[], type=Path, metavar="RESULTS_CSV",
        help="also include the runs of an earlier report's results.csv whose folders are gone (their final "
        "and AUC come from the curves); repeatable",
    )
    args = parser.parse_args(argv)
    try:
        baselines = [parse_baseline(text) for text in args.baseline]
        check_out_dir(args.out)
        run_dirs = _collect_run_dirs(args.roots)
        if not run_dirs:
            raise ValueError(f"no run folder (holding {CONFIG_FILE}) under {', '.join(map(str, args.roots))}")
        paths = build_report(
            run_dirs, args.out, args.n_points, steps=args.steps, baselines=baselines, earlier_curves=args.with_curves
        )
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
