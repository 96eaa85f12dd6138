"""The CPC auxiliary loss on real SB3 agents training on MiniWorld, headless."""

import numpy as np
import pytest
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.logger import configure

from cpc_rl.sb3 import CPCA2C, CPCPPO, CPCRecurrentPPO
from envs import make_vec_env
from tests.helpers import tensorboard_tags

pytestmark = pytest.mark.integration

SMALL = dict(n_steps=32, seed=0, device="cpu")
PPO_SMALL = dict(SMALL, batch_size=64, n_epochs=2)


@pytest.fixture(scope="module")
def one_room():
    venv = make_vec_env("MiniWorld-OneRoom-v0", n_envs=2, seed=0, vec_env="dummy")
    yield venv
    venv.close()


def collect_one_rollout(model):
    """Fill the rollout buffer without training, as learn() would."""
    _, callback = model._setup_learn(model.n_steps * model.n_envs, None)
    callback.init_callback(model)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)


def encoder_weights(model):
    return [p.detach().clone() for p in model._cpc_encoder().parameters()]


@pytest.mark.parametrize(
    "algorithm, policy, kwargs",
    [
        (CPCPPO, "CnnPolicy", PPO_SMALL),
        (CPCA2C, "CnnPolicy", SMALL),
        (CPCRecurrentPPO, "CnnLstmPolicy", dict(PPO_SMALL, batch_size=32)),
    ],
)
@pytest.mark.parametrize("mode", ["separate", "joint"])
def test_agents_train_with_cpc_and_log_it(one_room, tmp_path, algorithm, policy, kwargs, mode):
    model = algorithm(policy, one_room, cpc_kwargs=dict(steps_ahead=4, mode=mode, n_negatives=16), **kwargs)
    model.set_logger(configure(str(tmp_path), ["tensorboard"]))
    model.learn(2048, log_interval=1)
    tags = tensorboard_tags(tmp_path)
    assert {"cpc/loss", "cpc/accuracy", "cpc/accuracy_k1", "cpc/accuracy_k4"} <= tags
    assert "cpc/accuracy_k5" not in tags
    assert any(tag.startswith("train/") for tag in tags)
    assert np.isfinite(model.cpc_last_loss)


@pytest.mark.parametrize(
    "algorithm, policy, kwargs",
    [(PPO, "CnnPolicy", PPO_SMALL), (A2C, "CnnPolicy", SMALL), (RecurrentPPO, "CnnLstmPolicy", dict(PPO_SMALL, batch_size=32))],
)
def test_agents_without_cpc_log_no_cpc_tags(one_room, tmp_path, algorithm, policy, kwargs):
    model = algorithm(policy, one_room, **kwargs)
    model.set_logger(configure(str(tmp_path), ["tensorboard"]))
    model.learn(2048, log_interval=1)
    tags = tensorboard_tags(tmp_path)
    assert tags and not any(tag.startswith("cpc/") for tag in tags)


def test_cpc_loss_falls_and_moves_the_encoder_on_a_rollout(one_room):
    torch.manual_seed(0)
    model = CPCPPO("CnnPolicy", one_room, cpc_kwargs=dict(steps_ahead=4, n_negatives=16, epochs=25), **PPO_SMALL)
    collect_one_rollout(model)
    with torch.no_grad():
        before = model.cpc_loss().loss.item()
    weights = encoder_weights(model)
    model._cpc_outputs = []
    model._cpc_separate_phase()  # CPC alone: 25 steps on the CPC loss, no RL loss involved
    with torch.no_grad():
        after = model.cpc_loss().loss.item()
    assert after < before - 0.5, (before, after)
    changed = [not torch.equal(a, b) for a, b in zip(weights, encoder_weights(model))]
    assert all(changed)


def test_zero_weight_leaves_the_encoder_alone(one_room):
    model = CPCPPO("CnnPolicy", one_room, cpc_kwargs=dict(steps_ahead=4, weight=0.0, epochs=3), **PPO_SMALL)
    collect_one_rollout(model)
    weights = encoder_weights(model)
    head = [p.detach().clone() for p in model.policy.cpc_head.parameters()]
    model._cpc_outputs = []
    model._cpc_separate_phase()
    assert all(torch.equal(a, b) for a, b in zip(weights, encoder_weights(model)))
    assert all(torch.equal(a, b) for a, b in zip(head, model.policy.cpc_head.parameters()))


