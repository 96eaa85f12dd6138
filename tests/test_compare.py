"""The comparison tool end to end on MiniWorld (tiny budgets), and its refusal to overwrite data."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from agents.compare import main as compare_main, plan_runs

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
AGENT_FLAGS = ["--", "--n-envs", "2", "--n-steps", "32", "--batch-size", "64", "--n-epochs", "1",
               "--cpc-steps-ahead", "4", "--cpc-n-negatives", "16", "--checkpoint-every", "10000"]


def test_tiny_comparison_runs_both_agents_and_writes_the_report(tmp_path):
    out = tmp_path / "cmp"
    command = [sys.executable, "-m", "agents.compare", "--env", "MiniWorld-OneRoom-v0", "--seeds", "1",
               "--total-timesteps", "512", "--jobs", "2", "--out", str(out), *AGENT_FLAGS]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    results = pd.read_csv(out / "results.csv")
    assert set(results["cpc"]) == {True, False}
    assert set(results["env"]) == {"MiniWorld-OneRoom-v0"} and results["steps"].max() == 512
    markdown = (out / "results.md").read_text()
    assert "| ppo | - | off | 1 |" in markdown and "| ppo | - | on | 1 |" in markdown
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("MiniWorld-OneRoom-v0__ppo_cpc__seed0", "MiniWorld-OneRoom-v0__ppo__seed0"):
        assert json.loads((out / "runs" / name / "status.json").read_text())["status"] == "completed"
    # the same command again keeps the completed runs and rebuilds the report
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "2 run(s) already complete" in again.stdout


def test_out_folder_with_other_data_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert compare_main(["--env", "MiniWorld-OneRoom-v0", "--seeds", "1", "--total-timesteps", "64", "--out", str(tmp_path)]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_out_folder_of_a_different_comparison_is_refused(tmp_path, capsys):
    (tmp_path / "compare.json").write_text(json.dumps({"algo": "a2c", "env_ids": ["MiniWorld-OneRoom-v0"], "seeds": 1,
                                                       "total_timesteps": 64, "agent_args": []}))
    assert compare_main(["--env", "MiniWorld-OneRoom-v0", "--seeds", "1", "--total-timesteps", "64", "--out", str(tmp_path)]) == 2
    assert "different comparison" in capsys.readouterr().err


def test_first_seed_plans_later_seeds_and_is_part_of_the_plan(tmp_path, capsys):
    names = [spec.name for spec in plan_runs(["E"], 2, "ppo", first_seed=3)]
    assert names == ["E__ppo_cpc__seed3", "E__ppo__seed3", "E__ppo_cpc__seed4", "E__ppo__seed4"]
    assert [spec.seed for spec in plan_runs(["E"], 2, "ppo")] == [0, 0, 1, 1]
    # a folder of seeds 0.. is not continued as seeds 1..
    (tmp_path / "compare.json").write_text(json.dumps({"algo": "ppo", "env_ids": ["MiniWorld-OneRoom-v0"], "seeds": 1,
                                                       "total_timesteps": 64, "agent_args": []}))
    argv = ["--env", "MiniWorld-OneRoom-v0", "--seeds", "1", "--total-timesteps", "64", "--out", str(tmp_path)]
    assert compare_main(argv + ["--first-seed", "1"]) == 2
    assert "differs in first_seed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compare_main(argv + ["--first-seed", "-1"])
    assert "--first-seed must be 0 or more" in capsys.readouterr().err


def test_unknown_env_is_refused_before_anything_runs(tmp_path, capsys):
    assert compare_main(["--env", "MiniWorld-Nowhere-v0", "--out", str(tmp_path / "x")]) == 2
    assert "MiniWorld-Nowhere-v0" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_a_failed_run_is_reported_and_sets_the_exit_status(tmp_path, capsys):
    # steps_ahead 40 >= n_steps 32: both agents with CPC fail at start; the no-CPC agent trains
    flags = [f for f in AGENT_FLAGS if f != "4"]
    flags[flags.index("--cpc-steps-ahead") + 1:flags.index("--cpc-steps-ahead") + 1] = ["40"]
    code = compare_main(["--env", "MiniWorld-OneRoom-v0", "--seeds", "1", "--total-timesteps", "128", "--jobs", "1",
                         "--out", str(tmp_path / "cmp"), *flags])
    assert code == 1
    captured = capsys.readouterr()
    assert "MiniWorld-OneRoom-v0__ppo_cpc__seed0" in captured.err
    markdown = (tmp_path / "cmp" / "results.md").read_text()
    not_included = markdown.split("Runs not included")[1]
    assert "ppo_cpc__seed0" in not_included and "steps_ahead=40 must be shorter than n_steps=32" in not_included


def test_report_from_existing_runs(tmp_path):
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"env_id": "E", "algo": "ppo", "cpc": True, "seed": 0, "total_timesteps": 100}))
    (run / "episodes.csv").write_text("step,return,length,success\n50,1.0,10,1\n95,0.5,10,1\n")
    (run / "status.json").write_text(json.dumps({"status": "completed", "num_timesteps": 100, "error": None}))
    assert compare_main(["--from-runs", str(tmp_path / "runs"), "--out", str(tmp_path / "report")]) == 0
    assert "| ppo | - | on | 1 | 0.500" in (tmp_path / "report" / "results.md").read_text()


def test_report_from_existing_runs_over_their_first_steps(tmp_path, capsys):
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"env_id": "E", "algo": "ppo", "cpc": True, "seed": 0, "total_timesteps": 1000}))
    (run / "episodes.csv").write_text("step,return,length,success\n50,1.0,10,1\n95,0.5,10,1\n300,0.0,10,0\n")
    (run / "status.json").write_text(json.dumps({"status": "interrupted", "num_timesteps": 320, "error": None}))
    argv = ["--from-runs", str(tmp_path / "runs"), "--report-steps", "100", "--out", str(tmp_path / "report")]
    assert compare_main(argv) == 0
    markdown = (tmp_path / "report" / "results.md").read_text()
    assert "steps measured: the first 100 of each run (runs planned for 1000 steps)" in markdown
    assert "| ppo | - | on | 1 | 0.500" in markdown  # the step-95 episode; the one at 300 is past the steps measured
    with pytest.raises(SystemExit):
        compare_main(["--env", "MiniWorld-OneRoom-v0", "--report-steps", "100", "--out", str(tmp_path / "cmp")])
    assert "--report-steps goes with --from-runs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compare_main(["--env", "MiniWorld-OneRoom-v0", "--with-curves", "r.csv", "--out", str(tmp_path / "cmp")])
    assert "--with-curves goes with --from-runs" in capsys.readouterr().err


def test_report_from_existing_runs_with_a_baseline(tmp_path, capsys):
    for variant, cpc, success in (("cpu", False, 0), ("cpu", True, 1)):
        run = tmp_path / "runs" / f"{variant}_{cpc}"
        run.mkdir(parents=True)
        config = {"env_id": "E", "algo": "ppo", "cpc": cpc, "seed": 0, "total_timesteps": 100, "variant": variant}
        (run / "config.json").write_text(json.dumps(config))
        (run / "episodes.csv").write_text(f"step,return,length,success\n95,1.0,10,{success}\n")
        (run / "status.json").write_text(json.dumps({"status": "completed", "num_timesteps": 100, "error": None}))
    argv = ["--from-runs", str(tmp_path / "runs"), "--baseline", "cpu:on", "--out", str(tmp_path / "report")]
    assert compare_main(argv) == 0
    assert "- ppo cpu, CPC off: final success -1.000 [-1.000, -1.000]" in (tmp_path / "report" / "results.md").read_text()
    assert compare_main(["--from-runs", str(tmp_path / "runs"), "--baseline", "cpu", "--out", str(tmp_path / "bad")]) == 2
    assert "expected VARIANT:off or VARIANT:on" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    with pytest.raises(SystemExit):
        compare_main(["--env", "MiniWorld-OneRoom-v0", "--baseline", "cpu:off", "--out", str(tmp_path / "cmp")])
    assert "--baseline goes with --from-runs" in capsys.readouterr().err
