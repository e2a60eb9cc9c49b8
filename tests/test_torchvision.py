"""Every torchvision CNN converts with no arguments, prunes exactly, and gets cheaper, mobile ones included.

Random per-domain masks (3 domains, each channel on with probability 0.5) stand in for trained switches: what
matters here is that the pruned model computes what the switch model computes, on every domain, with fewer
parameters and fewer MACs of both kinds (needed and executed), and that depthwise layers get cheaper too.
"""

import pytest
import torch
import torch.nn as nn
import torchvision
from helpers import perturb_batchnorms
from torch.utils.flop_counter import FlopCounterMode

from mdlprune import (count_macs, executed_macs, keep_domain_kernels, needed_macs, param_bits, prune,
                      randomize_switches, specialize, to_multidomain)  # fmt: skip
from mdlprune.method.pruned import PrunedConv2d
from mdlprune.method.specialize import _one_domain

# name: (constructor keyword arguments, image size, the classifier find_head must find)
MODELS = {
    "resnet18": ({}, 32, "fc"),
    "resnet50": ({}, 32, "fc"),
    "resnext50_32x4d": ({}, 32, "fc"),
    "vgg11_bn": ({}, 32, "classifier.6"),
    "densenet121": ({}, 32, "classifier"),
    "googlenet": ({"init_weights": True}, 32, "fc"),
    "squeezenet1_1": ({}, 48, "classifier.1"),
    "mobilenet_v2": ({}, 32, "classifier.1"),
    "mobilenet_v3_small": ({}, 32, "classifier.3"),
    "efficientnet_b0": ({}, 32, "classifier.1"),
    "mnasnet0_5": ({}, 32, "classifier.1"),
    "shufflenet_v2_x1_0": ({}, 32, "fc"),
    "regnet_x_400mf": ({}, 32, "fc"),
}



def _depthwise(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1]


