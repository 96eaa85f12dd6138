"""MiniWorld environments for CPC agents: headless import, id checks, success info, vectorised envs.

MiniWorld renders every observation with OpenGL through pyglet. On a machine without a display
pyglet must use its EGL ("headless") backend, and pyglet picks its backend once, when
``pyglet.gl`` / ``pyglet.window`` are first imported, which ``import miniworld`` does. So
``pyglet.options["headless"] = True`` has to be set *before* miniworld (or anything else that
imports ``pyglet.gl``) is imported. :func:`import_miniworld` does that and is the only place in
this project that should import miniworld; every env thunk calls it, so subprocess workers are
headless too.

Set the environment variable ``CPC_RL_DISPLAY=1`` to render through the normal windowing system
instead (e.g. to watch an agent with ``render_mode="human"`` on a desktop).

Typical use::

    from envs import make_vec_env

    venv = make_vec_env("MiniWorld-OneRoom-v0", n_envs=8, seed=0)
    obs = venv.reset()  # (8, 3, 60, 80) uint8, channel-first for CNNs
"""

from __future__ import annotations

import difflib
import functools
import importlib
import multiprocessing as mp
import os
import sys
from collections.abc import Callable
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecTransposeImage

from cpc_rl.sb3.spaces import check_image_observation_space, image_observation_key

__all__ = [
    "DISPLAY_ENV_VAR",
    "EGL_INSTALL_HINT",
    "EpisodeSuccess",
    "check_env_id",
    "check_image_observation_space",
    "image_observation_key",
    "import_miniworld",
    "make_env",
    "make_vec_env",
    "miniworld_env_ids",
]

#: Environment variable: ``1`` (or ``true``/``yes``) renders through the display instead of EGL.
DISPLAY_ENV_VAR = "CPC_RL_DISPLAY"
#: What to install when EGL (headless OpenGL) is missing.
EGL_INSTALL_HINT = "apt-get install libegl1 libgl1-mesa-dri"
#: Prefix of the ids that ``import miniworld`` registers in gymnasium's registry.
MINIWORLD_PREFIX = "MiniWorld-"
#: Accepted values of ``make_vec_env(vec_env=...)``.
VEC_ENV_KINDS = ("auto", "dummy", "subproc")
#: Start method for SubprocVecEnv workers. "fork" copies the parent's EGL context (importing
#: miniworld creates one: pyglet's hidden shadow window) into the children, and here it hangs (see
#: the measurements below); "forkserver" forks workers from a clean server process that never
#: touched EGL, "spawn" starts fresh interpreters.
SUBPROC_START_METHOD = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"

# "auto" picks SubprocVecEnv only when n_envs > 1 and the process may use at least this many CPU
# cores. Measured 2026-11-22 on this project's 2-core box (Mesa llvmpipe software rendering, which
# here runs single-threaded: user time ~= wall time), MiniWorld-OneRoom-v0, n_envs=4, 500 random
# vec steps, no policy, parent already holding an EGL context:
#   DummyVecEnv                     1131-1226 env-steps/s, start 2.3-2.5 s
#   SubprocVecEnv("forkserver")      976-1710 env-steps/s, start 9.3-15.2 s
#   SubprocVecEnv("spawn")                1605 env-steps/s, start 7.6 s
#   SubprocVecEnv("fork")           hung: no first observation within 60 s
# Subprocesses were 1.4x faster in the first run (box lightly loaded) and 0.86x while another job used
# both cores, and each worker pays ~2 s of EGL/Mesa start-up; during training the policy update also
# wants those cores. On 2 cores "auto" therefore stays in-process; from 4 cores up, where the
# single-threaded renderer leaves cores idle, it uses subprocesses. Pass vec_env="subproc" to force.
AUTO_SUBPROC_MIN_CPUS = 4

_miniworld_imported = False


