"""Which domains each step of a round trains on (METHOD §5).

A round gives every domain one epoch of its training data. The paper trains the domains simultaneously in
*round-robin*: one domain's whole epoch after the other, in an order shuffled every round. It reports that
the alternatives changed results little; both are here:

* ``"round_robin"``: ``[(d0,), (d0,), …, (d1,), …]``, one domain's epoch at a time;
* ``"alternate"``: one batch of each domain in turn, ``[(d0,), (d1,), …, (d0,), …]``, until each is done;
* ``"mixed"``: every step holds a batch of every domain that has batches left, ``[(d0, d1, …), …]``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["SCHEDULES", "round_plan"]

SCHEDULES = ("round_robin", "alternate", "mixed")


def round_plan(schedule: str, lengths: Sequence[int], order: Sequence[int]) -> list[tuple[int, ...]]:
    """The steps of one round: each step is the tuple of domains whose next batch it trains on.

    Args:
        schedule: one of :data:`SCHEDULES`.
        lengths: batches per epoch of every domain.
        order: the domains in this round's order (a permutation of ``range(len(lengths))``).
    """
    if schedule == "round_robin":
        return [(d,) for d in order for _ in range(lengths[d])]
    if schedule == "alternate":
        left, plan = list(lengths), []
        while any(left):
            for d in order:
                if left[d]:
                    plan.append((d,))
                    left[d] -= 1
        return plan
    if schedule == "mixed":
        return [tuple(d for d in order if k < lengths[d]) for k in range(max(lengths))]
    raise ValueError(f"unknown schedule {schedule!r}: choose one of {list(SCHEDULES)}")
