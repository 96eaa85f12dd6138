"""Which part of an observation space CPC's pixel encoder reads."""

from __future__ import annotations

from typing import Optional

from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space


def image_observation_key(
    space: spaces.Space, check_channels: bool = True, image_key: Optional[str] = None
) -> Optional[str]:
    """
    Find the image in an observation space, as CPC's pixel encoder needs one.

    :param space: an observation space: a uint8 image Box of shape (H, W, C) or (C, H, W) with C in
        1, 3, 4 and bounds [0, 255], or a Dict with such a key
    :param check_channels: require C in (1, 3, 4); pass False for frame-stacked images
    :param image_key: for a Dict with several image keys, the one to use
    :return: None when ``space`` itself is the image, else the Dict key holding the image
    :raises ValueError: if the space holds no image (see :func:`check_image_observation_space`), or a Dict
        holds several and ``image_key`` does not pick one of them
    """
    if is_image_space(space, check_channels=check_channels):
        return None
    if isinstance(space, spaces.Dict):
        keys = [k for k, sub in space.spaces.items() if is_image_space(sub, check_channels=check_channels)]
        if image_key is not None:
            if image_key not in keys:
                raise ValueError(f"image_key={image_key!r} is not an image key of {space}; its image keys: {keys}")
            return image_key
        if len(keys) > 1:
            raise ValueError(f"{space} has several image keys {keys}; pick the one CPC encodes with image_key=...")
        if keys:
            return keys[0]
    raise ValueError(_not_image_message(space))


def _not_image_message(space: spaces.Space, env_id: Optional[str] = None) -> str:
    what = f"{env_id} has" if env_id else "The environment has"
    if isinstance(space, spaces.Box):
        described = f"Box{tuple(space.shape)} {space.dtype}"
    else:
        described = str(space)
    return (
        f"{what} {described} observations; CPC's pixel encoder needs uint8 image observations "
        "(H, W, C) or (C, H, W) with 1, 3 or 4 channels and values in [0, 255], or a Dict with "
        "such an image key."
    )


def check_image_observation_space(
    space: spaces.Space, env_id: Optional[str] = None, check_channels: bool = True
) -> None:
    """
    Check that an observation space holds pixel images that CPC's encoder can read.

    :param space: the observation space to check (of an env or a vec env)
    :param env_id: the env's id, to name it in the error message
    :param check_channels: require 1, 3 or 4 channels; pass False for frame-stacked images
    :raises ValueError: if ``space`` is neither a uint8 image Box nor a Dict with an image key, e.g.
        "CartPole-v1 has Box(4,) float32 observations; CPC's pixel encoder needs uint8 image
        observations (H, W, C) ..."
    """
    try:
        image_observation_key(space, check_channels=check_channels)
    except ValueError:
        raise ValueError(_not_image_message(space, env_id)) from None