@pytest.mark.parametrize("name", list(MODELS))
def test_torchvision_models_convert_with_no_arguments_and_prune_exactly(name):
    kwargs, size, head = MODELS[name]
    torch.manual_seed(0)
    backbone = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
    perturb_batchnorms(backbone)
    model = to_multidomain(backbone, [3, 5, 4]).eval()
    assert model.head_name == head
    randomize_switches(model, keep=0.5, seed=1)
    pruned = prune(model)

    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        for d in range(3):
            ref = model(x, d)
            assert ref.shape == (2, [3, 5, 4][d])
            diff = (pruned(x, d) - ref).abs().max()
            assert diff <= 1e-5 * ref.abs().max(), f"{name}, domain {d}: pruned differs by {diff:.2e}"

    assert param_bits(pruned) < param_bits(backbone, head)
    dense, dense_layers = count_macs(backbone, (3, size, size), by_layer=True)
    for d in range(3):
        # an eval pass of the pruned model convolves each ungrouped layer over the domain's channels alone, so it
        # executes what the domain needs there; grouped layers multiply the domain's mask into the kept kernel
        needed, executed = needed_macs(pruned, (3, size, size), d), executed_macs(pruned, (3, size, size), d)
        assert needed <= executed < dense and needed < needed_macs(model, (3, size, size), d) * 1.0001
    depthwise = _depthwise(backbone)
    if name in ("mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "mnasnet0_5", "shufflenet_v2_x1_0"):
        assert len(depthwise) >= 4
        dense_depthwise = sum(dense_layers[n] for n in depthwise)
        _, layers = count_macs(pruned, (3, size, size), 0, by_layer=True)
        assert sum(layers[n] for n in depthwise) < 0.6 * dense_depthwise, "the domain needs its depthwise channels"
        _, layers = count_macs(pruned, (3, size, size), 0, mask_aware=False, by_layer=True)
        if name not in ("mobilenet_v3_small", "efficientnet_b0"):  # (squeeze-excitation reads every channel: docs)
            assert sum(layers[n] for n in depthwise) < 0.95 * dense_depthwise, "no depthwise channel was removed"


def _flops(model, *args) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(*args)
    return counter.get_total_flops()


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18"])
def test_needed_and_executed_macs_agree_with_torch_flop_counter(name):
    """conv + linear MACs (THOP's, by layer) = FLOPs / 2 (PyTorch's counter), on a switch model and its pruned
    copy whose domains differ: executed = what the model runs in eval; needed = what a model with only the domain's
    input channels runs (its one-domain copy, pruned without dependency analysis), less the zero-kernel padding
    of its grouped layers (a depthwise channel the domain switches off is padding there)."""
    _, size, _ = MODELS[name]
    model = randomize_switches(to_multidomain(getattr(torchvision.models, name)(weights=None), [3, 5]), 0.5, seed=2)
    pruned = prune(model.eval())
    x = torch.randn(1, 3, size, size)
    for m in (model, pruned):
        for d in range(2):
            executed = sum(count_macs(m, (3, size, size), d, mask_aware=False, by_layer=True)[1].values())
            needed = sum(count_macs(m, (3, size, size), d, mask_aware=True, by_layer=True)[1].values())
            assert executed == pytest.approx(_flops(m, x, d) / 2, rel=0.01)
            alone = prune(_one_domain(m, d), dependency_aware=False)
            _, layers = count_macs(alone, (3, size, size), 0, mask_aware=False, by_layer=True)
            padding = sum(layers[n] * int((~p.domain_masks[0]).sum()) / p.in_channels
                          for n, p in alone.backbone.named_modules() if getattr(p, "domain_masks", None) is not None)
            assert (padding > 0) == (name == "mobilenet_v2")
            assert needed == pytest.approx(_flops(alone, x, 0) / 2 - padding, rel=0.01)
            assert needed < 0.8 * executed if m is model else needed <= executed
    # a device running one domain executes at most what it needs (and what the multi-domain model executes), but for
    # the zero padding of grouped layers
    for d in range(2):
        alone = _flops(specialize(pruned, d), x) / 2
        assert alone <= sum(count_macs(pruned, (3, size, size), d, mask_aware=name == "resnet18", by_layer=True)[1].values())


def test_depthwise_switches_mean_what_the_docs_say():
    """A depthwise channel switched off in a domain leaves that channel's output at the bias; off in every
    domain, the pruned layer reads a zero kernel there and the producer that fed only it drops that filter; a
    channel nobody reads afterwards goes from the depthwise layer too."""
    net = nn.Sequential(nn.Conv2d(3, 6, 1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1, groups=6),
                        nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 2))  # fmt: skip
    perturb_batchnorms(net)
    model = to_multidomain(net, [2, 2]).eval()
    dw, project = model.backbone[3], model.backbone[6]
    with torch.no_grad():
        dw.switches.copy_(torch.tensor([[1, -1, 1, -1, 1, 1], [1, -1, -1, 1, 1, 1.0]]))  # channel 1 off in both
        project.switches.copy_(torch.tensor([[1, 1, 1, 1, -1, 1], [1, 1, 1, 1, -1, 1.0]]))  # channel 4 unread
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        out = dw(model.backbone[2](model.backbone[1](model.backbone[0](x))), 0)
    torch.testing.assert_close(out[:, 1], dw.bias[1].expand_as(out[:, 1]))
    pruned = prune(model)
    p_dw, p_in = pruned.backbone[3], pruned.backbone[0]
    assert p_dw.groups == 5 and p_dw.out_channels == 5  # channel 4: nobody reads it; channel 1: bias only
    assert p_in.out_channels == 4 and p_dw.in_index.tolist() == [0, 0, 1, 2, 3]  # the producer drops 1 and 4
    assert p_dw.domain_masks[:, 1].eq(False).all() and p_dw.weight[1].eq(0).all()  # (channel 1: padding)
    with torch.no_grad():
        for d in range(2):
            torch.testing.assert_close(pruned(x, d), model(x, d), rtol=0, atol=1e-6)
            torch.testing.assert_close(specialize(model, d)(x), model(x, d), rtol=0, atol=1e-6)


def test_a_grouped_conv_keeps_equal_groups_and_stays_exact():
    """Groups that keep different numbers of channels are padded with zero kernels, masked off in every domain."""
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1, groups=2),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))  # fmt: skip
    model = to_multidomain(net, [3, 3, 3]).eval()
    with torch.no_grad():  # group 0 keeps 3 of its 4 channels, group 1 keeps 1
        model.backbone[2].switches.copy_(torch.tensor([[1, -1, 1, -1, -1, 1, -1, -1],
                                                       [1, -1, -1, 1, -1, -1, -1, -1],
                                                       [-1, -1, 1, 1, -1, -1, -1, -1.0]]))  # fmt: skip
    pruned = prune(model)
    layer = pruned.backbone[2]
    assert tuple(layer.weight.shape) == (4, 3, 3, 3) and layer.groups == 2
    assert layer.domain_masks[:, 3:].sum() == 1  # group 1: one real slot, two padding slots off everywhere
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        for d in range(3):
            torch.testing.assert_close(pruned(x, d), model(x, d), rtol=0, atol=1e-6)
            torch.testing.assert_close(specialize(pruned, d)(x), model(x, d), rtol=0, atol=1e-6)
    for d in range(3):  # the grouped layer needs what it needed before pruning (padding slots are not counted)
        needed = [count_macs(m, (3, 6, 6), d, by_layer=True)[1]["2"] for m in (model, pruned)]
        assert needed[0] == needed[1] == 36 * 2 * [3, 2, 2][d] * 9


