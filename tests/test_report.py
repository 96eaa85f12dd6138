"""Tests of agents.report on synthetic run folders (numbers checked against hand-computed values)."""

from __future__ import annotations

import json
import math
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
import pytest

from agents.report import (
    RunLoadError,
    Baseline,
    aggregate,
    bootstrap_difference,
    build_report,
    check_out_dir,
    curve_auc,
    final_metrics,
    find_run_dirs,
    learning_curve,
    load_run,
    parse_baseline,
    plot_curves,
    read_curves,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ENV_A = "MiniWorld-OneRoom-v0"
ENV_B = "MiniWorld-Hallway-v0"
NO_VARIANT = object()  # write_run: leave the 'variant' key out of config.json


def write_run(
    run_dir: Path,
    *,
    env: str = ENV_A,
    algo: str = "ppo",
    cpc: bool = False,
    seed: int = 0,
    total: int = 1000,
    episodes: Optional[Sequence[Sequence[float]]] = None,
    status: str = "completed",
    num_timesteps: Optional[int] = None,
    error: Optional[str] = None,
    write_episodes: bool = True,
    variant: Any = NO_VARIANT,
) -> Path:
    """Write a synthetic run folder; default episodes: one every 100 steps with return 1, success 1;
    default config: no 'variant' key."""
    run_dir.mkdir(parents=True)
    config = {"env_id": env, "algo": algo, "cpc": cpc, "seed": seed, "total_timesteps": total, "n_envs": 4}
    if variant is not NO_VARIANT:
        config["variant"] = variant
    (run_dir / "config.json").write_text(json.dumps(config))
    if episodes is None:
        episodes = [(step, 1.0, 50, 1) for step in range(100, total + 1, 100)]
    if write_episodes:
        lines = ["step,return,length,success"] + [",".join(str(value) for value in row) for row in episodes]
        (run_dir / "episodes.csv").write_text("\n".join(lines) + "\n")
    done = total if num_timesteps is None else num_timesteps
    (run_dir / "status.json").write_text(json.dumps({"status": status, "num_timesteps": done, "error": error}))
    return run_dir


def constant_episodes(value: float, success: int, total: int = 1000) -> list:
    """One episode every 100 steps, all with the same return and success."""
    return [(step, value, 50, success) for step in range(100, total + 1, 100)]


def png_size(path: Path) -> tuple:
    """Width and height from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ----------------------------------------------------------------------------------------------
# learning_curve, final, auc
# ----------------------------------------------------------------------------------------------

EPISODES = pd.DataFrame(
    {
        "step": [10, 20, 35, 60, 100],
        "return": [1.0, 2.0, 3.0, 4.0, 5.0],
        "length": [10, 10, 15, 25, 40],
        "success": [0, 1, 0, 1, 1],
    }
)


def test_learning_curve_explicit_window() -> None:
    curve = learning_curve(EPISODES, total_steps=100, n_points=5, window=20)
    assert list(curve.columns) == ["steps", "return", "success_rate"]
    assert curve["steps"].tolist() == [20, 40, 60, 80, 100]
    # (0,20]: 10,20 | (20,40]: 35 | (40,60]: 60 | (60,80]: none | (80,100]: 100
    np.testing.assert_array_equal(curve["return"], [1.5, 3.0, 4.0, np.nan, 5.0])
    np.testing.assert_array_equal(curve["success_rate"], [0.5, 0.0, 1.0, np.nan, 1.0])


def test_learning_curve_default_window_is_tenth_of_budget() -> None:
    curve = learning_curve(EPISODES, total_steps=100, n_points=5)
    # window 10: (10,20]: 20 | (30,40]: 35 | (50,60]: 60 | (70,80]: none | (90,100]: 100
    np.testing.assert_array_equal(curve["return"], [2.0, 3.0, 4.0, np.nan, 5.0])
    np.testing.assert_array_equal(curve["success_rate"], [1.0, 0.0, 1.0, np.nan, 1.0])


def test_learning_curve_all_empty_and_bad_window() -> None:
    empty = EPISODES.iloc[:0]
    curve = learning_curve(empty, total_steps=100, n_points=4)
    assert curve["steps"].tolist() == [25, 50, 75, 100]
    assert curve["return"].isna().all() and curve["success_rate"].isna().all()
    assert math.isnan(curve_auc(curve)["return"])
    with pytest.raises(ValueError):
        learning_curve(EPISODES, total_steps=100, window=0)


def test_final_and_auc() -> None:
    assert final_metrics(EPISODES, 100) == {"return": 5.0, "success_rate": 1.0}
    final = final_metrics(EPISODES, 1000)  # (900, 1000]: nothing
    assert math.isnan(final["return"]) and math.isnan(final["success_rate"])
    auc = curve_auc(learning_curve(EPISODES, total_steps=100, n_points=5, window=20))
    assert auc == {"return": (1.5 + 3 + 4 + 5) / 4, "success_rate": (0.5 + 0 + 1 + 1) / 4}


# ----------------------------------------------------------------------------------------------
# aggregate
# ----------------------------------------------------------------------------------------------


def test_iqm_trims_quartiles() -> None:
    result = aggregate([1, 2, 3, 4, 100])
    assert result["iqm"] == 3.0  # 1 and 100 trimmed
    assert result["mean"] == 22.0
    assert result["n"] == 5
    assert aggregate([1, 2, 3, 4, 5, 6, 7, 100])["iqm"] == 4.5  # mean of 3, 4, 5, 6


def test_bootstrap_ci_contains_mean_and_is_reproducible() -> None:
    values = [0.1, 0.5, 0.9, 0.3, 0.6]
    result = aggregate(values)
    assert result["mean"] == pytest.approx(0.48)
    assert result["ci_low"] < result["mean"] < result["ci_high"]
    assert 0.1 <= result["ci_low"] and result["ci_high"] <= 0.9
    assert aggregate(values) == result


def test_two_values_bootstrap_is_exact() -> None:
    # Resample means of [0.5, 1.0] are 0.5, 0.75, 1.0 with probabilities 1/4, 1/2, 1/4.
    result = aggregate([1.0, 0.5])
    assert result == {"mean": 0.75, "ci_low": 0.5, "ci_high": 1.0, "iqm": 0.75, "n": 2}


def test_ci_collapses_for_identical_seeds_and_single_seed() -> None:
    assert aggregate([0.1, 0.1, 0.1]) == {"mean": 0.1, "ci_low": 0.1, "ci_high": 0.1, "iqm": 0.1, "n": 3}
    assert aggregate([0.7]) == {"mean": 0.7, "ci_low": 0.7, "ci_high": 0.7, "iqm": 0.7, "n": 1}


def test_aggregate_ignores_nan_and_handles_empty() -> None:
    assert aggregate([1.0, float("nan"), 3.0])["n"] == 2
    assert aggregate([1.0, float("nan"), 3.0])["mean"] == 2.0
    empty = aggregate([])
    assert empty["n"] == 0 and math.isnan(empty["mean"]) and math.isnan(empty["ci_low"])


def test_bootstrap_difference() -> None:
    result = bootstrap_difference([1.0, 1.0], [1.0, 0.0])
    assert result == {"diff": 0.5, "ci_low": 0.0, "ci_high": 1.0}


# ----------------------------------------------------------------------------------------------
# Reading run folders
# ----------------------------------------------------------------------------------------------


def test_load_run_reads_the_contract(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", cpc=True, seed=3)
    run = load_run(run_dir)
    assert run.run_dir == run_dir
    assert run.config["cpc"] is True and run.config["seed"] == 3 and run.config["n_envs"] == 4
    assert run.status == {"status": "completed", "num_timesteps": 1000, "error": None}
    assert run.episodes["step"].tolist() == list(range(100, 1001, 100))
    assert list(run.episodes.columns) == ["step", "return", "length", "success"]


@pytest.mark.parametrize(
    "breakage, problem",
    [
        (lambda d: (d / "episodes.csv").unlink(), "episodes.csv is missing"),
        (lambda d: (d / "config.json").unlink(), "config.json is missing"),
        (lambda d: (d / "status.json").unlink(), "status.json is missing"),
        (lambda d: (d / "config.json").write_text("{not json"), "config.json is unreadable"),
        (lambda d: (d / "config.json").write_text('{"env_id": "x"}'), "config.json lacks the key 'algo'"),
        (lambda d: (d / "config.json").write_text(
            '{"env_id": "x", "algo": "ppo", "cpc": 1, "seed": 0, "total_timesteps": 10}'), "'cpc' should be bool"),
        (lambda d: (d / "episodes.csv").write_text(""), "episodes.csv is unreadable"),
        (lambda d: (d / "episodes.csv").write_text("step,return\n1,2\n"), "lacks the column(s) length, success"),
        (lambda d: (d / "episodes.csv").write_text("step,return,length,success\n5,1,1,1\n9,oops,1,1\n"),
         "non-numeric value on line 3"),
        (lambda d: (d / "episodes.csv").write_text("step,return,length,success\n5,1,1,1\n3,1,1,1\n"),
         "'step' decreases on line 3"),
        (lambda d: (d / "episodes.csv").write_text("step,return,length,success\n5,1,1,2\n"), "'success' must be 0 or 1"),
        (lambda d: (d / "status.json").write_text('{"status": "done", "num_timesteps": 1}'), "'status' should be one of"),
        (lambda d: (d / "config.json").write_text(
            '{"env_id": "x", "algo": "ppo", "cpc": true, "seed": 0, "total_timesteps": 10, "variant": 3}'),
         "'variant' should be str or null"),
    ],
)
def test_load_run_names_folder_and_problem(tmp_path: Path, breakage: Any, problem: str) -> None:
    run_dir = write_run(tmp_path / "broken_run")
    breakage(run_dir)
    with pytest.raises(ValueError) as info:
        load_run(run_dir)
    assert str(run_dir) in str(info.value)
    assert problem in str(info.value)


def test_find_run_dirs_recursive_and_sorted(tmp_path: Path) -> None:
    b = write_run(tmp_path / "b" / "seed1")
    a = write_run(tmp_path / "a")
    deep = write_run(tmp_path / "b" / "x" / "y" / "seed0")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "episodes.csv").write_text("step,return,length,success\n")
    assert find_run_dirs(tmp_path) == [a, b, deep]
    assert find_run_dirs(a) == [a]
    with pytest.raises(ValueError):
        find_run_dirs(tmp_path / "absent")


# ----------------------------------------------------------------------------------------------
# build_report
# ----------------------------------------------------------------------------------------------


def example_runs(root: Path) -> list:
    """Two ppo seeds without CPC (returns 1.0 / 0.5, success 1 / 0), two with CPC (1.0, success 1),
    one a2c seed in another env, and three runs that must be left out."""
    return [
        write_run(root / "ppo_nocpc_s0", seed=0, episodes=constant_episodes(1.0, 1)),
        write_run(root / "ppo_nocpc_s1", seed=1, episodes=constant_episodes(0.5, 0)),
        write_run(root / "ppo_cpc_s0", cpc=True, seed=0, episodes=constant_episodes(1.0, 1)),
        write_run(root / "ppo_cpc_s1", cpc=True, seed=1, episodes=constant_episodes(1.0, 1)),
        write_run(root / "a2c_cpc_s0", env=ENV_B, algo="a2c", cpc=True, seed=0, total=500,
                  episodes=constant_episodes(0.25, 0, total=500)),
        write_run(root / "crashed", seed=2, status="failed", num_timesteps=300, error="RuntimeError: boom",
                  write_episodes=False),
        write_run(root / "no_episodes", seed=3, write_episodes=False),
        write_run(root / "still_running", seed=4, status="running", num_timesteps=400),
    ]


def test_build_report_numbers(tmp_path: Path) -> None:
    run_dirs = example_runs(tmp_path / "runs")
    paths = build_report(run_dirs, tmp_path / "out")
    assert paths == (tmp_path / "out" / "results.csv", tmp_path / "out" / "results.md", tmp_path / "out" / "curves.png")

    results = pd.read_csv(paths.csv)
    assert list(results.columns) == ["env", "algo", "variant", "cpc", "seed", "steps", "return", "success_rate"]
    assert results["variant"].isna().all()  # no run has a variant: empty fields
    assert len(results) == 5 * 50  # five included runs, 50 marks each
    seed1 = results[(results["env"] == ENV_A) & ~results["cpc"] & (results["seed"] == 1)]
    assert seed1["steps"].tolist() == list(range(20, 1001, 20))
    # window (mark - 100, mark]: the first episode ends at step 100, so marks 20..80 are empty
    assert seed1["return"].isna().tolist() == [True] * 4 + [False] * 46
    assert (seed1["return"].dropna() == 0.5).all() and (seed1["success_rate"].dropna() == 0.0).all()
    assert set(results["env"]) == {ENV_A, ENV_B}

    markdown = paths.markdown.read_text()
    assert "Runs included: 5; not included: 3." in markdown
    assert (
        "| ppo | - | off | 2 | 0.750 [0.500, 1.000] (IQM 0.750) | 0.500 [0.000, 1.000] (IQM 0.500) "
        "| 0.750 [0.500, 1.000] (IQM 0.750) | 0.500 [0.000, 1.000] (IQM 0.500) |" in markdown
    )
    assert (
        "| ppo | - | on | 2 | 1.000 [1.000, 1.000] (IQM 1.000) | 1.000 [1.000, 1.000] (IQM 1.000) "
        "| 1.000 [1.000, 1.000] (IQM 1.000) | 1.000 [1.000, 1.000] (IQM 1.000) |" in markdown
    )
    assert "| algo | variant | cpc | seeds | final return | final success | AUC return | AUC success |" in markdown
    assert "| a2c | - | on | 1 | 0.250 [0.250, 0.250] (IQM 0.250) | 0.000 [0.000, 0.000] (IQM 0.000)" in markdown
    assert (
        "- ppo: CPC minus no-CPC final success = +0.500 [0.000, 1.000] "
        "(CPC 1.000 over 2 seed(s), no CPC 0.500 over 2 seed(s))" in markdown
    )
    assert markdown.count("CPC minus no-CPC") == 1
    assert "- no algo was run both with and without CPC" in markdown  # the a2c env
    # per-env sections, then the excluded runs last
    assert markdown.index(f"## {ENV_B}") < markdown.index(f"## {ENV_A}") < markdown.index("## Runs not included")


def test_build_report_lists_runs_not_included(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    example_runs(runs)
    paths = build_report(find_run_dirs(runs), tmp_path / "out")
    section = paths.markdown.read_text().split("## Runs not included")[1]
    assert f"| {runs / 'crashed'} | status 'failed' at 300 steps: RuntimeError: boom; episodes.csv is missing |" in section
    assert f"| {runs / 'no_episodes'} | episodes.csv is missing |" in section
    assert f"| {runs / 'still_running'} | status 'running' at 400 steps |" in section
    results = pd.read_csv(paths.csv)
    assert not set(results["seed"]) & {2, 3, 4}


def test_build_report_budget_mismatch_duplicates_and_empty_windows(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_run(runs / "a", seed=0)
    write_run(runs / "b", seed=1)
    write_run(runs / "c_short", seed=2, total=500, episodes=constant_episodes(1.0, 1, total=500))
    write_run(runs / "d_repeat", seed=1)
    write_run(runs / "e_no_final", seed=5, episodes=[(100, 1.0, 50, 1)])  # nothing in (900, 1000]
    write_run(runs / "f_nothing", seed=6, episodes=[(2000, 1.0, 50, 1)])  # only past the budget
    write_run(runs / "g_short_completed", seed=7, num_timesteps=800)
    markdown = build_report(find_run_dirs(runs), tmp_path / "out").markdown.read_text()
    assert f"| {runs / 'c_short'} | total_timesteps 500 differs from 1000 used by the other runs of {ENV_A} |" in markdown
    assert f"| {runs / 'd_repeat'} | same env, algo, variant, cpc and seed as {runs / 'b'}, which is used instead |" in markdown
    assert f"| {runs / 'f_nothing'} | no episode finished within total_timesteps 1000 |" in markdown
    assert f"| {runs / 'g_short_completed'} | status 'completed' but num_timesteps 800 < total_timesteps 1000 |" in markdown
    # e_no_final has no final value: 2 of its 3 seeds count for "final", all 3 for the AUC
    assert "| ppo | - | off | 3 | 1.000 [1.000, 1.000] (IQM 1.000) (n=2) |" in markdown


def test_report_over_the_first_steps_of_longer_runs(tmp_path: Path) -> None:
    """--steps S: runs stopped after S steps count, measured over (0, S] as if S were their budget."""
    runs = tmp_path / "runs"
    # success 1 up to step 600, 0 afterwards: over the first 500 steps it is 1 everywhere
    early_good = [(step, 1.0 if step <= 600 else 0.0, 50, int(step <= 600)) for step in range(100, 1001, 100)]
    write_run(runs / "interrupted", seed=0, status="interrupted", num_timesteps=700, episodes=early_good[:7])
    write_run(runs / "completed", seed=1, episodes=early_good)
    write_run(runs / "running", seed=2, status="running", num_timesteps=520, episodes=early_good[:5])
    write_run(runs / "too_short", seed=3, status="interrupted", num_timesteps=400, episodes=early_good[:4])
    write_run(runs / "failed", seed=4, status="failed", num_timesteps=900, error="RuntimeError: boom")
    paths = build_report(find_run_dirs(runs), tmp_path / "out", steps=500)
    markdown = paths.markdown.read_text()
    assert "Runs included: 3; not included: 2." in markdown
    assert "steps measured: the first 500 of each run (runs planned for 1000 steps)" in markdown
    # final window (450, 500]: the step-500 episode of each run, success 1; the AUC too
    assert "| ppo | - | off | 3 | 1.000 [1.000, 1.000] (IQM 1.000) | 1.000 [1.000, 1.000] (IQM 1.000) " in markdown
    assert f"| {runs / 'too_short'} | status 'interrupted' at 400 steps, not the 500 steps measured |" in markdown
    assert f"| {runs / 'failed'} | status 'failed' at 900 steps: RuntimeError: boom, not the 500 steps measured |" in markdown
    results = pd.read_csv(paths.csv)
    assert results["steps"].max() == 500 and sorted(set(results["seed"])) == [0, 1, 2]

    # over the whole budget only the completed run counts, and its late failures show
    whole = build_report(find_run_dirs(runs), tmp_path / "whole").markdown.read_text()
    assert "Runs included: 1; not included: 4." in whole
    assert "| ppo | - | off | 1 | 0.000 [0.000, 0.000] (IQM 0.000) | 0.000 [0.000, 0.000] (IQM 0.000) " in whole
    with pytest.raises(ValueError, match="steps must be a positive"):
        build_report(find_run_dirs(runs), tmp_path / "bad", steps=0)


def seeded_runs(root: Path, seeds: Sequence[int]) -> list:
    """ppo with and without CPC in ENV_A, a different success pattern per seed, so that means and CIs
    depend on every seed."""
    runs = []
    for seed in seeds:
        for cpc in (False, True):
            episodes = [(step, 0.1 * ((step // 100 + seed) % 7), 50, int((step // 100 + seed + cpc) % 3 == 0))
                        for step in range(100, 1001, 50)]
            runs.append(write_run(root / f"{'cpc' if cpc else 'nocpc'}_s{seed}", cpc=cpc, seed=seed, episodes=episodes))
    return runs


def test_report_with_curves_of_runs_whose_folders_are_gone(tmp_path: Path) -> None:
    """Seeds 1-2 from folders plus seed 0 from an earlier report's results.csv give the same numbers as
    all three seeds from folders."""
    whole = build_report(seeded_runs(tmp_path / "all", [0, 1, 2]), tmp_path / "whole")
    old = build_report(seeded_runs(tmp_path / "old", [0]), tmp_path / "old_report")
    shutil.rmtree(tmp_path / "old")
    merged = build_report(seeded_runs(tmp_path / "new", [1, 2]), tmp_path / "merged", earlier_curves=[old.csv])

    pd.testing.assert_frame_equal(pd.read_csv(merged.csv), pd.read_csv(whole.csv))
    note = f"Runs included from the learning curves of earlier reports (their folders are gone): 2 from {old.csv}.\n\n"
    merged_text = merged.markdown.read_text()
    assert note in merged_text
    assert merged_text.replace(note, "") == whole.markdown.read_text()
    assert "| ppo | - | on | 3 |" in merged_text and "Runs included: 6; not included: 0." in merged_text
    assert png_size(merged.figure) == png_size(whole.figure)

    # the seeds really differ, so a wrong merge would change the table
    summary = pd.read_csv(whole.csv).groupby(["cpc", "seed"])["success_rate"].last()
    assert summary.loc[True].nunique() > 1


def test_earlier_curves_are_checked(tmp_path: Path) -> None:
    old = build_report(seeded_runs(tmp_path / "old", [0]), tmp_path / "old_report")
    with pytest.raises(ValueError, match=r"seed 0 is both in a run folder and in .*results.csv; leave one of them out"):
        build_report(seeded_runs(tmp_path / "new", [0, 1]), tmp_path / "a", earlier_curves=[old.csv])
    longer = [write_run(tmp_path / "long" / "r", seed=3, total=2000)]
    with pytest.raises(ValueError, match=f"{ENV_A}: the runs in .*results.csv have total_timesteps 1000, the run folders 2000"):
        build_report(longer, tmp_path / "b", earlier_curves=[old.csv])
    with pytest.raises(ValueError, match="cannot be cut to the first steps"):
        build_report(longer, tmp_path / "c", steps=1000, earlier_curves=[old.csv])
    with pytest.raises(ValueError, match="does not have 10 evenly spaced marks \\(it has 50\\)"):
        build_report(longer, tmp_path / "d", n_points=10, earlier_curves=[old.csv])
    with pytest.raises(ValueError, match="no such file"):
        build_report(longer, tmp_path / "e", earlier_curves=[tmp_path / "missing.csv"])
    broken = tmp_path / "broken.csv"
    broken.write_text("env,algo,cpc,seed,steps\nE,ppo,True,0,10\n")
    with pytest.raises(ValueError, match="lacks the column\\(s\\) variant, return, success_rate"):
        read_curves(broken)
    broken.write_text("env,algo,variant,cpc,seed,steps,return,success_rate\nE,ppo,,yes,0,10,1.0,1.0\n")
    with pytest.raises(ValueError, match="'cpc' should hold True/False only"):
        read_curves(broken)
    broken.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="broken.csv"):
        read_curves(broken)
    assert not any((tmp_path / name).exists() for name in "abcde")  # nothing written on refusal


def test_curves_png_and_axes(tmp_path: Path) -> None:
    paths = build_report(example_runs(tmp_path / "runs"), tmp_path / "out")
    assert png_size(paths.figure) == (2 * 500, 700)  # two envs, 5 x 7 inches at 100 dpi each
    figure = plot_curves(pd.read_csv(paths.csv))
    axes = figure.axes
    assert len(axes) == 2 * 2
    assert [ax.get_title() for ax in axes[:2]] == [ENV_B, ENV_A]
    assert [ax.get_ylabel() for ax in axes] == ["mean return"] * 2 + ["success rate"] * 2
    assert [ax.get_xlabel() for ax in axes] == [""] * 2 + ["env steps"] * 2
    legend = [text.get_text() for text in axes[1].get_legend().get_texts()]
    assert legend == ["ppo CPC off", "ppo CPC on"]
    assert len(axes[1].lines) == 2 and len(axes[0].lines) == 1
    assert len(axes[1].collections) == 2  # one shaded band per line


# ----------------------------------------------------------------------------------------------
# Variants (ablations of one algo)
# ----------------------------------------------------------------------------------------------


def variant_runs(root: Path) -> list:
    """ppo in ENV_A: a no-CPC baseline without variant (seed 0: no key, return 1.0 / success 1;
    seed 1: null, 0.5 / 0), CPC "joint" (2 seeds, 1.0 / 1) and CPC "separate" (seed 0: 1.0 / 1;
    seed 1: return 0.5, and in the final window (900, 1000] one success at 950 and one failure at 1000,
    so final success 0.5)."""
    separate_s1 = [(step, 0.5, 50, 1) for step in range(100, 901, 100)] + [(950, 0.5, 50, 1), (1000, 0.5, 50, 0)]
    return [
        write_run(root / "ppo_nocpc_s0", seed=0, episodes=constant_episodes(1.0, 1)),
        write_run(root / "ppo_nocpc_s1", seed=1, episodes=constant_episodes(0.5, 0), variant=None),
        write_run(root / "ppo_joint_s0", cpc=True, seed=0, variant="joint", episodes=constant_episodes(1.0, 1)),
        write_run(root / "ppo_joint_s1", cpc=True, seed=1, variant="joint", episodes=constant_episodes(1.0, 1)),
        write_run(root / "ppo_separate_s0", cpc=True, seed=0, variant="separate", episodes=constant_episodes(1.0, 1)),
        write_run(root / "ppo_separate_s1", cpc=True, seed=1, variant="separate", episodes=separate_s1),
    ]


def test_runs_without_variant_load_as_empty_variant(tmp_path: Path) -> None:
    assert load_run(write_run(tmp_path / "missing")).config["variant"] == ""
    assert load_run(write_run(tmp_path / "null", variant=None)).config["variant"] == ""
    assert load_run(write_run(tmp_path / "set", variant="joint")).config["variant"] == "joint"
    with pytest.raises(RunLoadError, match="'variant' should be str or null, got True"):
        load_run(write_run(tmp_path / "bad", variant=True))


def test_variant_results_csv(tmp_path: Path) -> None:
    paths = build_report(variant_runs(tmp_path / "runs"), tmp_path / "out")
    results = pd.read_csv(paths.csv, dtype={"variant": str})
    assert list(results.columns) == ["env", "algo", "variant", "cpc", "seed", "steps", "return", "success_rate"]
    assert len(results) == 6 * 50
    results["variant"] = results["variant"].fillna("")  # "" is written as an empty field
    seeds = results.groupby(["variant", "cpc"])["seed"].unique().map(sorted).to_dict()
    assert seeds == {("", False): [0, 1], ("joint", True): [0, 1], ("separate", True): [0, 1]}
    # rows sorted by env, algo, variant, cpc, seed, steps
    assert results["variant"].tolist() == [""] * 100 + ["joint"] * 100 + ["separate"] * 100
    last = results[results["steps"] == 1000].set_index(["variant", "seed"])["success_rate"].to_dict()
    assert last == {("", 0): 1.0, ("", 1): 0.0, ("joint", 0): 1.0, ("joint", 1): 1.0, ("separate", 0): 1.0, ("separate", 1): 0.5}


def test_variant_markdown_rows_and_differences(tmp_path: Path) -> None:
    markdown = build_report(variant_runs(tmp_path / "runs"), tmp_path / "out").markdown.read_text()
    assert "Runs included: 6; not included: 0." in markdown
    ones = "1.000 [1.000, 1.000] (IQM 1.000)"
    three_quarters = "0.750 [0.500, 1.000] (IQM 0.750)"  # seeds 1.0 and 0.5
    half = "0.500 [0.000, 1.000] (IQM 0.500)"  # seeds 1 and 0
    rows = [line for line in markdown.splitlines() if line.startswith("| ppo |")]
    assert len(rows) == 3  # one per (variant, cpc), no-CPC first
    assert rows[0] == f"| ppo | - | off | 2 | {three_quarters} | {half} | {three_quarters} | {half} |"
    assert rows[1] == f"| ppo | joint | on | 2 | {ones} | {ones} | {ones} | {ones} |"
    # "separate": final return (1.0, 0.5), final success (1, 0.5); AUC success of seed 1: of its 46
    # non-empty marks (100..1000), only the last window (900, 1000] (950 success, 1000 failure) is 0.5,
    # so (45 + 0.5) / 46 = 0.98913; with seed 0 at 1.0 the mean is 0.99457 and the CI [0.98913, 1]
    separate_auc_success = "0.995 [0.989, 1.000] (IQM 0.995)"
    assert rows[2] == (
        f"| ppo | separate | on | 2 | {three_quarters} | {three_quarters} | {three_quarters} | {separate_auc_success} |"
    )
    differences = [line for line in markdown.splitlines() if "CPC minus no-CPC" in line]
    # joint: [1, 1] vs [1, 0]: 1.0 - 0.5; CI from resample means of the baseline in {0, 0.5, 1}
    # separate: [1, 0.5] vs [1, 0]: 0.75 - 0.5; the CI ends are 0.5 - 1 and 1 - 0 (each with probability 1/16)
    assert differences == [
        "- ppo joint: CPC minus no-CPC final success = +0.500 [0.000, 1.000] "
        "(CPC 1.000 over 2 seed(s), no CPC 0.500 over 2 seed(s))",
        "- ppo separate: CPC minus no-CPC final success = +0.250 [-0.500, 1.000] "
        "(CPC 0.750 over 2 seed(s), no CPC 0.500 over 2 seed(s))",
    ]


def test_variant_baseline_choice(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # a2c: no-CPC runs with variant "h4" (success 0) and without variant (success 1)
    write_run(runs / "a2c_nocpc_h4", algo="a2c", variant="h4", episodes=constant_episodes(1.0, 0))
    write_run(runs / "a2c_nocpc", algo="a2c", episodes=constant_episodes(1.0, 1))
    write_run(runs / "a2c_cpc_h4", algo="a2c", cpc=True, variant="h4", episodes=constant_episodes(1.0, 1))
    write_run(runs / "a2c_cpc_h8", algo="a2c", cpc=True, variant="h8", episodes=constant_episodes(1.0, 1))
    # ppo: the only no-CPC variant is "h4", so CPC "h8" has no baseline
    write_run(runs / "ppo_nocpc_h4", variant="h4", episodes=constant_episodes(1.0, 0))
    write_run(runs / "ppo_cpc_h8", cpc=True, variant="h8", episodes=constant_episodes(1.0, 1))
    markdown = build_report(find_run_dirs(runs), tmp_path / "out").markdown.read_text()
    differences = [line for line in markdown.splitlines() if "CPC minus no-CPC" in line]
    assert differences == [
        # same variant preferred over the plain baseline
        "- a2c h4: CPC minus no-CPC final success = +1.000 [1.000, 1.000] "
        "(CPC 1.000 over 1 seed(s), no CPC h4 0.000 over 1 seed(s))",
        # no "h8" without CPC: the baseline without variant
        "- a2c h8: CPC minus no-CPC final success = +0.000 [0.000, 0.000] "
        "(CPC 1.000 over 1 seed(s), no CPC 1.000 over 1 seed(s))",
        "- ppo h8: CPC minus no-CPC final success = n/a (no baseline: no no-CPC run of ppo "
        "with variant 'h8' or without variant; no-CPC variants: h4)",
    ]
    rows = [line.split(" | ")[:4] for line in markdown.splitlines() if line.startswith(("| a2c |", "| ppo |"))]
    assert rows == [
        ["| a2c", "-", "off", "1"],
        ["| a2c", "h4", "off", "1"],
        ["| a2c", "h4", "on", "1"],
        ["| a2c", "h8", "on", "1"],
        ["| ppo", "h4", "off", "1"],
        ["| ppo", "h8", "on", "1"],
    ]


def baseline_runs(runs: Path) -> Path:
    """ppo on ENV_A: 'cpu' off (success 0, 0), 'cpu' on (1, 1), 'wide' on (1, 0), no variant off (1);
    a2c on ENV_A: 'wide' on only; ppo on ENV_B: 'cpu' on only."""
    for seed in (0, 1):
        write_run(runs / f"cpu_off_s{seed}", seed=seed, variant="cpu", episodes=constant_episodes(0.0, 0))
        write_run(runs / f"cpu_on_s{seed}", seed=seed, cpc=True, variant="cpu", episodes=constant_episodes(1.0, 1))
        write_run(runs / f"wide_on_s{seed}", seed=seed, cpc=True, variant="wide", episodes=constant_episodes(1.0, 1 - seed))
    write_run(runs / "plain_off", episodes=constant_episodes(1.0, 1))
    write_run(runs / "a2c_wide_on", algo="a2c", cpc=True, variant="wide")
    write_run(runs / "b_cpu_on", env=ENV_B, cpc=True, variant="cpu")
    return runs


def test_parse_baseline() -> None:
    assert parse_baseline("cpu:off") == Baseline("cpu", False)
    assert parse_baseline(":on") == Baseline("", True)
    assert parse_baseline("a:b:off") == Baseline("a:b", False)  # the last colon splits
    for bad in ("cpu", "cpu:yes", "cpu:", ""):
        with pytest.raises(ValueError, match="expected VARIANT:off or VARIANT:on"):
            parse_baseline(bad)


def test_baseline_differences(tmp_path: Path) -> None:
    runs = baseline_runs(tmp_path / "runs")
    markdown = build_report(find_run_dirs(runs), tmp_path / "out", baselines=[parse_baseline("cpu:off")]).markdown.read_text()
    lines = markdown.splitlines()
    heading = "Differences from variant 'cpu', CPC off (group minus baseline, same algo):"
    assert lines.count(heading) == 2  # one per env
    # ENV_B (Hallway) sorts before ENV_A (OneRoom)
    second = lines.index(heading)
    first = lines.index(heading, second + 1)
    assert lines.index(f"## {ENV_B}") < second < lines.index(f"## {ENV_A}") < first
    assert lines[second + 2 : second + 4] == ["- ppo: no run with variant 'cpu', CPC off", ""]
    # success is constant within each run, so final success == AUC success per seed; the baseline's
    # seeds are both 0, so the CI is that of the group's mean: [1, 1] -> [1, 1], [1, 0] -> [0, 1]
    assert lines[first + 2 : first + 6] == [
        "- a2c: no run with variant 'cpu', CPC off",
        "- ppo -, CPC off: final success +1.000 [+1.000, +1.000], AUC success +1.000 [+1.000, +1.000] (1 seed(s) vs 2)",
        "- ppo cpu, CPC on: final success +1.000 [+1.000, +1.000], AUC success +1.000 [+1.000, +1.000] (2 seed(s) vs 2)",
        "- ppo wide, CPC on: final success +0.500 [+0.000, +1.000], AUC success +0.500 [+0.000, +1.000] (2 seed(s) vs 2)",
    ]
    assert lines[first + 6] == ""
    # the usual CPC-minus-no-CPC lines are still there, unchanged
    assert any(line.startswith("- ppo cpu: CPC minus no-CPC final success = +1.000") for line in lines)

    # a CPC baseline: differences from the 'cpu' CPC runs, the no-CPC group included
    on = build_report(find_run_dirs(runs), tmp_path / "out_on", baselines=[parse_baseline("cpu:on")]).markdown.read_text()
    assert (
        "- ppo cpu, CPC off: final success -1.000 [-1.000, -1.000], AUC success -1.000 [-1.000, -1.000] (2 seed(s) vs 2)"
        in on.splitlines()
    )


def test_unknown_baseline_is_refused_before_writing(tmp_path: Path) -> None:
    runs = baseline_runs(tmp_path / "runs")
    with pytest.raises(ValueError, match=r"--baseline wide:off: .*the groups are \(VARIANT:CPC\) :off, cpu:off, cpu:on, wide:on") as error:
        build_report(find_run_dirs(runs), tmp_path / "out", baselines=[parse_baseline("wide:off")])
    assert "no included run has variant 'wide', CPC off" in str(error.value)
    assert not (tmp_path / "out").exists()


def test_duplicates_distinguish_variants(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_run(runs / "a_joint", cpc=True, variant="joint")
    write_run(runs / "b_separate", cpc=True, variant="separate")  # same seed, other variant: kept
    write_run(runs / "c_joint_repeat", cpc=True, variant="joint")
    write_run(runs / "d_plain", cpc=True)
    write_run(runs / "e_null_repeat", cpc=True, variant=None)  # null is the same as no variant
    paths = build_report(find_run_dirs(runs), tmp_path / "out")
    markdown = paths.markdown.read_text()
    assert "Runs included: 3; not included: 2." in markdown
    same = "same env, algo, variant, cpc and seed as"
    assert f"| {runs / 'c_joint_repeat'} | {same} {runs / 'a_joint'}, which is used instead |" in markdown
    assert f"| {runs / 'e_null_repeat'} | {same} {runs / 'd_plain'}, which is used instead |" in markdown
    assert {row.split(" | ")[1] for row in markdown.splitlines() if row.startswith("| ppo |")} == {"-", "joint", "separate"}
    results = pd.read_csv(paths.csv, dtype={"variant": str})
    assert results["variant"].fillna("").value_counts().to_dict() == {"": 50, "joint": 50, "separate": 50}


def test_variant_curves_legend_and_styles(tmp_path: Path) -> None:
    paths = build_report(variant_runs(tmp_path / "runs"), tmp_path / "out")
    for curves in (pd.read_csv(paths.csv), pd.read_csv(paths.csv, dtype={"variant": str})):
        figure = plot_curves(curves)
        for axes in figure.axes:
            assert len(axes.lines) == 3 and len(axes.collections) == 3
        top = figure.axes[0]
        assert [text.get_text() for text in top.get_legend().get_texts()] == [
            "ppo CPC off", "ppo joint CPC on", "ppo separate CPC on"
        ]
        styles = [(line.get_color(), line.get_linestyle()) for line in top.lines]
        assert len({color for color, _ in styles}) == 3  # one colour per (algo, variant, cpc)
        assert [style for _, style in styles] == ["--", "-", "-"]
    # a results.csv from before variants (no variant column) still plots
    old = plot_curves(pd.read_csv(paths.csv).drop(columns="variant"))
    assert [text.get_text() for text in old.axes[0].get_legend().get_texts()] == ["ppo CPC off", "ppo CPC on"]


def test_report_with_no_included_run(tmp_path: Path) -> None:
    crashed = write_run(tmp_path / "runs" / "crashed", status="failed", error="boom", write_episodes=False)
    paths = build_report([crashed], tmp_path / "out")
    assert pd.read_csv(paths.csv).empty
    assert "Runs included: 0; not included: 1." in paths.markdown.read_text()
    assert paths.figure.read_bytes()[:8] == PNG_MAGIC


# ----------------------------------------------------------------------------------------------
# Output folder and CLI
# ----------------------------------------------------------------------------------------------


def test_check_out_dir(tmp_path: Path) -> None:
    check_out_dir(tmp_path / "absent")
    out = tmp_path / "out"
    out.mkdir()
    check_out_dir(out)
    for name in ("results.csv", "results.md", "curves.png"):
        (out / name).write_text("old")
    check_out_dir(out)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt"):
        check_out_dir(out)
    (out / "notes.txt").unlink()
    (out / "sub").mkdir()
    with pytest.raises(ValueError, match="sub"):
        check_out_dir(out)
    with pytest.raises(ValueError, match="not a folder"):
        check_out_dir(out / "results.csv")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agents.report", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


def test_cli_writes_report_and_refuses_unrelated_out_dir(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    example_runs(runs)
    out = tmp_path / "out"
    done = run_cli(str(runs), "--out", str(out), "--n-points", "10")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(out / name) for name in ("results.csv", "results.md", "curves.png")]
    assert len(pd.read_csv(out / "results.csv")) == 5 * 10

    again = run_cli(str(runs), str(runs / "ppo_cpc_s0"), "--out", str(out))  # earlier report: overwritten
    assert again.returncode == 0, again.stderr
    assert len(pd.read_csv(out / "results.csv")) == 5 * 50  # overlapping roots: each run once

    (out / "notes.txt").write_text("mine")
    refused = run_cli(str(runs), "--out", str(out))
    assert refused.returncode != 0
    assert "notes.txt" in refused.stderr and "Traceback" not in refused.stderr
    assert (out / "notes.txt").read_text() == "mine"


def test_cli_without_runs_exits_cleanly(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = run_cli(str(tmp_path / "empty"), "--out", str(tmp_path / "out"))
    assert done.returncode != 0
    assert "no run folder" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_cli_with_curves(tmp_path: Path) -> None:
    old = build_report(seeded_runs(tmp_path / "old", [0]), tmp_path / "old_report")
    seeded_runs(tmp_path / "new", [1])
    done = run_cli(str(tmp_path / "new"), "--with-curves", str(old.csv), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "Runs included: 4; not included: 0." in (tmp_path / "out" / "results.md").read_text()
    refused = run_cli(str(tmp_path / "new"), "--with-curves", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "bad"))
    assert refused.returncode != 0 and "nope.csv: no such file" in refused.stderr and "Traceback" not in refused.stderr


def test_cli_baseline(tmp_path: Path) -> None:
    runs = baseline_runs(tmp_path / "runs")
    out = tmp_path / "out"
    done = run_cli(str(runs), "--out", str(out), "--baseline", "cpu:off", "--baseline", ":off")
    assert done.returncode == 0, done.stderr
    markdown = (out / "results.md").read_text()
    assert "Differences from variant 'cpu', CPC off" in markdown and "Differences from no variant, CPC off" in markdown
    for bad, message in (("cpu", "expected VARIANT:off or VARIANT:on"), ("nope:off", "no included run has variant 'nope'")):
        refused = run_cli(str(runs), "--out", str(tmp_path / "refused"), "--baseline", bad)
        assert refused.returncode != 0
        assert message in refused.stderr and "Traceback" not in refused.stderr
        assert not (tmp_path / "refused").exists()
