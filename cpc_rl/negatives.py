"""Where InfoNCE negatives come from.

The paper's Table 2 ablates five ways of drawing negatives for a positive ``z_{t+k}`` of sequence ``b``.
All five are one rule here: every sequence belongs to a *group*, negatives are drawn from the latents of
the sequences in the positive's group, either including or excluding the positive's own sequence.

=============================  ==================================  ===============================
strategy                       paper (Table 2)                     groups
=============================  ==================================  ===============================
``"batch"``                    mixed speaker                       one group: the whole batch
``"batch_excluding_own"``      mixed speaker (excl.)               the whole batch, own sequence out
``"same_sequence"``            current sequence only               each sequence alone
``"same_group"``               same speaker                        caller's ``groups`` (e.g. speaker)
``"same_group_excluding_own"`` same speaker (excl.)                caller's ``groups``, own sequence out
=============================  ==================================  ===============================

The positive itself is never a candidate: sampling draws from the candidate set with the positive's
index removed (draw from ``n - 1`` slots and skip over it), and the dense ``"all"`` mode masks it.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Union

import torch

NEGATIVE_STRATEGIES = (
    "batch",
    "batch_excluding_own",
    "same_sequence",
    "same_group",
    "same_group_excluding_own",
)

NegativeCount = Union[int, str]


def check_strategy(strategy: str) -> None:
    """Raise a ``ValueError`` naming ``negatives`` if ``strategy`` is not one of :data:`NEGATIVE_STRATEGIES`."""
    if strategy not in NEGATIVE_STRATEGIES:
        raise ValueError(
            f"negatives={strategy!r} is not a known strategy; choose one of {', '.join(NEGATIVE_STRATEGIES)}"
        )


def check_negative_count(n_negatives: NegativeCount) -> None:
    """Raise a ``ValueError`` naming ``n_negatives`` unless it is a positive int or ``"all"``."""
    if n_negatives == "all":
        return
    if isinstance(n_negatives, bool) or not isinstance(n_negatives, int) or n_negatives < 1:
        raise ValueError(f"n_negatives must be a positive integer or 'all', got {n_negatives!r}")


class Negatives(NamedTuple):
    """Negatives for every target position of a ``(B, T)`` batch.

    ``index`` holds flat indices into the ``B * T`` latents; ``valid`` marks the ones that count
    (a candidate on a padding step is drawn but masked, which keeps sampling vectorised).
    """

    index: torch.Tensor  # (B, T, N) long, flat index b' * T + t'
    valid: torch.Tensor  # (B, T, N) bool


def strategy_groups(strategy: str, batch_size: int, groups: Optional[torch.Tensor], device: torch.device):
    """Return ``(groups, exclude_own)`` for a strategy: the group label of every sequence and whether
    the positive's own sequence is left out of its candidates.

    :param strategy: one of :data:`NEGATIVE_STRATEGIES`
    :param batch_size: number of sequences B
    :param groups: (B,) integer group label per sequence; required by the ``same_group*`` strategies
    :param device: device for the returned labels
    """
    check_strategy(strategy)
    if strategy.startswith("same_group"):
        if groups is None:
            raise ValueError(f"negatives={strategy!r} needs a groups tensor (one label per sequence, e.g. speaker)")
        if groups.shape != (batch_size,):
            raise ValueError(f"groups must have shape ({batch_size},), one label per sequence, got {tuple(groups.shape)}")
        labels = groups.to(device=device, dtype=torch.long)
    elif strategy == "same_sequence":
        labels = torch.arange(batch_size, device=device)
    else:
        labels = torch.zeros(batch_size, dtype=torch.long, device=device)
    return labels, strategy.endswith("excluding_own")


class _GroupLayout(NamedTuple):
    order: torch.Tensor  # (B,) sequence indices sorted by group
    start: torch.Tensor  # (B,) offset of each sequence's group in ``order``
    size: torch.Tensor  # (B,) number of sequences in each sequence's group
    rank: torch.Tensor  # (B,) position of each sequence inside its group


def _group_layout(groups: torch.Tensor) -> _GroupLayout:
    order = torch.argsort(groups, stable=True)
    _, inverse, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    group_start = torch.cumsum(counts, 0) - counts
    start, size = group_start[inverse], counts[inverse]
    position = torch.empty_like(order)
    position[order] = torch.arange(len(groups), device=groups.device)
    return _GroupLayout(order, start, size, position - start)


def candidate_mask(groups: torch.Tensor, exclude_own: bool, time_steps: int) -> torch.Tensor:
    """Which latents may serve as negatives for which sequence, ignoring the positive itself.

    :return: (B, B * T) bool; row b allows the flat latent index ``b' * T + t'``
    """
    allowed = groups[:, None] == groups[None, :]  # (B, B)
    if exclude_own:
        allowed &= ~torch.eye(len(groups), dtype=torch.bool, device=groups.device)
    return allowed.repeat_interleave(time_steps, dim=1)


def sample_negatives(
    strategy: str,
    n_negatives: int,
    valid: torch.Tensor,
    groups: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> Negatives:
    """Draw ``n_negatives`` negatives per target position, uniformly over its candidates, with replacement.

    :param strategy: one of :data:`NEGATIVE_STRATEGIES`
    :param n_negatives: negatives per positive
    :param valid: (B, T) bool, False on padding steps (never usable as negatives)
    :param groups: (B,) group label per sequence, for the ``same_group*`` strategies
    :param generator: optional torch generator for reproducible draws
    """
    check_negative_count(n_negatives)
    batch_size, time_steps = valid.shape
    device = valid.device
    labels, exclude_own = strategy_groups(strategy, batch_size, groups, device)
    layout = _group_layout(labels)
    members = layout.size - 1 if exclude_own else layout.size  # (B,) sequences to draw from
    if bool((members == 0).any()):
        lonely = int(torch.nonzero(members == 0)[0, 0])
        raise ValueError(
            f"negatives={strategy!r}: sequence {lonely} has no other sequence in its group to draw negatives "
            "from; use a larger batch, fewer distinct groups, or a strategy that includes the own sequence"
        )
    # Per target position (b, t): the number of candidate slots, the positive's slot removed.
    slots = members * time_steps - (0 if exclude_own else 1)  # (B,)
    if bool((slots == 0).any()):
        raise ValueError(
            f"negatives={strategy!r}: a sequence of length {time_steps} alone in its group has no negatives"
        )
    uniform = torch.rand(batch_size, time_steps, n_negatives, device=device, generator=generator)
    draw = (uniform * slots[:, None, None]).long().clamp_max(slots[:, None, None] - 1)  # (B, T, N)
    if exclude_own:
        member, step = draw // time_steps, draw % time_steps
        member = member + (member >= layout.rank[:, None, None]).long()  # skip over the own sequence
    else:
        positive_slot = layout.rank[:, None] * time_steps + torch.arange(time_steps, device=device)  # (B, T)
        draw = draw + (draw >= positive_slot[..., None]).long()  # skip over the positive
        member, step = draw // time_steps, draw % time_steps
    sequence = layout.order[layout.start[:, None, None] + member]
    index = sequence * time_steps + step
    return Negatives(index=index, valid=valid.reshape(-1)[index])


def resolve_negative_count(n_negatives: NegativeCount) -> Optional[int]:
    """``None`` for ``"all"`` (dense scoring against every candidate), else the count."""
    check_negative_count(n_negatives)
    return None if n_negatives == "all" else int(n_negatives)