def test_a_grouped_layer_that_keeps_no_domain_kernels_computes_the_same():
    """``keep_domain_kernels(model, False)`` on a grouped layer (masked kernel per domain): the same outputs, per call,
    nothing kept, in eval and in inference mode."""
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1, groups=2),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))  # fmt: skip
    model = randomize_switches(to_multidomain(net, [3, 3, 3]).eval(), keep=0.5, seed=2)
    pruned = prune(model)
    layer = pruned.backbone[2]
    assert layer.groups == 2 and layer.domain_masks is not None
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        kept = [pruned(x, d) for d in range(3)]
    keep_domain_kernels(pruned, False)
    for mode in (torch.no_grad, torch.inference_mode):
        with mode():
            for d in range(3):
                assert torch.equal(pruned(x, d), kept[d])
                torch.testing.assert_close(pruned(x, d), model(x, d), rtol=0, atol=1e-6)
    assert "_domain_cache" not in layer.__dict__


def test_padding_with_own_channels_reads_grouped_inputs_without_a_gather():
    """``pad_own_channels``: each group pads with its own unfed channels, which the producer then computes, so the
    grouped layer reads its input in place (no gather); outputs stay exact, MACs needed stay what they were."""
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1, groups=2),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))  # fmt: skip
    model = to_multidomain(net, [3, 3, 3]).eval()
    with torch.no_grad():  # as above: group 0 reads channels 0, 2, 3; group 1 reads channel 5
        model.backbone[2].switches.copy_(torch.tensor([[1, -1, 1, -1, -1, 1, -1, -1],
                                                       [1, -1, -1, 1, -1, -1, -1, -1],
                                                       [-1, -1, 1, 1, -1, -1, -1, -1.0]]))  # fmt: skip
    first, own = prune(model), prune(model, pad_own_channels=True)
    assert first.backbone[2].in_index is not None and own.backbone[2].in_index is None
    assert first.backbone[0].out_channels == 4 and own.backbone[0].out_channels == 6  # group 1 pads with 4 and 6
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        for d in range(3):
            torch.testing.assert_close(own(x, d), model(x, d), rtol=0, atol=1e-6)
            torch.testing.assert_close(specialize(model, d, pad_own_channels=True)(x), model(x, d), rtol=0, atol=1e-6)
    for d in range(3):
        assert count_macs(own, (3, 6, 6), d, by_layer=True)[1]["2"] == 36 * 2 * [3, 2, 2][d] * 9


@pytest.mark.parametrize("name", ["mobilenet_v2", "shufflenet_v2_x1_0", "resnext50_32x4d"])
def test_padding_with_own_channels_stays_exact_on_torchvision_models(name):
    torch.manual_seed(0)
    backbone = getattr(torchvision.models, name)(weights=None).eval()
    perturb_batchnorms(backbone)
    model = randomize_switches(to_multidomain(backbone, [3, 5, 4]).eval(), keep=0.5, seed=1)
    pruned = prune(model, pad_own_channels=True)
    depthwise = [m for m in pruned.modules() if isinstance(m, PrunedConv2d) and m.groups > 1 and m.weight.shape[1] == 1]
    if name == "mobilenet_v2":  # every depthwise layer reads its input in place
        assert depthwise and all(m.in_index is None for m in depthwise)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for d in range(3):
            ref = model(x, d)
            assert (pruned(x, d) - ref).abs().max() <= 1e-5 * ref.abs().max()
            assert (specialize(model, d, pad_own_channels=True)(x) - ref).abs().max() <= 1e-5 * ref.abs().max()
            assert (specialize(pruned, d, pad_own_channels=True)(x) - ref).abs().max() <= 1e-5 * ref.abs().max()