def test_cpc_sequences_follow_each_env_in_time_order(one_room):
    model = CPCPPO("CnnPolicy", one_room, cpc_kwargs=dict(steps_ahead=4), **PPO_SMALL)
    collect_one_rollout(model)
    model._cpc_read_rollout()
    rollout = model._cpc_rollout
    buffer = model.rollout_buffer
    assert rollout["observations"].shape == (2, 32, 3, 60, 80)
    assert torch.equal(rollout["observations"][1, 5].cpu(), torch.as_tensor(buffer.observations[5, 1]))
    assert torch.equal(rollout["episode_starts"][0].cpu(), torch.as_tensor(buffer.episode_starts[:, 0]).bool())


def test_save_and_load_keep_the_head_its_config_and_the_optimizer(one_room, tmp_path):
    kwargs = dict(steps_ahead=5, weight=0.5, negatives="same_sequence", n_negatives=8, action_conditioning=True)
    model = CPCPPO("CnnPolicy", one_room, cpc_kwargs=kwargs, **PPO_SMALL)
    model.learn(64)
    model.save(tmp_path / "agent.zip")
    loaded = CPCPPO.load(tmp_path / "agent.zip", env=one_room, device="cpu")
    assert loaded.cpc_kwargs == kwargs
    assert loaded.policy.cpc_head.config.negatives == "same_sequence"
    for (name, a), (_, b) in zip(model.policy.state_dict().items(), loaded.policy.state_dict().items()):
        assert torch.equal(a, b), name
    assert len(loaded.policy.optimizer.param_groups) == 2
    import json
    import zipfile

    saved = json.loads(zipfile.ZipFile(tmp_path / "agent.zip").read("data"))
    assert "cpc_kwargs" in saved and not any(key.startswith("_cpc_") or key == "cpc_config" for key in saved)
    head_param = next(loaded.policy.cpc_head.parameters())
    assert "exp_avg" in loaded.policy.optimizer.state[head_param]
    loaded.learn(64, reset_num_timesteps=False)
    assert loaded.num_timesteps == model.num_timesteps + 64


def test_projection_head_trains_with_the_encoder_and_survives_save_and_load(one_room, tmp_path):
    torch.manual_seed(0)
    kwargs = dict(steps_ahead=4, n_negatives=16, projection_dim=32)
    model = CPCPPO("CnnPolicy", one_room, cpc_kwargs=kwargs, **PPO_SMALL)
    projection = model.policy.cpc_head.projection
    assert projection[-1].out_features == 32 and model.policy.cpc_head.context.gru.input_size == 32
    assert projection[0].in_features == model._cpc_encoder().features_dim
    in_optimizer = {id(p) for group in model.policy.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in in_optimizer for p in projection.parameters())
    collect_one_rollout(model)
    weights, projection_before = encoder_weights(model), [p.detach().clone() for p in projection.parameters()]
    model._cpc_outputs = []
    model._cpc_separate_phase()
    assert all(not torch.equal(a, b) for a, b in zip(weights, encoder_weights(model)))  # through the projection
    assert all(not torch.equal(a, b) for a, b in zip(projection_before, projection.parameters()))
    model.save(tmp_path / "agent.zip")
    loaded = CPCPPO.load(tmp_path / "agent.zip", env=one_room, device="cpu")
    assert loaded.cpc_kwargs == kwargs
    for a, b in zip(projection.parameters(), loaded.policy.cpc_head.projection.parameters()):
        assert torch.equal(a, b)


def adam_steps(optimizer, param):
    state = optimizer.state.get(param, {})
    return int(state["step"]) if "step" in state else 0


