"""Encoders ``g_enc``: observations to latents ``z_t``.

One contract: ``forward`` maps ``(B, T, *input)`` to ``(B, T, out_dim)``; every encoder exposes ``out_dim``.
The audio encoder is the one exception to the time axis: its input is the raw waveform ``(B, L)`` and its
strided convolutions down-sample time by 160, so it returns ``(B, L // 160, out_dim)``.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F


def _check_rank(x: torch.Tensor, expected: int, name: str, layout: str) -> None:
    if x.dim() != expected:
        raise ValueError(f"{name} must have rank {expected} {layout}, got shape {tuple(x.shape)}")


class SequenceEncoder(nn.Module):
    """Applies a per-step encoder to every step of a ``(B, T, *input)`` batch.

    Subclasses set ``input_rank`` (the rank of one step) and implement :meth:`encode_steps` on ``(N, *input)``.
    """

    input_rank: int
    input_layout: str
    out_dim: int

    def encode_steps(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_rank(x, 2 + self.input_rank, "x", f"(B, T, {self.input_layout})")
        batch, steps = x.shape[:2]
        z = self.encode_steps(x.reshape(batch * steps, *x.shape[2:]))
        return z.reshape(batch, steps, self.out_dim)


class PixelEncoder(SequenceEncoder):
    """Convolutional encoder for RL frames (the DQN "Nature" network), uint8 pixels in.

    :param observation_shape: shape of one frame, ``(C, H, W)`` (or ``(H, W, C)`` with ``channels_last``)
    :param out_dim: size of the latent ``z_t``
    :param channels_last: frames arrive as ``(H, W, C)`` (gymnasium's layout) and are transposed inside
    """

    input_rank = 3
    input_layout = "C, H, W"

    def __init__(self, observation_shape: Sequence[int], out_dim: int = 256, channels_last: bool = False):
        super().__init__()
        if len(observation_shape) != 3:
            raise ValueError(f"observation_shape must be (C, H, W), got {tuple(observation_shape)}")
        self.channels_last = channels_last
        channels, height, width = (
            (observation_shape[2], observation_shape[0], observation_shape[1]) if channels_last else observation_shape
        )
        self.frame_shape = (int(channels), int(height), int(width))
        self.convs = nn.Sequential(
            nn.Conv2d(channels, 32, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, *self.frame_shape)).shape[1]
        self.linear = nn.Sequential(nn.Linear(flat, out_dim), nn.ReLU())
        self.out_dim = out_dim

    def encode_steps(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        if tuple(x.shape[1:]) != self.frame_shape:
            raise ValueError(f"frames must be {self.frame_shape} (C, H, W), got {tuple(x.shape[1:])}")
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        return self.linear(self.convs(x))


class ChannelNorm(nn.Module):
    """Layer norm over channels at each time step: unlike batch norm, it shares no statistics across time,
    so the encoder cannot leak the future into ``z_t``."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, L)
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


AUDIO_KERNELS = (10, 8, 4, 4, 4)
AUDIO_STRIDES = (5, 4, 2, 2, 2)
AUDIO_PADDINGS = (3, 2, 1, 1, 1)


class AudioEncoder(nn.Module):
    """The paper's strided 1-D convolutional encoder on raw 16 kHz waveforms.

    Kernel sizes 10, 8, 4, 4, 4 with strides 5, 4, 2, 2, 2 down-sample by 160 (one latent per 10 ms).

    :param hidden_dim: channels of every convolution (512 in the paper)
    :param out_dim: size of ``z_t`` (512 in the paper)
    """

    def __init__(self, hidden_dim: int = 512, out_dim: int = 512):
        super().__init__()
        layers = []
        in_channels = 1
        for i, (kernel, stride, padding) in enumerate(zip(AUDIO_KERNELS, AUDIO_STRIDES, AUDIO_PADDINGS)):
            channels = out_dim if i == len(AUDIO_KERNELS) - 1 else hidden_dim
            layers += [nn.Conv1d(in_channels, channels, kernel, stride, padding), ChannelNorm(channels), nn.ReLU()]
            in_channels = channels
        self.convs = nn.Sequential(*layers)
        self.out_dim = out_dim
        self.downsampling = 1
        for stride in AUDIO_STRIDES:
            self.downsampling *= stride

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """:param waveform: ``(B, L)`` or ``(B, 1, L)`` samples; returns ``(B, L // 160, out_dim)``."""
        if waveform.dim() == 2:
            waveform = waveform[:, None]
        _check_rank(waveform, 3, "waveform", "(B, L) or (B, 1, L)")
        if waveform.shape[1] != 1:
            raise ValueError(f"waveform must be mono (B, 1, L), got {tuple(waveform.shape)}")
        if waveform.shape[-1] < self.downsampling:
            raise ValueError(f"waveform has {waveform.shape[-1]} samples, fewer than one latent step ({self.downsampling})")
        return self.convs(waveform.float()).transpose(1, 2)


def image_to_patch_sequences(images: torch.Tensor, patch_size: int, stride: int) -> Tuple[torch.Tensor, int]:
    """Cut images into a grid of overlapping patches and read each grid column top to bottom.

    As in the paper's image experiments, the rows of patches are the time axis: the context of a row
    predicts the patches of the rows below it.

    :param images: ``(N, C, H, W)``
    :param patch_size: side of a square patch in pixels
    :param stride: step between patches (``patch_size // 2`` for the paper's 50% overlap)
    :return: ``(N * columns, rows, C, patch_size, patch_size)`` and the number of columns
    """
    _check_rank(images, 4, "images", "(N, C, H, W)")
    if patch_size > min(images.shape[-2:]):
        raise ValueError(f"patch_size={patch_size} is larger than the images {tuple(images.shape[-2:])}")
    patches = images.unfold(2, patch_size, stride).unfold(3, patch_size, stride)  # (N, C, rows, cols, p, p)
    n, channels, rows, cols = patches.shape[:4]
    patches = patches.permute(0, 3, 2, 1, 4, 5)  # (N, cols, rows, C, p, p)
    return patches.reshape(n * cols, rows, channels, patch_size, patch_size), cols


class PatchEncoder(SequenceEncoder):
    """Small residual CNN mapping image patches ``(B, T, C, p, p)`` to ``(B, T, out_dim)``.

    Pair it with :func:`image_to_patch_sequences` to read an image as sequences of patch rows.

    :param in_channels: image channels
    :param out_dim: size of ``z_t``
    :param width: channels of the convolutions
    """

    input_rank = 3
    input_layout = "C, p, p"

    def __init__(self, in_channels: int = 3, out_dim: int = 256, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU())
        self.block = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1)
        )
        self.head = nn.Linear(width, out_dim)
        self.out_dim = out_dim

    def encode_steps(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        h = self.stem(x)
        h = F.relu(h + self.block(h))
        return self.head(h.mean(dim=(2, 3)))


class SentenceEncoder(SequenceEncoder):
    """Sentence embedding from word embeddings: 1-D convolution over the words, mean over the real ones.

    Input ``(B, T, W)`` token ids (one sentence per step, ``padding_idx`` pads words), output ``(B, T, out_dim)``.

    :param vocab_size: number of token ids
    :param embed_dim: word embedding size
    :param out_dim: sentence embedding size ``z_t``
    :param padding_idx: the id used for padding words
    """

    input_rank = 1
    input_layout = "W"

    def __init__(self, vocab_size: int, embed_dim: int = 128, out_dim: int = 256, padding_idx: int = 0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.conv = nn.Conv1d(embed_dim, out_dim, kernel_size=3, padding=1)
        self.padding_idx = padding_idx
        self.out_dim = out_dim

    def encode_steps(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"tokens must be integer ids, got dtype {tokens.dtype}")
        words = (tokens != self.padding_idx).float()  # (N, W)
        h = F.relu(self.conv(self.embedding(tokens).transpose(1, 2)))  # (N, D, W)
        return (h * words[:, None]).sum(-1) / words.sum(-1, keepdim=True).clamp_min(1.0)


ENCODERS = {
    "pixel": PixelEncoder,
    "audio": AudioEncoder,
    "patch": PatchEncoder,
    "sentence": SentenceEncoder,
}


def build_encoder(name: str, **kwargs) -> nn.Module:
    """Build a registered encoder by name (``pixel``, ``audio``, ``patch``, ``sentence``)."""
    if name not in ENCODERS:
        raise ValueError(f"encoder={name!r} is not known; choose one of {', '.join(ENCODERS)}")
    return ENCODERS[name](**kwargs)
