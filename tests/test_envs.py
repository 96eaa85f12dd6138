"""Tests for envs.miniworld: these really render MiniWorld headless through EGL (Mesa llvmpipe)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecTransposeImage

from envs import (
    EGL_INSTALL_HINT,
    EpisodeSuccess,
    check_env_id,
    check_image_observation_space,
    image_observation_key,
    import_miniworld,
    make_env,
    make_vec_env,
    miniworld_env_ids,
)
from envs.miniworld import _explain_import_error

pytestmark = pytest.mark.timeout(120)

OBS_HWC = spaces.Box(0, 255, (60, 80, 3), np.uint8)
OBS_CHW = spaces.Box(0, 255, (3, 60, 80), np.uint8)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env_ids_for_parametrize() -> list[str]:
    # A failing import must fail the test, not break collection of the whole file.
    try:
        return miniworld_env_ids()
    except RuntimeError as exc:
        return [f"import_miniworld failed: {exc}"]


def _obs_image(obs: Any) -> np.ndarray:
    return obs["obs"] if isinstance(obs, dict) else obs


# --------------------------------------------------------------------------------------------------
# import_miniworld / ids


@pytest.mark.skipif(os.environ.get("CPC_RL_DISPLAY") == "1", reason="rendering through a display")
def test_import_miniworld_is_headless_and_idempotent() -> None:
    module = import_miniworld()
    assert import_miniworld() is module
    import pyglet
    import pyglet.gl
    import pyglet.window

    assert pyglet.options["headless"] is True
    assert pyglet.window.Window.__name__ == "HeadlessWindow"
    assert pyglet.gl.Config.__name__ == "HeadlessConfig"
    assert os.environ.get("PYOPENGL_PLATFORM")  # set to "egl" unless the user chose one


def test_miniworld_env_ids_sorted_and_complete() -> None:
    ids = miniworld_env_ids()
    assert ids == sorted(ids)
    assert all(i.startswith("MiniWorld-") for i in ids)
    for expected in ("MiniWorld-OneRoom-v0", "MiniWorld-Sign-v0", "MiniWorld-FourRooms-v0"):
        assert expected in ids
    assert len(ids) >= 20


def _run_python(code: str, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CPC_RL_DISPLAY", "DISPLAY")}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, env=env,
    )


def test_import_miniworld_refuses_display_backend_chosen_earlier() -> None:
    # pyglet.window imported without headless fixes the X11 backend; EGL is then impossible.
    result = _run_python(
        """
        import pyglet
        pyglet.options["shadow_window"] = False  # pick the X11 classes without opening a display
        import pyglet.window
        from envs import import_miniworld
        try:
            import_miniworld()
        except RuntimeError as exc:
            print("RUNTIME_ERROR:", exc)
        else:
            print("NO_ERROR")
        """
    )
    assert "RUNTIME_ERROR:" in result.stdout, result.stdout + result.stderr
    assert "XlibWindow" in result.stdout
    assert "CPC_RL_DISPLAY=1" in result.stdout


def test_import_miniworld_with_display_requested_but_none_explains() -> None:
    result = _run_python(
        """
        from envs import import_miniworld
        try:
            import_miniworld()
        except RuntimeError as exc:
            print("RUNTIME_ERROR:", exc)
        else:
            print("NO_ERROR")
        """,
        CPC_RL_DISPLAY="1",
    )
    assert "RUNTIME_ERROR:" in result.stdout, result.stdout + result.stderr
    assert "DISPLAY" in result.stdout and "unset CPC_RL_DISPLAY" in result.stdout


def test_import_error_messages_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CPC_RL_DISPLAY", raising=False)
    egl = _explain_import_error(ImportError('Library "EGL" not found.'))
    assert isinstance(egl, RuntimeError)
    assert EGL_INSTALL_HINT in str(egl) and "apt-get install libegl1 libgl1-mesa-dri" in str(egl)
    missing = _explain_import_error(ModuleNotFoundError("No module named 'miniworld'", name="miniworld"))
    assert "pip install miniworld" in str(missing)


# --------------------------------------------------------------------------------------------------
# check_env_id / argument validation


def test_unknown_env_id_names_it_lists_known_ids_and_suggests() -> None:
    with pytest.raises(ValueError) as info:
        check_env_id("MiniWorld-FourRoom-v0")
    message = str(info.value)
    assert "'MiniWorld-FourRoom-v0'" in message
    assert "Did you mean 'MiniWorld-FourRooms-v0'?" in message
    assert "MiniWorld-OneRoom-v0" in message  # the list of known ids


def test_make_vec_env_rejects_unknown_id_before_building() -> None:
    with pytest.raises(ValueError, match="MiniWorld-OneRum-v0"):
        make_vec_env("MiniWorld-OneRum-v0", n_envs=1, vec_env="dummy")


def test_registered_non_miniworld_id_is_accepted() -> None:
    check_env_id("CartPole-v1")  # no error: the pixel check happens elsewhere
    check_env_id("MiniWorld-OneRoom-v0")


@pytest.mark.parametrize("n_envs", [0, -1])
def test_n_envs_below_one_raises(n_envs: int) -> None:
    with pytest.raises(ValueError, match="n_envs"):
        make_vec_env("MiniWorld-OneRoom-v0", n_envs=n_envs)


def test_unknown_vec_env_kind_raises() -> None:
    with pytest.raises(ValueError, match="vec_env"):
        make_vec_env("MiniWorld-OneRoom-v0", n_envs=1, vec_env="threads")


# --------------------------------------------------------------------------------------------------
# Vectorised MiniWorld envs


def test_oneroom_vec_env_gives_channel_first_uint8_obs() -> None:
    venv = make_vec_env("MiniWorld-OneRoom-v0", n_envs=2, seed=0, vec_env="dummy")
    try:
        assert isinstance(venv, VecTransposeImage)
        assert venv.num_envs == 2
        assert venv.observation_space == OBS_CHW
        obs = venv.reset()
        assert obs.shape == (2, 3, 60, 80) and obs.dtype == np.uint8
        assert obs.max() > obs.min()  # a rendered image, not a blank buffer
        for _ in range(3):
            obs, rewards, dones, infos = venv.step(np.array([2, 0]))  # move forward / turn left
            assert obs.shape == (2, 3, 60, 80) and obs.dtype == np.uint8
            assert rewards.shape == (2,) and dones.shape == (2,) and len(infos) == 2
    finally:
        venv.close()


def test_sign_vec_env_gives_dict_obs_with_channel_first_image() -> None:
    venv = make_vec_env("MiniWorld-Sign-v0", n_envs=1, seed=0, vec_env="dummy")
    try:
        space = venv.observation_space
        assert isinstance(space, spaces.Dict)
        assert space["obs"] == OBS_CHW
        assert space["goal"] == spaces.Discrete(2)
        obs = venv.reset()
        assert obs["obs"].shape == (1, 3, 60, 80) and obs["obs"].dtype == np.uint8
        assert obs["goal"].shape == (1,)
        obs, _, _, _ = venv.step(np.array([0]))
        assert obs["obs"].shape == (1, 3, 60, 80)
        assert image_observation_key(space) == "obs"
    finally:
        venv.close()


@pytest.mark.parametrize("env_id", _env_ids_for_parametrize())
def test_every_miniworld_env_creates_resets_and_steps(env_id: str) -> None:
    venv = make_vec_env(env_id, n_envs=1, seed=0, vec_env="dummy")
    try:
        space = venv.observation_space
        image_space = space["obs"] if isinstance(space, spaces.Dict) else space
        assert image_space == OBS_CHW, f"{env_id}: {space}"
        check_image_observation_space(space, env_id)
        obs = venv.reset()
        assert _obs_image(obs).shape == (1, 3, 60, 80) and _obs_image(obs).dtype == np.uint8
        obs, rewards, dones, _ = venv.step(np.array([venv.action_space.sample()]))
        assert _obs_image(obs).shape == (1, 3, 60, 80)
        assert rewards.shape == (1,) and dones.shape == (1,)
    finally:
        venv.close()


def test_subproc_vec_env_workers_render_headless() -> None:
    # forkserver workers import miniworld themselves (headless) from the pickled thunk
    venv = make_vec_env("MiniWorld-OneRoom-v0", n_envs=1, seed=0, vec_env="subproc")
    try:
        assert isinstance(venv.venv, SubprocVecEnv)
        obs = venv.reset()
        assert obs.shape == (1, 3, 60, 80) and obs.dtype == np.uint8
        assert obs.max() > obs.min()
        obs, _, _, _ = venv.step(np.array([2]))
        assert obs.shape == (1, 3, 60, 80)
    finally:
        venv.close()


def test_auto_with_one_env_stays_in_process() -> None:
    venv = make_vec_env("MiniWorld-OneRoom-v0", n_envs=1, vec_env="auto")
    try:
        assert isinstance(venv.venv, DummyVecEnv)
    finally:
        venv.close()


def test_same_seed_gives_same_first_observation() -> None:
    def first_obs(seed: int) -> np.ndarray:
        venv = make_vec_env("MiniWorld-OneRoom-v0", n_envs=2, seed=seed, vec_env="dummy")
        try:
            return venv.reset()
        finally:
            venv.close()

    a, b, c = first_obs(7), first_obs(7), first_obs(8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[0], a[1])  # env i is seeded with seed + i
    assert not np.array_equal(a, c)
    # Env 1 of seed 7 and env 0 of seed 8 both use seed 8.
    np.testing.assert_array_equal(a[1], c[0])
    # The first vec observation is exactly what reset(seed=seed + rank) gives.
    raw = gym.make("MiniWorld-OneRoom-v0")
    try:
        raw_obs, _ = raw.reset(seed=7)
    finally:
        raw.close()
    np.testing.assert_array_equal(a[0], np.transpose(raw_obs, (2, 0, 1)))


def test_in_process_envs_render_their_own_maze_as_subprocess_workers_do() -> None:
    # miniworld draws every env's static scene from one shared display list; without
    # give_each_env_its_own_display_list the in-process env 0 draws env 1's maze (the env that reset
    # last). Subprocess workers hold one env each, so their frames are the reference.
    env_id, steps = "MiniWorld-MazeS3Fast-v0", 40
    actions = np.random.default_rng(0).integers(0, 3, size=(steps, 2))
    frames = {}
    for kind in ("dummy", "subproc"):
        venv = make_vec_env(env_id, n_envs=2, seed=0, vec_env=kind)
        try:
            venv.reset()
            frames[kind] = np.stack([venv.step(a)[0] for a in actions])
        finally:
            venv.close()
    assert not np.array_equal(frames["subproc"][:, 0], frames["subproc"][:, 1])
    for t in range(steps):
        np.testing.assert_array_equal(frames["dummy"][t], frames["subproc"][t], err_msg=f"step {t}")


def test_each_env_gets_its_own_display_list_and_close_frees_it() -> None:
    import_miniworld()
    from envs.miniworld import _OWN_LIST_ATTR, give_each_env_its_own_display_list

    give_each_env_its_own_display_list()  # a second call must not wrap the methods twice
    world = sys.modules["miniworld.miniworld"].MiniWorldEnv
    assert world._render_static.__wrapped__.__name__ == "_render_static"
    assert not hasattr(world._render_static.__wrapped__, "__wrapped__")
    envs = [gym.make("MiniWorld-MazeS3Fast-v0").unwrapped for _ in range(2)]
    try:
        for env in envs:
            env.reset(seed=0)
        lists = [env.__dict__[_OWN_LIST_ATTR] for env in envs]
        assert lists[0] != lists[1]
    finally:
        for env in envs:
            env.close()
    assert all(_OWN_LIST_ATTR not in env.__dict__ for env in envs)


# --------------------------------------------------------------------------------------------------
# EpisodeSuccess


class _ScriptedEnv(gym.Env):
    """Tiny env replaying (reward, terminated, truncated, info) tuples, one per step."""

    observation_space = spaces.Box(0, 255, (4, 4, 3), np.uint8)
    action_space = spaces.Discrete(2)

    def __init__(self, script: list[tuple[float, bool, bool, dict]] | None = None) -> None:
        self.script = script or [(0.0, False, False, {}), (0.9, True, False, {})]
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros((4, 4, 3), np.uint8), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward, terminated, truncated, info = self.script[self.t]
        self.t += 1
        return np.zeros((4, 4, 3), np.uint8), reward, terminated, truncated, dict(info)


def _last_info(script: list[tuple[float, bool, bool, dict]]) -> list[dict]:
    env = EpisodeSuccess(_ScriptedEnv(script))
    env.reset(seed=0)
    return [env.step(0)[4] for _ in script]


def test_success_on_rewarded_termination() -> None:
    infos = _last_info([(0.0, False, False, {}), (0.9, True, False, {})])
    assert "is_success" not in infos[0]  # only set when the episode ends
    assert infos[1]["is_success"] is True


def test_no_success_on_truncation() -> None:
    infos = _last_info([(0.0, False, False, {}), (0.0, False, True, {})])
    assert infos[1]["is_success"] is False


@pytest.mark.parametrize("reward", [0.0, -1.0])
def test_no_success_on_unrewarded_termination(reward: float) -> None:
    # e.g. MiniWorld-Sign-v0 terminates with -1 when the agent touches the wrong object
    assert _last_info([(reward, True, False, {})])[0]["is_success"] is False


def test_success_flag_set_by_env_is_kept() -> None:
    assert _last_info([(0.0, False, True, {"is_success": True})])[0]["is_success"] is True


def test_make_env_monitor_records_success(tmp_path: Any) -> None:
    env_id = "CpcRlTest/Scripted-v0"
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=_ScriptedEnv)
    env = make_env(env_id, seed=0, rank=3, monitor_dir=str(tmp_path))()
    try:
        assert isinstance(env, Monitor)
        env.reset()
        env.step(0)
        _, _, terminated, _, info = env.step(0)
        assert terminated and info["is_success"] is True
        assert info["episode"]["r"] == pytest.approx(0.9)
    finally:
        env.close()
    lines = (tmp_path / "3.monitor.csv").read_text().splitlines()
    assert lines[1].split(",") == ["r", "l", "t", "is_success"]
    assert lines[2].split(",")[3] == "True"


# --------------------------------------------------------------------------------------------------
# Image observation checks


def test_check_image_observation_space_accepts_miniworld_spaces() -> None:
    sign = spaces.Dict({"obs": OBS_HWC, "goal": spaces.Discrete(2)})
    for space in (OBS_HWC, OBS_CHW, sign):
        check_image_observation_space(space)
    assert image_observation_key(OBS_HWC) is None
    assert image_observation_key(OBS_CHW) is None
    assert image_observation_key(sign) == "obs"
    gray = spaces.Box(0, 255, (84, 84, 1), np.uint8)
    check_image_observation_space(gray)


def test_check_image_observation_space_rejects_cartpole() -> None:
    space = gym.make("CartPole-v1").observation_space
    with pytest.raises(ValueError) as info:
        check_image_observation_space(space, "CartPole-v1")
    message = str(info.value)
    assert "CartPole-v1 has Box(4,) float32 observations" in message
    assert "CPC's pixel encoder needs uint8 image observations (H, W, C)" in message
    assert "Dict" in message


@pytest.mark.parametrize(
    "space",
    [
        spaces.Box(0.0, 1.0, (60, 80, 3), np.float32),  # float image
        spaces.Box(0, 255, (60, 80, 7), np.uint8),  # 7 channels
        spaces.Dict({"state": spaces.Box(-1, 1, (4,), np.float32), "goal": spaces.Discrete(2)}),
        spaces.Discrete(5),
    ],
)
def test_check_image_observation_space_rejects_non_images(space: spaces.Space) -> None:
    with pytest.raises(ValueError, match="pixel encoder"):
        check_image_observation_space(space)
    with pytest.raises(ValueError, match="pixel encoder"):
        image_observation_key(space)


def test_frame_stacked_images_pass_without_channel_check() -> None:
    stacked = spaces.Box(0, 255, (60, 80, 12), np.uint8)
    with pytest.raises(ValueError):
        check_image_observation_space(stacked)
    check_image_observation_space(stacked, check_channels=False)


def test_cartpole_vec_env_is_not_transposed() -> None:
    venv = make_vec_env("CartPole-v1", n_envs=1, vec_env="dummy")
    try:
        assert isinstance(venv, DummyVecEnv)
        assert venv.reset().shape == (1, 4)
        with pytest.raises(ValueError, match="CartPole-v1 has Box"):
            check_image_observation_space(venv.observation_space, "CartPole-v1")
    finally:
        venv.close()


def test_unknown_id_suggestions_are_case_insensitive_and_cover_other_envs() -> None:
    with pytest.raises(ValueError, match="Did you mean 'MiniWorld-OneRoom-v0'"):
        check_env_id("miniworld-oneroom-v0")
    with pytest.raises(ValueError, match="Did you mean 'CartPole-v1'"):
        check_env_id("CartPol-v1")