def test_shared_optimizer_counts_cpc_steps_in_the_policy_adam(one_room):
    """The default: the CPC phase steps the policy's Adam, whose state for the encoder counts both updates."""
    model = CPCPPO("CnnPolicy", one_room, cpc_kwargs=dict(steps_ahead=4, n_negatives=16, epochs=3), **PPO_SMALL)
    model.learn(64)  # one rollout of 2 x 32: PPO takes 2 epochs x 1 minibatch, then CPC 3 epochs x 1 chunk
    encoder_param = next(model._cpc_encoder().parameters())
    assert model.cpc_optimizer is None
    assert adam_steps(model.policy.optimizer, encoder_param) == 2 + 3
    assert adam_steps(model.policy.optimizer, next(model.policy.cpc_head.parameters())) == 3


def test_own_optimizer_keeps_the_cpc_steps_out_of_the_policy_adam(one_room, tmp_path):
    model = CPCPPO("CnnPolicy", one_room, cpc_kwargs=dict(steps_ahead=4, n_negatives=16, epochs=3, optimizer="own",
                                                          learning_rate=1e-4), **PPO_SMALL)
    head = list(model.policy.cpc_head.parameters())
    encoder = list(model._cpc_encoder().parameters())
    policy_params = {id(p) for group in model.policy.optimizer.param_groups for p in group["params"]}
    own_params = [p for group in model.cpc_optimizer.param_groups for p in group["params"]]
    assert not policy_params & {id(p) for p in head}
    assert {id(p) for p in own_params} == {id(p) for p in encoder + head}
    assert type(model.cpc_optimizer) is type(model.policy.optimizer)
    weights = encoder_weights(model)
    model.learn(64)
    assert adam_steps(model.policy.optimizer, encoder[0]) == 2  # the RL steps alone
    assert adam_steps(model.cpc_optimizer, encoder[0]) == 3 and adam_steps(model.cpc_optimizer, head[0]) == 3
    assert all(group["lr"] == 1e-4 for group in model.cpc_optimizer.param_groups)
    assert not any(torch.equal(a, b) for a, b in zip(weights, encoder_weights(model)))
    assert model.logger.name_to_value["cpc/learning_rate"] == 1e-4  # recorded, dumped with the next iteration

    model.save(tmp_path / "agent.zip")
    loaded = CPCPPO.load(tmp_path / "agent.zip", env=one_room, device="cpu")
    loaded_encoder = next(loaded._cpc_encoder().parameters())
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(loaded.cpc_optimizer.state[loaded_encoder][key], model.cpc_optimizer.state[encoder[0]][key])
    assert adam_steps(loaded.cpc_optimizer, loaded_encoder) == 3 and adam_steps(loaded.policy.optimizer, loaded_encoder) == 2
    loaded.learn(64, reset_num_timesteps=False)
    assert adam_steps(loaded.cpc_optimizer, loaded_encoder) == 6


def test_own_optimizer_without_a_learning_rate_follows_the_agent_schedule(one_room):
    model = CPCPPO("CnnPolicy", one_room, learning_rate=lambda progress: 1e-3 * progress,
                   cpc_kwargs=dict(steps_ahead=4, n_negatives=16, optimizer="own"), **PPO_SMALL)
    assert model.cpc_optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    collect_one_rollout(model)
    model._current_progress_remaining = 0.25  # as learn() sets it, a quarter of the budget left
    model._cpc_outputs = []
    model._cpc_separate_phase()
    assert model.cpc_optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.25)


def test_own_optimizer_needs_the_separate_phase(one_room):
    with pytest.raises(ValueError, match=r"optimizer='own' needs the separate CPC phase.*auto, for CPCA2C.*mode='separate'"):
        CPCA2C("CnnPolicy", one_room, cpc_kwargs=dict(steps_ahead=4, optimizer="own"), **SMALL)
    with pytest.raises(ValueError, match="mode is 'joint'"):
        CPCPPO("CnnPolicy", one_room, cpc_kwargs=dict(steps_ahead=4, optimizer="own", mode="joint"), **PPO_SMALL)
    model = CPCA2C("CnnPolicy", one_room, cpc_kwargs=dict(steps_ahead=4, optimizer="own", mode="separate"), **SMALL)
    assert model.cpc_optimizer is not None


