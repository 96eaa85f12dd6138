"""Shared helpers for the integration tests."""

from pathlib import Path
from typing import Set

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def tensorboard_tags(log_dir: Path) -> Set[str]:
    """Every scalar tag in the TensorBoard event files under ``log_dir``."""
    tags: Set[str] = set()
    for events in Path(log_dir).rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    return tags