def _display_requested() -> bool:
    return os.environ.get(DISPLAY_ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on")


def _pyglet_display_backend() -> str | None:
    """
    Name the non-headless backend pyglet has already fixed in this process, if any.

    pyglet chooses ``Window`` / ``Config`` / ``Display`` classes when ``pyglet.window``,
    ``pyglet.gl`` and ``pyglet.canvas`` are imported; afterwards changing
    ``pyglet.options["headless"]`` has no effect.

    :return: e.g. ``"pyglet.window.Window is XlibWindow"``, or None when pyglet is still free to
        go headless (or already is).
    """
    checks = (("pyglet.window", "Window"), ("pyglet.gl", "Config"), ("pyglet.canvas", "Display"))
    for module_name, attr in checks:
        module = sys.modules.get(module_name)
        cls = getattr(module, attr, None) if module is not None else None
        if cls is not None and not cls.__name__.startswith("Headless"):
            return f"{module_name}.{attr} is {cls.__name__}"
    return None


def _explain_import_error(exc: BaseException) -> RuntimeError:
    """
    Turn a failure of ``import miniworld`` into a RuntimeError that says what to do.

    :param exc: the exception raised while importing miniworld
    :return: the error to raise (chained to ``exc`` by the caller)
    """
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "miniworld":
        return RuntimeError(
            f"MiniWorld is not installed ({text}). Install it into this environment with "
            "`pip install miniworld==2.1.0` (or `pip install -e .` in the cpc-rl checkout)."
        )
    if _display_requested():
        return RuntimeError(
            f"Importing miniworld with a display ({DISPLAY_ENV_VAR}=1) failed ({text}). Check that "
            f"DISPLAY is set and reachable (or run under `xvfb-run`), or unset {DISPLAY_ENV_VAR} to "
            f"render headless through EGL."
        )
    if "egl" in text.lower() or isinstance(exc, (ImportError, OSError)):
        return RuntimeError(
            f"MiniWorld could not render headless through EGL ({text}). Install Mesa's EGL and "
            f"OpenGL drivers: `{EGL_INSTALL_HINT}` (as root; scripts/bootstrap.sh does this), or "
            f"set {DISPLAY_ENV_VAR}=1 to render through an X display instead."
        )
    return RuntimeError(
        f"Importing miniworld failed ({text}). It renders headless through EGL; if EGL is missing "
        f"install it with `{EGL_INSTALL_HINT}`, or set {DISPLAY_ENV_VAR}=1 to use an X display."
    )


def import_miniworld() -> Any:
    """
    Import miniworld once, rendering headless through EGL, and register its ``MiniWorld-*`` ids.

    Sets ``pyglet.options["headless"] = True`` (and ``PYOPENGL_PLATFORM=egl`` if unset) before
    the import, unless the environment variable ``CPC_RL_DISPLAY=1`` asks for a display.
    Idempotent: later calls return the already imported module at once.

    :return: the ``miniworld`` module
    :raises RuntimeError: if miniworld is missing, EGL is missing (the message names
        ``apt-get install libegl1 libgl1-mesa-dri``), or pyglet was imported earlier with a
        display-based backend, so it can no longer switch to EGL.
    """
    global _miniworld_imported
    if _miniworld_imported:
        return sys.modules["miniworld"]

    display = _display_requested()
    if not display:
        backend = _pyglet_display_backend()
        if backend is not None:
            raise RuntimeError(
                f"pyglet was already imported with a display backend ({backend}), so MiniWorld "
                "can no longer render headless through EGL. Call envs.import_miniworld() before "
                "anything imports pyglet.gl, pyglet.window or miniworld (e.g. first thing in your "
                f"script), or set {DISPLAY_ENV_VAR}=1 to render through the display."
            )
        # miniworld.opengl also switches pyglet to headless when PYOPENGL_PLATFORM=egl, but only
        # after pyglet.gl has been imported, which is too late; set both here, before the import.
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
        try:
            import pyglet
        except ImportError as exc:
            raise RuntimeError(
                f"pyglet is not installed ({exc}); MiniWorld needs it: `pip install 'pyglet>=1.5,<2'`."
            ) from exc
        pyglet.options["headless"] = True

    try:
        module = importlib.import_module("miniworld")
    except Exception as exc:  # pyglet raises several types (ImportError, NoSuchDisplayException, ...)
        raise _explain_import_error(exc) from exc

    if not display:
        backend = _pyglet_display_backend()
        if backend is not None:  # miniworld was imported earlier by someone else, with a display
            raise RuntimeError(
                f"miniworld was already imported with a display-based pyglet backend ({backend}); "
                "call envs.import_miniworld() before anything else imports miniworld, "
                f"or set {DISPLAY_ENV_VAR}=1."
            )
    give_each_env_its_own_display_list()
    _miniworld_imported = True
    return module


#: The display-list id that miniworld 2.1.0 hard-codes for every env's static scene.
MINIWORLD_STATIC_LIST = 1
#: Instance attribute holding an env's own display-list id (set on its first render).
_OWN_LIST_ATTR = "_cpc_rl_static_list"


def give_each_env_its_own_display_list() -> None:
    """
    Stop MiniWorld envs in one process from rendering each other's static scene.

    miniworld 2.1.0 compiles an env's static scene (its rooms, walls and static entities) into the
    OpenGL display list with the fixed id 1 when the episode starts (``MiniWorldEnv._render_static``,
    called by ``reset``) and draws that list in every frame (``_render_world``). pyglet's contexts
    share display lists, so envs in one process overwrite each other's list: after a reset, every
    env in the process draws the scene of the env that reset last, while its agent and goal stay in
    its own scene. Where the layout is the same in every episode (OneRoom, FourRooms, Sign) the
    frames are right by luck; where it changes (the random mazes of MazeS3Fast and the other Maze
    envs) the agents of a ``DummyVecEnv`` see another env's maze. Training on such frames stayed at
    the random policy's success on MazeS3Fast (docs/results.md). Subprocess workers have one env
    each and were never affected.

    The fix allocates an own list per env (``glGenLists``) and, while that env's
    ``_render_static`` or ``_render_world`` runs, routes miniworld's calls on list 1 to it. It
    wraps those two methods of ``MiniWorldEnv`` and rebinds the three list functions in the
    ``miniworld.miniworld`` module (nothing else in miniworld uses display lists); ``close`` frees
    the list. Idempotent; :func:`import_miniworld` applies it.
    """
    world = importlib.import_module("miniworld.miniworld")
    env_cls = world.MiniWorldEnv
    if getattr(env_cls, "_cpc_rl_own_display_lists", False):
        return
    from pyglet import gl

    active: list[int | None] = [None]  # the list of the env whose render method is running

    def route(list_id: int) -> int:
        return active[0] if list_id == MINIWORLD_STATIC_LIST and active[0] is not None else list_id

    world.glNewList = lambda list_id, mode: gl.glNewList(route(list_id), mode)
    world.glCallList = lambda list_id: gl.glCallList(route(list_id))
    world.glDeleteLists = lambda list_id, count: gl.glDeleteLists(route(list_id), count)

    def with_own_list(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            own = self.__dict__.get(_OWN_LIST_ATTR)
            if own is None:  # the env's GL context is current here: miniworld is about to draw
                own = int(gl.glGenLists(1))
                if own == 0:
                    raise RuntimeError("OpenGL could not allocate a display list for a MiniWorld env "
                                       "(glGenLists returned 0); too many envs open in this process?")
                self.__dict__[_OWN_LIST_ATTR] = own
            previous, active[0] = active[0], own
            try:
                return method(self, *args, **kwargs)
            finally:
                active[0] = previous

        return wrapper

    original_close = env_cls.close

    @functools.wraps(original_close)
    def close(self: Any) -> Any:
        own = self.__dict__.pop(_OWN_LIST_ATTR, None)
        if own is not None:
            self.shadow_window.switch_to()
            gl.glDeleteLists(own, 1)
        return original_close(self)

    env_cls._render_static = with_own_list(env_cls._render_static)
    env_cls._render_world = with_own_list(env_cls._render_world)
    env_cls.close = close
    env_cls._cpc_rl_own_display_lists = True


def miniworld_env_ids() -> list[str]:
    """
    List the MiniWorld environment ids registered in gymnasium (imports miniworld first).

    :return: the sorted ``MiniWorld-*`` ids, e.g. ``["MiniWorld-CollectHealth-v0", ...]``
    """
    import_miniworld()
    return sorted(env_id for env_id in gym.registry if env_id.startswith(MINIWORLD_PREFIX))


def check_env_id(env_id: str) -> None:
    """
    Check that ``env_id`` is registered in gymnasium (after registering the MiniWorld ids).

    Any registered id passes (e.g. ``"CartPole-v1"``); whether its observations suit CPC is checked
    by :func:`check_image_observation_space`.

    :param env_id: a gymnasium environment id such as ``"MiniWorld-OneRoom-v0"``
    :raises ValueError: if the id is unknown; the message lists the MiniWorld ids and suggests the
        closest registered id.
    """
    if not isinstance(env_id, str):
        raise ValueError(f"env_id must be a string such as 'MiniWorld-OneRoom-v0', got {env_id!r}")
    if env_id in gym.registry and not env_id.startswith(MINIWORLD_PREFIX):
        return  # e.g. CartPole-v1: no need to import miniworld (and need EGL) for it
    try:
        import_miniworld()
    except RuntimeError:
        if env_id.startswith(MINIWORLD_PREFIX):
            raise  # the import error says how to fix it
        known: list[str] = []  # an unknown non-MiniWorld id: report that, not the broken MiniWorld install
    else:
        if env_id in gym.registry:
            return
        known = miniworld_env_ids()
    # Prefer a MiniWorld id, then any registered id; compare case-insensitively.
    suggestion = None
    for candidates in (known, list(gym.registry)):
        by_lower = {c.lower(): c for c in candidates}
        close = difflib.get_close_matches(env_id.lower(), list(by_lower), n=1, cutoff=0.6)
        if close:
            suggestion = by_lower[close[0]]
            break
    hint = f" Did you mean {suggestion!r}?" if suggestion else ""
    listed = ", ".join(known) if known else "none (miniworld could not be imported)"
    raise ValueError(f"Unknown environment id {env_id!r}.{hint} Known MiniWorld ids: {listed}.")


class EpisodeSuccess(gym.Wrapper):
    """
    Report whether each episode succeeded, as ``info["is_success"]`` on its last step.

    Success means *the agent reached the goal before the time limit*: the episode ended by
    termination (not truncation) with a positive reward. MiniWorld gives ``1 - 0.2 * t / T`` (> 0)
    for reaching the goal and 0 when the step limit is hit (``truncated=True``); its info dict has
    no success flag. stable-baselines3 reads ``is_success`` from the infos of finished episodes
    to log ``rollout/success_rate``, and :class:`~stable_baselines3.common.monitor.Monitor` records
    it per episode with ``info_keywords=("is_success",)``.

    Caveats: in ``MiniWorld-Sign-v0`` touching a wrong object terminates with reward -1 (a failure,
    correctly); in ``MiniWorld-CollectHealth-v0`` the goal is to survive, which ends by truncation,
    so this rule never counts a success there. An ``is_success`` already in the info (set by the
    env itself) is kept.

    :param env: the environment to wrap
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """
        Step the env and, when the episode ends, set ``info["is_success"]``.

        :param action: the action to take
        :return: observation, reward, terminated, truncated, info
        """
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info = dict(info)
            info.setdefault("is_success", bool(terminated and float(reward) > 0))
        return obs, reward, terminated, truncated, info


def make_env(
    env_id: str,
    seed: int | None = 0,
    rank: int = 0,
    monitor_dir: str | None = None,
    **env_kwargs: Any,
) -> Callable[[], gym.Env]:
    """
    Return a thunk that creates one monitored, seeded environment (for DummyVecEnv/SubprocVecEnv).

    The thunk imports miniworld headless first (so subprocess workers render through EGL too),
    calls ``gym.make(env_id, **env_kwargs)``, wraps the env with :class:`EpisodeSuccess` and
    stable-baselines3's ``Monitor`` (recording ``is_success`` per episode) and seeds the env and
    its action space with ``seed + rank``.

    :param env_id: a registered gymnasium id, e.g. ``"MiniWorld-OneRoom-v0"``
    :param seed: base random seed; the env gets ``seed + rank``. None leaves it unseeded.
    :param rank: index of this env in its vectorised env
    :param monitor_dir: folder for the Monitor's ``<rank>.monitor.csv``; None writes no file
    :param env_kwargs: keyword arguments passed on to ``gym.make`` (e.g. ``max_episode_steps``,
        ``domain_rand=True``)
    :return: a picklable function of no arguments that builds the env
    """

    def _init() -> gym.Env:
        if env_id.startswith(MINIWORLD_PREFIX):
            import_miniworld()
        env = gym.make(env_id, **env_kwargs)
        env = EpisodeSuccess(env)
        monitor_path = None
        if monitor_dir is not None:
            os.makedirs(monitor_dir, exist_ok=True)
            monitor_path = os.path.join(monitor_dir, str(rank))
        env = Monitor(env, filename=monitor_path, info_keywords=("is_success",))
        if seed is not None:
            env.reset(seed=seed + rank)
            env.action_space.seed(seed + rank)
        return env

    return _init


def _auto_use_subproc(n_envs: int) -> bool:
    """
    Decide whether ``vec_env="auto"`` should use subprocesses.

    :param n_envs: number of environments
    :return: True for SubprocVecEnv
    """
    n_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return n_envs > 1 and n_cpus >= AUTO_SUBPROC_MIN_CPUS


def make_vec_env(
    env_id: str,
    n_envs: int = 8,
    seed: int | None = 0,
    vec_env: str = "auto",
    monitor_dir: str | None = None,
    **env_kwargs: Any,
) -> VecEnv:
    """
    Create a vectorised, monitored, seeded env with channel-first image observations.

    Env ``i`` is seeded with ``seed + i``. Image observations (a Box, or the image keys of a Dict
    such as ``MiniWorld-Sign-v0``'s ``"obs"``) are transposed from (H, W, C) to (C, H, W) with
    stable-baselines3's ``VecTransposeImage``, as its CNN policies expect; SB3 then does not wrap
    again.

    :param env_id: a registered gymnasium id, e.g. ``"MiniWorld-OneRoom-v0"``
    :param n_envs: number of parallel environments (>= 1)
    :param seed: base random seed; None leaves the envs unseeded
    :param vec_env: ``"dummy"`` (all envs in this process), ``"subproc"`` (one process per env,
        started with ``SUBPROC_START_METHOD``) or ``"auto"`` (subprocesses when ``n_envs > 1`` and
        at least ``AUTO_SUBPROC_MIN_CPUS`` CPU cores are available, else in-process)
    :param monitor_dir: folder for the per-env Monitor files ``<rank>.monitor.csv``; None writes none
    :param env_kwargs: keyword arguments passed on to ``gym.make``
    :return: the vectorised environment
    :raises ValueError: for an unknown ``env_id``, ``n_envs < 1`` or an unknown ``vec_env``
    """
    check_env_id(env_id)
    if isinstance(n_envs, bool) or not isinstance(n_envs, (int, np.integer)) or n_envs < 1:
        raise ValueError(f"n_envs must be an integer >= 1, got n_envs={n_envs!r}")
    if vec_env not in VEC_ENV_KINDS:
        raise ValueError(f"vec_env must be one of {VEC_ENV_KINDS}, got vec_env={vec_env!r}")

    env_fns = [
        make_env(env_id, seed=seed, rank=i, monitor_dir=monitor_dir, **env_kwargs) for i in range(n_envs)
    ]
    use_subproc = vec_env == "subproc" or (vec_env == "auto" and _auto_use_subproc(n_envs))
    venv: VecEnv
    if use_subproc:
        venv = SubprocVecEnv(env_fns, start_method=SUBPROC_START_METHOD)
    else:
        venv = DummyVecEnv(env_fns)
    if seed is not None:
        # The first venv.reset() then reproduces each env's reset(seed=seed + rank).
        venv.seed(seed)
    if _needs_transpose(venv.observation_space):
        venv = VecTransposeImage(venv)
    return venv


def _needs_transpose(space: spaces.Space) -> bool:
    """
    Whether ``VecTransposeImage`` should wrap a vec env with this observation space (SB3's rule).

    :param space: the vec env's observation space
    :return: True if the space (or a Dict key of it) is a channel-last image
    """
    if isinstance(space, spaces.Dict):
        return any(_is_channel_last_image(s) for s in space.spaces.values())
    return _is_channel_last_image(space)


def _is_channel_last_image(space: spaces.Space) -> bool:
    return is_image_space(space) and not is_image_space_channels_first(space)  # type: ignore[arg-type]
