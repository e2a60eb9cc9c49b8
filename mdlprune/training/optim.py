"""Lazy Adam for the switches: an element moves only in the steps where it received a gradient.

All domains' switches of a layer live in one ``(N, C)`` parameter. When a batch of domain d is trained without
the sharing loss (BA²), the other domains' rows get an exact zero gradient, yet plain Adam keeps moving them on
its momentum for ~10 more steps: enough to flip switches that sit near the threshold, *after* their domain's
BatchNorm statistics were collected. Lazy Adam (the semantics of TensorFlow's LazyAdam and of PyTorch's
``SparseAdam``, for dense tensors) updates an element's moments, step count and value only where its gradient
is non-zero, as if every domain had its own optimizer. With the sharing loss, the other domains' switches get
real gradients and move as they should.
"""

from __future__ import annotations

import torch

__all__ = ["LazyAdam"]


class LazyAdam(torch.optim.Optimizer):
    """Adam whose per-element state advances only where the gradient is non-zero (see the module docstring).

    Bias correction uses each element's own step count, so an element that was skipped resumes exactly where
    a per-domain Adam would.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    state["steps"] = torch.zeros_like(p)
                m, v, t = state["exp_avg"], state["exp_avg_sq"], state["steps"]
                touched = g != 0
                t.add_(touched.to(t.dtype))
                m.copy_(torch.where(touched, b1 * m + (1 - b1) * g, m))
                v.copy_(torch.where(touched, b2 * v + (1 - b2) * g * g, v))
                tc = t.clamp(min=1)
                update = (m / (1 - b1**tc)) / ((v / (1 - b2**tc)).sqrt() + group["eps"])
                p.sub_(torch.where(touched, group["lr"] * update, torch.zeros_like(update)))
        return loss
