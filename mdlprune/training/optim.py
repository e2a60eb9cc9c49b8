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
        """One step over all parameters of a group at once (``torch._foreach_*``: a few fused kernels on CUDA
        instead of a score per parameter); the arithmetic is the per-element Adam update of the class docstring."""
        loss = None if closure is None else closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if not self.state[p]:
                    self.state[p].update(exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p),
                                         steps=torch.zeros_like(p))  # fmt: skip
            m, v, t = ([self.state[p][k] for p in params] for k in ("exp_avg", "exp_avg_sq", "steps"))
            g = [p.grad for p in params]
            touched = [gi != 0 for gi in g]
            on = [x.to(ti.dtype) for x, ti in zip(touched, t)]  # 1.0 where touched, else 0.0
            torch._foreach_add_(t, on)
            m_new = torch._foreach_add(torch._foreach_mul(m, b1), torch._foreach_mul(g, 1 - b1))
            v_new = torch._foreach_add(torch._foreach_mul(v, b2), torch._foreach_mul(torch._foreach_mul(g, 1 - b2), g))
            for x, mi, mn, vi, vn in zip(touched, m, m_new, v, v_new):
                mi.copy_(torch.where(x, mn, mi))
                vi.copy_(torch.where(x, vn, vi))
            tc = torch._foreach_clamp_min(t, 1)
            c1 = torch._foreach_add(torch._foreach_neg(torch._foreach_pow(b1, tc)), 1)  # 1 − β1^t
            c2 = torch._foreach_add(torch._foreach_neg(torch._foreach_pow(b2, tc)), 1)
            denom = torch._foreach_add(torch._foreach_sqrt(torch._foreach_div(v, c2)), group["eps"])
            update = torch._foreach_mul(torch._foreach_div(torch._foreach_div(m, c1), denom), group["lr"])
            torch._foreach_sub_(params, [torch.where(x, u, 0.0) for x, u in zip(touched, update)])  # untouched: p − 0
        return loss
