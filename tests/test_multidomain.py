"""to_multidomain / MultiDomainNet: structure, routing, frozen backbone, errors on bad input."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from helpers import TinyNet, perturb_batchnorms

import mdlprune
from mdlprune import DomainBatchNorm2d, DomainHeads, SwitchConv2d, prune, randomize_switches, to_multidomain
from mdlprune.method.backbones import resnet26, wrn28


@pytest.mark.parametrize(
    "make",
    [
        lambda: torchvision.models.resnet18(),
        lambda: torchvision.models.resnet50(),
        lambda: resnet26(width=0.25),
        lambda: wrn28(k=1),
    ],
    ids=["resnet18", "resnet50", "resnet26", "wrn28"],
)
def test_structure(make):
    backbone = make()
    convs = [n for n, m in backbone.named_modules() if isinstance(m, nn.Conv2d)]
    bns = [n for n, m in backbone.named_modules() if isinstance(m, nn.BatchNorm2d)]
    model = to_multidomain(backbone, [3, 5, 7])
    modules = dict(model.backbone.named_modules())
    assert all(isinstance(modules[n], SwitchConv2d) for n in convs)
    assert all(isinstance(modules[n], DomainBatchNorm2d) for n in bns)
    assert isinstance(model.heads, DomainHeads) and model.heads.num_classes == [3, 5, 7]
    assert model.num_domains == 3
    masks = model.layer_masks()
    assert list(masks) == convs
    for n, m in masks.items():
        assert m.dtype == torch.bool and m.shape == (3, modules[n].in_channels) and m.all()
    assert model.binary_masks().shape == (3, model.num_switches)
    # the backbone is left untouched
    assert not any(isinstance(m, SwitchConv2d) for m in backbone.modules())


def test_only_domain_parameters_train():
    model = to_multidomain(TinyNet(), [2, 3])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        "backbone.conv1.switches",
        "backbone.conv2.switches",
        *(f"backbone.bn{i}.bns.{d}.{w}" for i in (1, 2) for d in (0, 1) for w in ("weight", "bias")),
        *(f"backbone.fc.heads.{d}.{w}" for d in (0, 1) for w in ("weight", "bias")),
    }
    assert {id(p) for p in model.switch_parameters()} | {id(p) for p in model.domain_parameters()} == {
        id(p) for p in model.parameters() if p.requires_grad
    }
    x = torch.randn(4, 3, 8, 8)
    model(x, 1).sum().backward()
    assert model.backbone.conv1.weight.grad is None and model.backbone.conv2.weight.grad is None
    assert model.backbone.conv1.switches.grad[1].abs().sum() > 0


def test_domain_batchnorm_starts_from_the_pretrained_bn_and_routes_by_domain():
    net = TinyNet()
    perturb_batchnorms(net)
    model = to_multidomain(net, [2, 2]).eval()
    for d in range(2):
        torch.testing.assert_close(model.backbone.bn1.bns[d].running_var, net.bn1.running_var)
    x = torch.randn(3, 3, 8, 8)
    feats = {}
    model.backbone.pool.register_forward_hook(lambda m, i, o: feats.setdefault("f", o))
    model(x, 0)
    net.eval()
    ref = net.pool(torch.relu(net.bn2(net.conv2(torch.relu(net.bn1(net.conv1(x)))))))
    torch.testing.assert_close(feats["f"], ref)
    # training domain 1 moves only domain 1's statistics
    model.train()
    before = model.backbone.bn1.bns[0].running_mean.clone()
    model(x, 1)
    assert torch.equal(model.backbone.bn1.bns[0].running_mean, before)
    assert not torch.equal(model.backbone.bn1.bns[1].running_mean, before)


def test_heads_have_the_right_sizes_and_names_work():
    model = to_multidomain(TinyNet(), {"svhn": 10, "dtd": 47})
    x = torch.randn(2, 3, 8, 8)
    assert model(x, 0).shape == (2, 10)
    assert model(x, "dtd").shape == (2, 47)
    assert model.domain_names == ("svhn", "dtd")


def test_exclude_keeps_a_plain_frozen_conv():
    model = to_multidomain(TinyNet(), [2, 2], exclude=["conv1"])
    assert type(model.backbone.conv1) is nn.Conv2d and not model.backbone.conv1.weight.requires_grad
    assert list(model.layer_masks()) == ["conv2"]


def test_randomize_switches_is_seeded_and_differs_per_domain():
    a = mdlprune.randomize_switches(to_multidomain(resnet26(width=0.25), [2, 2]), 0.5, seed=3)
    b = mdlprune.randomize_switches(to_multidomain(resnet26(width=0.25), [2, 2]), 0.5, seed=3)
    for (n, ma), mb in zip(a.layer_masks().items(), b.layer_masks().values()):
        assert torch.equal(ma, mb)
    flat = torch.cat(list(a.layer_masks().values()), dim=1).float()
    assert 0.4 < flat.mean() < 0.6
    assert (flat[0] != flat[1]).any()


# -- bad input -------------------------------------------------------------------------------------------
def test_domain_out_of_range():
    model = to_multidomain(TinyNet(), [2, 3])
    with pytest.raises(ValueError, match=r"domain index 2 is out of range: this model has 2 domains"):
        model(torch.randn(1, 3, 8, 8), 2)
    with pytest.raises(ValueError, match="out of range"):
        model(torch.randn(1, 3, 8, 8), -1)
    with pytest.raises(ValueError, match=r"unknown domain 'cifar'.*\['domain0', 'domain1'\]"):
        model(torch.randn(1, 3, 8, 8), "cifar")
    with pytest.raises(TypeError, match="domain must be an int"):
        model(torch.randn(1, 3, 8, 8), 1.5)


def test_wrong_channel_count():
    model = to_multidomain(TinyNet(), [2])
    with pytest.raises(ValueError, match=r"shape \(N, 3, H, W\), got \(2, 1, 8, 8\).*reads 3 channels"):
        model(torch.randn(2, 1, 8, 8), 0)
    with pytest.raises(ValueError, match=r"got \(3, 8, 8\)"):
        model(torch.randn(3, 8, 8), 0)


def test_num_classes_mismatch():
    with pytest.raises(ValueError, match="num_classes has 2 entries but there are 3 domains"):
        to_multidomain(TinyNet(), [2, 3], domain_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="positive ints"):
        to_multidomain(TinyNet(), [2, 0])
    with pytest.raises(ValueError, match="non-empty sequence"):
        to_multidomain(TinyNet(), [])
    with pytest.raises(ValueError, match="non-empty sequence"):
        to_multidomain(TinyNet(), 10)


def test_backbone_without_head():
    with pytest.raises(ValueError, match=r"has no attribute 'classifier'.*head="):
        to_multidomain(TinyNet(), [2], head="classifier")
    with pytest.raises(ValueError, match=r"is a BatchNorm2d, not an nn.Linear"):
        to_multidomain(TinyNet(), [2], head="bn1")


def test_grouped_convs_get_switches_and_exclude_still_keeps_them_shared():
    mobilenet = torchvision.models.mobilenet_v2(weights=None)
    grouped = [n for n, m in mobilenet.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    model = to_multidomain(mobilenet, [2, 3])  # the head is found: classifier.1
    assert model.head_name == "classifier.1" and len(grouped) == 17
    assert all(isinstance(model.backbone.get_submodule(n), SwitchConv2d) for n in grouped)
    shared = to_multidomain(mobilenet, [2, 3], exclude=grouped)
    assert all(type(shared.backbone.get_submodule(n)) is nn.Conv2d for n in grouped)
    x = torch.randn(2, 3, 32, 32)
    for m in (model, shared):
        randomize_switches(m, 0.6, seed=1)
        pruned = prune(m.eval())
        with torch.no_grad():
            for d in range(2):
                ref = m(x, d)
                torch.testing.assert_close(pruned(x, d), ref, rtol=0, atol=1e-5 * float(ref.abs().max()))


def test_a_convolutional_classifier_is_found_and_made_per_domain():
    squeezenet = torchvision.models.squeezenet1_1(weights=None)
    model = to_multidomain(squeezenet, {"a": 3, "b": 7})
    assert model.head_name == "classifier.1" and model.heads.num_classes == [3, 7]
    assert all(isinstance(h, nn.Conv2d) and h.kernel_size == (1, 1) for h in model.heads.heads)
    assert model(torch.randn(2, 3, 48, 48), "b").shape == (2, 7)
    with pytest.raises(ValueError, match=r"'features.0' of SqueezeNet is a Conv2d, not an nn.Linear or a 1x1"):
        to_multidomain(squeezenet, [2], head="features.0")


# -- what conversion cannot do exactly, it refuses (or leaves alone under exclude) ---------------------------------
class WSConv2d(nn.Conv2d):
    """Weight-standardised convolution: its forward transforms the weight."""

    def forward(self, x):
        w = self.weight
        w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / (w.std(dim=(1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class WithWS(TinyNet):
    def __init__(self):
        super().__init__()
        self.conv1 = WSConv2d(3, 4, 3, padding=1, bias=False)


def refused_then_kept_exactly(net_class, layer: str, keep: float, seed: int):
    """Conversion names ``layer`` in its refusal; under exclude, pruning leaves it as it is and stays exact."""
    with pytest.raises(ValueError, match=rf"{layer} \({getattr(net_class(), layer).__class__.__name__}\).*exclude="):
        to_multidomain(net_class(), [2, 2])
    model = to_multidomain(net_class(), [2, 2], exclude=[layer]).eval()
    perturb_batchnorms(model)
    randomize_switches(model, keep, seed=seed)
    pruned = prune(model)
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        for d in range(2):
            torch.testing.assert_close(pruned(x, d), model(x, d), rtol=0, atol=1e-5)
    return getattr(pruned.backbone, layer)


def test_a_conv_subclass_is_refused_or_kept_exactly():
    assert type(refused_then_kept_exactly(WithWS, "conv1", 0.5, 2)) is WSConv2d  # never rebuilt as a plain conv


class Aliased(TinyNet):
    def __init__(self):
        super().__init__()
        self.again = self.conv2  # the same conv under a second name


class ReadsWeight(TinyNet):
    def forward(self, x):
        x = F.relu(self.bn1(F.conv2d(x, self.conv1.weight, padding=1)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class StemLast(nn.Module):
    """The stem is registered after the block it feeds: the input check must use the stem."""

    def __init__(self):
        super().__init__()
        self.body = nn.Conv2d(8, 4, 3, padding=1)
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.body(self.stem(x)).mean((2, 3)))


def test_aliases_weight_reads_and_the_stem_are_found():
    with pytest.raises(ValueError, match=r"several names.*\['conv2', 'again'\]"):
        to_multidomain(Aliased(), [2])
    with pytest.raises(ValueError, match=r"reads the weights of \['conv1'\] outside their own forward"):
        to_multidomain(ReadsWeight(), [2])
    model = to_multidomain(StemLast(), [2, 2])
    assert model.in_channels == 1 and model(torch.randn(2, 1, 6, 6), 1).shape == (2, 2)


class ScaledBN(nn.BatchNorm2d):
    """A BatchNorm with a forward of its own."""

    def forward(self, x):
        return 2 * super().forward(x)


class WithScaledBN(TinyNet):
    def __init__(self):
        super().__init__()
        self.bn1 = ScaledBN(4)


def test_a_batchnorm_subclass_is_refused_or_kept_exactly():
    kept = refused_then_kept_exactly(WithScaledBN, "bn1", 0.4, 5)
    assert type(kept) is ScaledBN and kept.num_features == 4  # never sliced or rebuilt
