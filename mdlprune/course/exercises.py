"""Feedback for the course's "Your turn" tasks: the student writes a key piece of the method, a checker
compares it with the package's on cases chosen to catch the usual mistakes, and says what is wrong.

Each checker returns one line of feedback (``"correct: ..."`` or ``"not yet: ..."``), never raises on a wrong
answer (an exception in the student's code is reported as such), and is tested against right and wrong
implementations in ``tests/test_notebook_helpers.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from ..method.losses import IntersectionLoss
from ..method.metrics import s_score
from ..method.switch import binarize

__all__ = ["check_binarize", "check_intersection_loss", "check_kept_channels", "check_s_score"]


def _run(fn: Callable, *args):
    try:
        return fn(*args), None
    except Exception as e:  # the student's code failed: say how
        return None, f"not yet: your function raised {type(e).__name__}: {e}"


def check_binarize(fn: Callable[[torch.Tensor], torch.Tensor]) -> str:
    """``fn(s)`` must return ``1[s > 0]`` (floats 0.0 / 1.0) and pass the gradient straight through."""
    s = torch.tensor([-0.3, -1e-4, 0.0, 2e-4, 0.7], requires_grad=True)
    b, error = _run(fn, s)
    if error:
        return error
    expected = binarize(s.detach())
    if not isinstance(b, torch.Tensor) or b.shape != s.shape:
        return f"not yet: return a tensor of the switches' shape {tuple(s.shape)}"
    if not torch.equal(b.detach().float(), expected):
        return f"not yet: the forward pass should be 1[s > 0] = {expected.tolist()}, yours gives {b.detach().tolist()} (s = 0 is off)"
    if not b.requires_grad:
        return "not yet: no gradient flows back to s (a comparison alone has none: wrap it in an autograd.Function)"
    upstream = torch.tensor([0.5, -1.0, 2.0, 3.0, -0.25])
    (grad,) = torch.autograd.grad(b, s, upstream)
    if not torch.allclose(grad, upstream):
        return (f"not yet: the backward pass should hand dL/db straight to s ({upstream.tolist()}), yours gives "
                f"{grad.tolist()}: the straight-through estimator ignores the threshold's zero derivative")  # fmt: skip
    return "correct: binary forward, straight-through backward"


def check_intersection_loss(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> str:
    """``fn(masks, beta)`` must equal eq. 5 with λ_PS = 1, value and gradient, including where it is 0."""
    cases = [
        (torch.tensor([[1.0, 1, 0, 1], [1, 0, 1, 1], [1, 1, 0, 1]]), 0.75),
        (torch.tensor([[1.0, 0, 1, 0, 1, 1], [1, 1, 0, 0, 1, 0]]), 0.5),
        (torch.tensor([[1.0, 1, 1, 0], [1, 1, 1, 1]]), 0.5),  # I = 3 > Mβ = 2: the hinge is at 0
    ]
    reference = IntersectionLoss(lambda_ps=1.0)
    for masks, beta in cases:
        mine = masks.clone().requires_grad_(True)
        theirs = masks.clone().requires_grad_(True)
        value, error = _run(fn, mine, beta)
        if error:
            return error
        expected = reference(theirs, beta)
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            return "not yet: return a scalar tensor"
        if not torch.allclose(value.float(), expected, atol=1e-6):
            hint = " (the max(0, ·) is missing?)" if expected.item() == 0 else " (I counts channels on in *every* domain; M is the number of switches)"
            return f"not yet: for β = {beta} and masks {masks.int().tolist()} the loss is {expected.item():.4f}, yours {value.item():.4f}{hint}"
        if value.requires_grad:
            (g_mine,) = torch.autograd.grad(value, mine, allow_unused=True)
            (g_ref,) = torch.autograd.grad(expected, theirs)
            if g_mine is None or not torch.allclose(g_mine, g_ref, atol=1e-6):
                return "not yet: the value is right but the gradient is not: compute it from the masks with differentiable operations (prod, sum)"
        elif expected.requires_grad and expected.item() > 0:
            return "not yet: the loss does not depend on the masks differentiably (no gradient would reach the switches)"
    return "correct: eq. 5, value and gradient"


def check_kept_channels(fn: Callable[[torch.Tensor], torch.Tensor]) -> str:
    """``fn(masks)`` (``(domains, channels)`` booleans) must return the sorted indices pruning keeps: the
    channels some domain uses."""
    cases = [
        torch.tensor([[1, 0, 0, 1, 0], [0, 0, 1, 1, 0]], dtype=torch.bool),
        torch.tensor([[0, 0, 0]], dtype=torch.bool),
        torch.tensor([[1, 1], [1, 1], [0, 1]], dtype=torch.bool),
    ]
    for masks in cases:
        kept, error = _run(fn, masks.clone())
        if error:
            return error
        expected = masks.any(0).nonzero().flatten()
        if not isinstance(kept, torch.Tensor) or kept.dtype not in (torch.int64, torch.int32):
            return "not yet: return a tensor of channel indices (integers), e.g. via .nonzero()"
        if not torch.equal(kept.flatten().long(), expected):
            hint = " (a channel is kept when *any* domain uses it: the union, not the intersection)" \
                if torch.equal(kept.flatten().long(), masks.all(0).nonzero().flatten()) else ""  # fmt: skip
            return f"not yet: for masks {masks.int().tolist()} pruning keeps {expected.tolist()}, yours {kept.flatten().tolist()}{hint}"
    return "correct: the union of the domains' channels, in order"


def _s_variant(acc: Mapping[str, float], baseline: Mapping[str, float], factor: float, clamp: bool) -> float:
    total = 0.0
    for d in acc:
        e, e_max = 100 - acc[d], factor * (100 - baseline[d])
        gap = max(0.0, e_max - e) if clamp else e_max - e
        total += 1000 * (gap / e_max) ** 2
    return total


def check_s_score(fn: Callable[[Mapping[str, float], Mapping[str, float]], float]) -> str:
    """``fn(accuracies, baseline)`` (percentages per domain) must equal eq. 6, including its clamp at 0."""
    baseline = {"a": 90.0, "b": 60.0, "c": 99.0}
    cases = [dict(baseline), {"a": 95.0, "b": 50.0, "c": 97.5}, {"a": 70.0, "b": 100.0, "c": 99.5}]
    values = []
    for acc in cases:
        value, error = _run(fn, dict(acc), dict(baseline))
        if error:
            return error
        if not isinstance(value, (int, float)) and not (isinstance(value, torch.Tensor) and value.numel() == 1):
            return "not yet: return one number"
        values.append(float(value))

    def matches(reference: list[float]) -> bool:
        return all(abs(v - r) <= 1e-6 * max(1.0, r) for v, r in zip(values, reference))

    if matches([s_score(acc, baseline) for acc in cases]):
        return "correct: eq. 6, with its clamp"
    hint = ""
    if matches([_s_variant(acc, baseline, 2.0, clamp=False) for acc in cases]):
        hint = " (a domain worse than twice the baseline's error scores 0: clamp E_max − E at 0 before squaring)"
    elif matches([_s_variant(acc, baseline, 1.0, clamp=True) for acc in cases]):
        hint = " (E_max is *twice* the baseline's error: the baseline itself scores 250 per domain)"
    k = next(i for i, (acc, v) in enumerate(zip(cases, values)) if abs(v - s_score(acc, baseline)) > 1e-6 * max(1.0, s_score(acc, baseline)))
    return f"not yet: for accuracies {cases[k]} against {baseline} S = {s_score(cases[k], baseline):.1f}, yours {values[k]:.1f}{hint}"