def test_dict_observations_encode_the_image_key(tmp_path):
    venv = make_vec_env("MiniWorld-Sign-v0", n_envs=2, seed=0, vec_env="dummy")
    try:
        model = CPCPPO("MultiInputPolicy", venv, cpc_kwargs=dict(steps_ahead=4, n_negatives=16), **PPO_SMALL)
        assert model._cpc_image_key == "obs"
        assert model._cpc_encoder() is model.policy.features_extractor.extractors["obs"]
        model.set_logger(configure(str(tmp_path), ["tensorboard"]))
        model.learn(2 * 64)
        assert "cpc/loss" in tensorboard_tags(tmp_path)
    finally:
        venv.close()


def test_non_image_observations_are_refused_with_the_fix():
    import gymnasium as gym

    with pytest.raises(ValueError, match="pixel encoder needs uint8 image observations"):
        CPCPPO("MlpPolicy", gym.make("CartPole-v1"), cpc_kwargs=dict(steps_ahead=4), n_steps=32)


def test_horizon_not_shorter_than_the_rollout_is_refused(one_room):
    with pytest.raises(ValueError, match="steps_ahead=12 must be shorter than n_steps=5"):
        CPCA2C("CnnPolicy", one_room, n_steps=5, cpc_kwargs=dict(steps_ahead=12))


@pytest.mark.parametrize("kwargs, name", [
    (dict(horizon=3), "horizon"), (dict(mode="both"), "mode"), (dict(weight=-1.0), "weight"),
    (dict(optimizer="sgd"), "optimizer='sgd' is not known"), (dict(learning_rate=1e-4), "add optimizer='own'"),
    (dict(optimizer="own", learning_rate=0.0), "learning_rate must be a positive number"),
    (dict(projection_dim=0), "projection_dim must be a positive integer"),
])
def test_bad_cpc_kwargs_are_named(one_room, kwargs, name):
    with pytest.raises(ValueError, match=name):
        CPCPPO("CnnPolicy", one_room, cpc_kwargs=kwargs, **PPO_SMALL)


def test_auto_mode_is_joint_for_a2c_and_separate_for_ppo(one_room):
    assert CPCA2C("CnnPolicy", one_room, cpc_kwargs=dict(steps_ahead=4), **SMALL).cpc_mode == "joint"
    assert CPCPPO("CnnPolicy", one_room, cpc_kwargs=dict(steps_ahead=4), **PPO_SMALL).cpc_mode == "separate"


def test_a2c_joint_mode_reuses_the_update_features_and_adds_the_cpc_gradient(one_room):
    """The update's shuffled features are put back in time order, the features pass through unchanged, and
    the encoder gradient is the RL gradient plus weight x the CPC gradient."""
    weight = 0.7
    model = CPCA2C("CnnPolicy", one_room, cpc_kwargs=dict(steps_ahead=4, n_negatives=16, weight=weight), **SMALL)
    assert model._cpc_shared_forward
    collect_one_rollout(model)
    model._cpc_read_rollout()
    frames = model._cpc_rollout["observations"].reshape(64, 3, 60, 80)  # entry i: env i // 32, step i % 32
    shuffled = np.random.RandomState(0).permutation(64)
    parameters = list(model._cpc_encoder().parameters())

    def encoder_gradients(capture):
        model.policy.zero_grad()
        model._cpc_capture, model._cpc_batch_indices, model._cpc_outputs = capture, shuffled, []
        torch.manual_seed(1)  # the same negatives in both CPC evaluations
        features = model._cpc_latents(frames[shuffled][None])[0]  # as the update encodes its batch
        (1e-3 * features.square().sum()).backward()  # a stand-in for the RL loss, on the scale of the CPC term
        return [p.grad.clone() for p in parameters], features.detach()

    joint, joint_features = encoder_gradients(True)
    assert len(model._cpc_outputs) == 1
    plain, plain_features = encoder_gradients(False)
    assert torch.equal(joint_features, plain_features)
    model.policy.zero_grad()
    torch.manual_seed(1)
    (weight * model.cpc_loss().loss).backward()  # CPC on the rollout in time order, computed directly
    for j, p, c in zip(joint, plain, [q.grad for q in parameters]):
        assert torch.allclose(j, p + c, rtol=1e-4, atol=1e-7)
        assert not torch.allclose(j, p, rtol=1e-4, atol=1e-7)  # the CPC part is not negligible
