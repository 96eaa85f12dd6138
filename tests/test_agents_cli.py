"""The agent scripts through their command line, as a user runs them."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import tensorboard_tags

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--n-envs", "2", "--n-steps", "32", "--batch-size", "64", "--n-epochs", "1", "--cpc-steps-ahead", "4",
         "--cpc-n-negatives", "16", "--no-progress", "--device", "cpu"]


def agent(script, *args, **kwargs):
    return subprocess.run([sys.executable, "-m", f"agents.{script}", *args], cwd=ROOT, capture_output=True, text=True, timeout=600, **kwargs)


def test_ppo_cpc_cli_writes_a_complete_run(tmp_path):
    result = agent("ppo_cpc", "--env", "MiniWorld-OneRoom-v0", "--total-timesteps", "512", "--log-dir", str(tmp_path),
                   "--run-name", "run", "--checkpoint-every", "128", "--features-dim", "48", *SMALL)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["env_id"] == "MiniWorld-OneRoom-v0" and config["algo"] == "ppo" and config["cpc"] is True
    assert config["cpc_kwargs"]["steps_ahead"] == 4 and config["algo_kwargs"]["n_steps"] == 32
    assert json.loads((run / "status.json").read_text()) == {"status": "completed", "num_timesteps": 512, "error": None}
    assert (run / "model.zip").is_file()
    assert config["features_dim"] == 48
    from cpc_rl.sb3 import CPCPPO

    model = CPCPPO.load(run / "model.zip", device="cpu")  # the encoder's size, and the CPC head on top of it
    assert model.policy.features_extractor.features_dim == 48 and model.policy.cpc_head.context.gru.input_size == 48
    assert len(list((run / "checkpoints").glob("step_*.zip"))) == 3  # keeps the newest three
    assert (run / "episodes.csv").read_text().splitlines()[0] == "step,return,length,success"
    tags = tensorboard_tags(run / "tb")
    assert {"cpc/loss", "cpc/accuracy_k1", "cpc/accuracy_k4", "train/value_loss", "time/fps"} <= tags


def test_no_cpc_run_has_no_cpc_tags(tmp_path):
    result = agent("a2c_cpc", "--env", "MiniWorld-OneRoom-v0", "--total-timesteps", "256", "--log-dir", str(tmp_path),
                   "--run-name", "plain", "--no-cpc", *SMALL)
    assert result.returncode == 0, result.stderr
    tags = tensorboard_tags(tmp_path / "plain" / "tb")
    assert "train/value_loss" in tags and not any(t.startswith("cpc/") for t in tags)
    assert json.loads((tmp_path / "plain" / "config.json").read_text())["cpc"] is False


def test_the_same_seed_trains_the_same_agent(tmp_path):
    """On one machine a seed fixes the run: envs, policy sampling, CPC negatives and updates."""
    for name, seed in (("a", "3"), ("b", "3"), ("other", "4")):
        result = agent("ppo_cpc", "--env", "MiniWorld-OneRoom-v0", "--total-timesteps", "256", "--seed", seed,
                       "--log-dir", str(tmp_path), "--run-name", name, "--torch-threads", "1", *SMALL)
        assert result.returncode == 0, result.stderr
    from cpc_rl.sb3 import CPCPPO

    params = {name: CPCPPO.load(tmp_path / name / "model.zip", device="cpu").policy.state_dict() for name in ("a", "b", "other")}
    assert params["a"].keys() == params["b"].keys()
    assert all(torch.equal(params["a"][key], params["b"][key]) for key in params["a"])
    assert any(not torch.equal(params["a"][key], params["other"][key]) for key in params["a"])
    assert (tmp_path / "a" / "episodes.csv").read_text() == (tmp_path / "b" / "episodes.csv").read_text()


def test_unknown_env_id_lists_the_known_ones():
    result = agent("ppo_cpc", "--env", "MiniWorld-FourRoom-v0", "--total-timesteps", "64")
    assert result.returncode == 2
    assert "MiniWorld-FourRoom-v0" in result.stderr and "MiniWorld-FourRooms-v0" in result.stderr
    assert "MiniWorld-OneRoom-v0" in result.stderr and "Traceback" not in result.stderr


def test_non_image_env_is_refused(tmp_path):
    result = agent("ppo_cpc", "--env", "CartPole-v1", "--total-timesteps", "64", "--log-dir", str(tmp_path))
    assert result.returncode == 2
    assert "pixel encoder" in result.stderr and "Traceback" not in result.stderr


def test_ctrl_c_saves_a_checkpoint_and_resume_continues_from_it(tmp_path):
    from cpc_rl.sb3 import CPCPPO

    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "agents.ppo_cpc", "--env", "MiniWorld-OneRoom-v0", "--total-timesteps", "100000",
         "--log-dir", str(tmp_path), "--run-name", "run", "--checkpoint-every", "64", *SMALL],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(list((run / "checkpoints").glob("step_*.zip"))) < 2:
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and "--resume" in stderr
    stopped_at = status["num_timesteps"]
    checkpoint = run / "checkpoints" / f"step_{stopped_at:010d}.zip"
    saved = CPCPPO.load(checkpoint, device="cpu")
    assert saved.num_timesteps == stopped_at
    head_parameter = next(saved.policy.cpc_head.parameters())
    assert "exp_avg" in saved.policy.optimizer.state[head_parameter]  # optimizer state travelled with the head

    target = stopped_at + 128
    result = agent("ppo_cpc", "--resume", str(run), "--total-timesteps", str(target), "--no-progress", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert f"at step {stopped_at}" in result.stderr
    final = CPCPPO.load(run / "model.zip", device="cpu")
    assert final.num_timesteps == target
    # the resumed model started from the checkpoint's weights, not from scratch
    assert final.cpc_kwargs == saved.cpc_kwargs
    steps = [int(line.split(",")[0]) for line in (run / "episodes.csv").read_text().splitlines()[1:]]
    assert steps == sorted(steps)
    assert json.loads((run / "status.json").read_text())["status"] == "completed"


def test_resume_refuses_a_corrupt_checkpoint(tmp_path):
    result = agent("ppo_cpc", "--env", "MiniWorld-OneRoom-v0", "--total-timesteps", "64", "--log-dir", str(tmp_path),
                   "--run-name", "run", *SMALL)
    assert result.returncode == 0, result.stderr
    broken = tmp_path / "run" / "checkpoints" / f"step_{10**6:010d}.zip"
    broken.parent.mkdir(exist_ok=True)
    broken.write_bytes(b"not a zip")
    result = agent("ppo_cpc", "--resume", str(tmp_path / "run"), "--no-progress")
    assert result.returncode == 2
    assert "corrupt" in result.stderr and str(broken.name) in result.stderr and "Traceback" not in result.stderr


def test_an_existing_run_is_not_overwritten(tmp_path):
    args = ["--env", "MiniWorld-OneRoom-v0", "--total-timesteps", "64", "--log-dir", str(tmp_path), "--run-name", "run", *SMALL]
    assert agent("ppo_cpc", *args).returncode == 0
    result = agent("ppo_cpc", *args)
    assert result.returncode == 2 and "--resume" in result.stderr


@pytest.mark.parametrize("algo, n_steps, steps_ahead, weight", [("ppo", 128, 12, 1.0), ("a2c", 32, 8, 0.1), ("recurrent_ppo", 128, 12, 1.0)])
def test_per_algorithm_defaults_and_overrides(algo, n_steps, steps_ahead, weight):
    from agents.train import parse_args, resolve

    config = resolve(parse_args(algo, []), algo)
    assert config["algo_kwargs"]["n_steps"] == n_steps
    assert config["cpc_kwargs"]["steps_ahead"] == steps_ahead < n_steps
    assert config["cpc_kwargs"]["weight"] == weight and config["cpc_kwargs"]["mode"] == "auto"
    changed = resolve(parse_args(algo, ["--cpc-weight", "0.3", "--n-steps", "64", "--no-cpc"]), algo)
    assert changed["algo_kwargs"]["n_steps"] == 64 and changed["cpc_kwargs"] is None and changed["cpc"] is False
    assert resolve(parse_args(algo, ["--cpc-weight", "0.3"]), algo)["cpc_kwargs"]["weight"] == 0.3
    assert config["features_dim"] is None
    assert config["cpc_kwargs"]["optimizer"] == "shared" and config["cpc_kwargs"]["learning_rate"] is None
    own_flags = ["--cpc-optimizer", "own", "--cpc-learning-rate", "1e-4", "--cpc-mode", "separate"]
    own = resolve(parse_args(algo, own_flags), algo)["cpc_kwargs"]
    assert own["optimizer"] == "own" and own["learning_rate"] == 1e-4
    with pytest.raises(ValueError, match="add --cpc-optimizer own"):
        resolve(parse_args(algo, ["--cpc-learning-rate", "1e-4"]), algo)
    with pytest.raises(ValueError, match="add --cpc-mode separate"):
        resolve(parse_args(algo, ["--cpc-optimizer", "own", "--cpc-mode", "joint"]), algo)
    if algo == "a2c":  # auto is joint for A2C
        with pytest.raises(ValueError, match="a2c's mode here is joint"):
            resolve(parse_args(algo, ["--cpc-optimizer", "own"]), algo)
    with pytest.raises(ValueError, match="--features-dim must be a positive integer"):
        resolve(parse_args(algo, ["--features-dim", "0"]), algo)
    assert config["cpc_kwargs"]["projection_dim"] is None
    assert resolve(parse_args(algo, ["--cpc-projection-dim", "64"]), algo)["cpc_kwargs"]["projection_dim"] == 64
    with pytest.raises(ValueError, match="--cpc-projection-dim must be a positive integer"):
        resolve(parse_args(algo, ["--cpc-projection-dim", "0"]), algo)
