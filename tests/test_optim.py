"""LazyAdam (switches move only when they get a gradient) and BatchNorm recalibration."""

import torch
from helpers import TinyNet

from mdlprune import to_multidomain
from mdlprune.data.mini import TensorLoader
from mdlprune.training.optim import LazyAdam
from mdlprune.training import recalibrate_batchnorm


def test_lazy_adam_equals_adam_when_every_gradient_is_non_zero():
    torch.manual_seed(0)
    a = torch.randn(3, 5, requires_grad=True)
    b = a.detach().clone().requires_grad_(True)
    opt_a, opt_b = LazyAdam([a], lr=0.01), torch.optim.Adam([b], lr=0.01)
    for k in range(20):
        g = torch.randn(3, 5) + 0.1  # never exactly zero
        a.grad, b.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
    torch.testing.assert_close(a, b)


def test_lazy_adam_leaves_elements_without_gradient_alone():
    torch.manual_seed(0)
    p = torch.randn(2, 4, requires_grad=True)
    opt = LazyAdam([p], lr=0.1)
    p.grad = torch.ones(2, 4)
    opt.step()
    after_first = p.detach().clone()
    for _ in range(5):  # row 1 gets no gradient: plain Adam would keep moving it on its momentum
        p.grad = torch.cat([torch.ones(1, 4), torch.zeros(1, 4)])
        opt.step()
    assert torch.equal(p[1], after_first[1])
    assert not torch.equal(p[0], after_first[0])
    assert opt.state[p]["steps"].tolist() == [[6.0] * 4, [1.0] * 4]


def test_lazy_adam_resumes_a_skipped_element_like_its_own_adam():
    """An element updated at steps 1 and 5 (gradients 0 in between) follows the same path as a fresh Adam that
    saw only its two non-zero gradients."""
    p = torch.zeros(2, requires_grad=True)
    q = torch.zeros(1, requires_grad=True)
    opt_p, opt_q = LazyAdam([p], lr=0.1), torch.optim.Adam([q], lr=0.1)
    for g_first in (0.5, 0.0, 0.0, 0.0, -0.3):
        p.grad = torch.tensor([1.0, g_first])
        opt_p.step()
        if g_first:
            q.grad = torch.tensor([g_first])
            opt_q.step()
    torch.testing.assert_close(p[1:], q)


def _lazy_adam_one_parameter_at_a_time(params, states, lr, b1=0.9, b2=0.999, eps=1e-8):
    """The update read off the class docstring, one parameter and one element-wise expression at a time."""
    for p, (m, v, t) in zip(params, states):
        touched = p.grad != 0
        t += touched.float()
        m.copy_(torch.where(touched, b1 * m + (1 - b1) * p.grad, m))
        v.copy_(torch.where(touched, b2 * v + (1 - b2) * p.grad * p.grad, v))
        tc = t.clamp(min=1)
        update = (m / (1 - b1**tc)) / ((v / (1 - b2**tc)).sqrt() + eps)
        p -= torch.where(touched, lr * update, torch.zeros_like(update))


def test_lazy_adam_over_many_parameters_equals_the_per_parameter_update_bit_for_bit():
    """The step updates a group's parameters together (foreach kernels); a training run must not change with it:
    300 steps of sparse gradients over five parameters (one sometimes without a gradient) end bit-identical."""
    torch.manual_seed(0)
    shapes = [(5, 16), (5, 24), (5, 96), (5, 7), (3, 1)]
    a = [torch.randn(s) * 1e-3 for s in shapes]
    b = [x.clone() for x in a]
    states = [tuple(torch.zeros_like(x) for _ in range(3)) for x in b]
    opt = LazyAdam([torch.nn.Parameter(x) for x in a], lr=0.01)
    a = opt.param_groups[0]["params"]
    for step in range(300):
        grads = [torch.randn(s) * (torch.rand(s) < 0.5) for s in shapes]
        for p, q, g in zip(a, b, grads):
            p.grad, q.grad = g.clone(), g.clone()
        if step % 13 == 5:  # a parameter without a gradient is skipped (its state stays)
            a[4].grad = None
            b[4].grad = torch.zeros(shapes[4])
        with torch.no_grad():
            opt.step()
            _lazy_adam_one_parameter_at_a_time(b, states, lr=0.01)
    for p, q, (m, v, t) in zip(a, b, states):
        assert torch.equal(p.detach(), q)
        assert torch.equal(opt.state[p]["exp_avg"], m) and torch.equal(opt.state[p]["exp_avg_sq"], v)
        assert torch.equal(opt.state[p]["steps"], t)


def test_lazy_adam_never_touches_an_element_without_gradient_even_without_eps():
    """With ``eps=0`` an element that never had a gradient computes 0 / 0 in the update; it must still stay put."""
    p = torch.zeros(4, requires_grad=True)
    opt = LazyAdam([p], lr=0.1, eps=0.0)
    for _ in range(3):
        p.grad = torch.tensor([1.0, -1.0, 0.0, 0.0])
        opt.step()
    assert torch.isfinite(p).all() and p[2:].tolist() == [0.0, 0.0] and p[0] < 0 < p[1]


def test_recalibration_recomputes_statistics_with_the_current_switches():
    torch.manual_seed(0)
    model = to_multidomain(TinyNet(), [2, 2])
    with torch.no_grad():
        model.backbone.conv1.switches[1, 0] = -1.0  # domain 1 drops input channel 0
    images = torch.randint(0, 256, (16, 3, 10, 10), dtype=torch.uint8)
    loaders = [TensorLoader(images, torch.zeros(16, dtype=torch.long), 8, 8, [0.5] * 3, [0.25] * 3,
                            shuffle=False, augment=False, flip=False) for _ in range(2)]  # fmt: skip
    recalibrate_batchnorm(model, loaders, batches=2)
    x = torch.cat([x for x, _ in loaders[1]])
    with torch.no_grad():
        pre_bn = model.backbone.conv1(x, 1)
    # the running mean is the average of the two batches' means, computed with domain 1's switches
    expected = torch.stack([pre_bn[:8].mean((0, 2, 3)), pre_bn[8:].mean((0, 2, 3))]).mean(0)
    torch.testing.assert_close(model.backbone.bn1.bns[1].running_mean, expected)
    assert not torch.allclose(model.backbone.bn1.bns[0].running_mean, expected)  # domain 0 uses every channel
    assert model.backbone.bn1.bns[1].momentum == 0.1 and model.training  # both restored
