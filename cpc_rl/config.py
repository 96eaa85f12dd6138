"""Configuration dataclasses; each round-trips through JSON and is saved beside every checkpoint."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Union

from cpc_rl.negatives import check_negative_count, check_strategy


def _from_dict(cls, data: Dict[str, Any]):
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} expects a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known fields: {sorted(known)}")
    return cls(**data)


@dataclass
class CPCHeadConfig:
    """Everything of CPC except the encoder: context GRU, predictors and loss.

    :param steps_ahead: K, predict ``z_{t+1} .. z_{t+K}``
    :param context_dim: size of the GRU context ``c_t``
    :param context_layers: stacked GRU layers
    :param negatives: negative-sampling strategy (see :mod:`cpc_rl.negatives`)
    :param n_negatives: negatives per positive, or ``"all"``
    :param temperature: score scaling (None: none, as in the paper)
    :param action_conditioning: CPC|Action, predict the future given the actions taken in between
    :param action_embed_dim: action embedding size for CPC|Action
    :param projection_dim: None: CPC works on the encoder's ``z_t`` itself, as in the paper; N: on an MLP's
        projection of it to size N (Linear, ReLU, Linear; hidden size that of ``z_t``), so that CPC shapes the
        encoder only through the projection
    """

    steps_ahead: int = 12
    context_dim: int = 256
    context_layers: int = 1
    negatives: str = "batch"
    n_negatives: Union[int, str] = 128
    temperature: Optional[float] = None
    action_conditioning: bool = False
    action_embed_dim: int = 32
    projection_dim: Optional[int] = None

    def __post_init__(self) -> None:
        optional = {"projection_dim"}
        for name in ("steps_ahead", "context_dim", "context_layers", "action_embed_dim", "projection_dim"):
            value = getattr(self, name)
            if value is None and name in optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                or_none = " or None" if name in optional else ""
                raise ValueError(f"{name} must be a positive integer{or_none}, got {value!r}")
        check_strategy(self.negatives)
        check_negative_count(self.n_negatives)
        if self.temperature is not None and not self.temperature > 0:
            raise ValueError(f"temperature must be positive or None, got {self.temperature!r}")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "CPCHeadConfig":
        return _from_dict(cls, data)


@dataclass
class EncoderConfig:
    """A registered encoder (see :data:`cpc_rl.encoders.ENCODERS`) and its keyword arguments.

    :param name: ``pixel``, ``audio``, ``patch`` or ``sentence``
    :param kwargs: constructor arguments of that encoder
    """

    name: str = "pixel"
    kwargs: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "EncoderConfig":
        return _from_dict(cls, data)


@dataclass
class CPCConfig:
    """A whole CPC model: encoder plus head.

    :param encoder: the encoder
    :param head: context, predictors and loss
    """

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    head: CPCHeadConfig = field(default_factory=CPCHeadConfig)

    def to_dict(self) -> Dict[str, Any]:
        return {"encoder": self.encoder.to_dict(), "head": self.head.to_dict()}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "CPCConfig":
        if not isinstance(data, dict) or set(data) - {"encoder", "head"}:
            raise ValueError(f"CPCConfig expects an object with 'encoder' and 'head', got {data!r:.200}")
        return cls(
            encoder=EncoderConfig.from_dict(data.get("encoder", {})),
            head=CPCHeadConfig.from_dict(data.get("head", {})),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "CPCConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"CPC config is not valid JSON: {error}") from error
        return cls.from_dict(data)

    def save(self, path: Union[str, Path]) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: Union[str, Path]) -> "CPCConfig":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no CPC config at {path}")
        return cls.from_json(path.read_text())
