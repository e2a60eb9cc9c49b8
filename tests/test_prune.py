"""prune(): the pruned model computes exactly what the switch model computes, with fewer parameters/MACs."""

import pytest
import torch
import torch.nn as nn
import torchvision
from helpers import TinyNet, perturb_batchnorms

import mdlprune
from mdlprune import PrunedConv2d, SwitchConv2d, count_macs, prune, randomize_switches, to_multidomain
from mdlprune.method.dependencies import channel_groups
from mdlprune.method.backbones import resnet26, wrn28
from mdlprune.training.checkpoint import CheckpointError, load_model, save_model, trusted_globals

BACKBONES = {
    "resnet18": (lambda: torchvision.models.resnet18(), 64),
    "resnet50": (lambda: torchvision.models.resnet50(), 64),
    "resnet26": (lambda: resnet26(width=0.5), 32),
    "wrn28": (lambda: wrn28(k=2), 32),
}
# Layers switched off in every domain in the "layer off" scenario: one that reads a block-internal channel
# (its producer loses filters) and one that reads the residual stream (only the consumer shrinks).
DEAD_LAYERS = {
    "resnet18": ["layer1.0.conv2", "layer2.1.conv1"],
    "resnet50": ["layer1.0.conv3", "layer3.2.conv1", "layer2.0.downsample.0"],
    "resnet26": ["layer1.1.conv2", "layer2.0.conv1"],
    "wrn28": ["layer1.0.conv2", "layer2.1.conv1", "layer3.0.shortcut"],
}


def build(name, scenario, num_classes=(3, 5, 4)):
    make, size = BACKBONES[name]
    backbone = make()
    perturb_batchnorms(backbone)
    model = to_multidomain(backbone, list(num_classes))
    if scenario in ("random", "layer_off"):
        randomize_switches(model, keep=0.5, seed=1)
    if scenario == "layer_off":
        with torch.no_grad():
            for layer in DEAD_LAYERS[name]:
                model.backbone.get_submodule(layer).switches.fill_(-1.0)
    return backbone, model.eval(), size


def assert_equivalent(model, pruned, size, domains):
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        for d in domains:
            a, b = model(x, d), pruned(x, d)
            assert a.shape == b.shape
            assert (a - b).abs().max() <= 1e-5 * a.abs().max(), f"domain {d} differs"


@pytest.mark.parametrize("scenario", ["random", "all_on", "layer_off"])
@pytest.mark.parametrize("name", list(BACKBONES))
def test_pruned_equals_masked(name, scenario):
    backbone, model, size = build(name, scenario)
    pruned = prune(model)
    assert not any(isinstance(m, SwitchConv2d) for m in pruned.modules())
    assert_equivalent(model, pruned, size, range(model.num_domains))

    n_model = sum(p.numel() for n, p in model.named_parameters() if "switches" not in n)
    n_pruned = sum(p.numel() for p in pruned.parameters())
    macs_model = count_macs(model, (3, size, size), mask_aware=False)
    macs_pruned = count_macs(pruned, (3, size, size), mask_aware=False)
    if scenario == "all_on":
        assert n_pruned == n_model and macs_pruned == macs_model
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            for d in range(model.num_domains):  # nothing pruned: the very same arithmetic
                assert torch.equal(model(x, d), pruned(x, d))
    else:
        assert n_pruned < n_model and macs_pruned < macs_model
    # each conv keeps exactly the union of its domains' input channels
    masks = model.layer_masks()
    for layer, m in pruned.backbone.named_modules():
        if isinstance(m, PrunedConv2d):
            assert m.in_channels == int(masks[layer].any(0).sum())


def test_the_model_is_left_untouched():
    _, model, size = build("resnet26", "random")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prune(model)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert any(isinstance(m, SwitchConv2d) for m in model.modules())


def tiny_model():
    """TinyNet with hand-set masks (see test_metrics for the hand counts)."""
    net = TinyNet()
    perturb_batchnorms(net)
    model = to_multidomain(net, [5, 7]).eval()
    with torch.no_grad():
        model.backbone.conv1.switches[:] = torch.tensor([[1.0, -1, 1], [1, -1, -1]])  # union {0, 2}
        model.backbone.conv2.switches[:] = torch.tensor([[-1.0, 1, -1, 1], [-1, 1, 1, -1]])  # union {1, 2, 3}
    return model


def test_dependency_aware_pruning_removes_producer_filters_and_bn_channels():
    model = tiny_model()
    pruned = prune(model)
    conv1, conv2, bn1 = pruned.backbone.conv1, pruned.backbone.conv2, pruned.backbone.bn1
    # conv1 reads input channels {0, 2} (a gather: the image is read by nothing else but it has 3 channels)
    assert conv1.weight.shape == (3, 2, 3, 3)
    assert conv1.in_index.tolist() == [0, 2]
    assert conv1.domain_masks.tolist() == [[True, True], [True, False]]  # domains differ: masks kept
    # conv2 reads only channels {1, 2, 3} of conv1, so conv1 lost filter 0 and bn1 lost channel 0
    assert torch.equal(conv1.weight, model.backbone.conv1.weight[1:][:, [0, 2]])
    assert bn1.num_features == 3 and all(bn.num_features == 3 for bn in bn1.bns)
    assert torch.equal(bn1.bns[1].running_mean, model.backbone.bn1.bns[1].running_mean[1:])
    assert conv2.in_index is None  # conv1 now produces exactly what conv2 reads
    assert conv2.weight.shape == (6, 3, 3, 3)
    assert conv2.domain_masks.tolist() == [[True, False, True], [True, True, False]]
    assert_equivalent(model, pruned, 8, range(2))


def test_without_dependency_awareness_only_consumers_shrink():
    model = tiny_model()
    pruned = prune(model, dependency_aware=False)
    assert pruned.backbone.conv1.weight.shape == (4, 2, 3, 3)
    assert pruned.backbone.conv2.in_index.tolist() == [1, 2, 3]
    assert_equivalent(model, pruned, 8, range(2))


def test_masks_are_dropped_where_all_domains_agree():
    model = tiny_model()
    with torch.no_grad():
        model.backbone.conv2.switches[:] = torch.tensor([[-1.0, 1, 1, 1], [-1, 1, 1, 1]])
    pruned = prune(model)
    assert pruned.backbone.conv2.domain_masks is None


def test_a_layer_off_in_every_domain_outputs_its_bias():
    model = tiny_model()
    with torch.no_grad():
        model.backbone.conv2.switches.fill_(-1.0)
    pruned = prune(model)
    assert pruned.backbone.conv2.in_channels == 0
    assert pruned.backbone.conv1.out_channels == 1  # one filter stays so no zero-channel tensor reaches BN
    x = torch.randn(3, 3, 8, 8)
    out = pruned.backbone.conv2(torch.randn(3, 1, 8, 8))
    assert out.shape == (3, 6, 8, 8)
    assert torch.equal(out, model.backbone.conv2.bias.view(1, 6, 1, 1).expand(3, 6, 8, 8))
    assert_equivalent(model, pruned, 8, range(2))
    assert pruned(x, 0).shape == (3, 5)


def test_channel_groups_of_torchvision_resnet18():
    model = to_multidomain(torchvision.models.resnet18(), [2])
    groups = {g.producer: g for g in channel_groups(model.backbone, (SwitchConv2d,))}
    blocks = [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert sorted(groups) == sorted(f"{b}.conv1" for b in blocks)
    g = groups["layer3.1.conv1"]
    assert g.consumers == ["layer3.1.conv2"] and g.norms == ["layer3.1.bn1"]


def test_untraceable_backbones_still_prune_correctly():
    class DataDependent(TinyNet):
        def forward(self, x):
            if x.sum() > 0:  # control flow on a tensor value: torch.fx cannot trace this
                x = x * 1.0
            return super().forward(x)

    net = DataDependent()
    perturb_batchnorms(net)
    model = to_multidomain(net, [2, 2]).eval()
    randomize_switches(model, 0.5, seed=2)
    assert channel_groups(model.backbone, (SwitchConv2d,)) == []
    assert_equivalent(model, prune(model), 8, range(2))


def test_prune_rejects_what_it_cannot_prune():
    with pytest.raises(TypeError, match="MultiDomainNet"):
        prune(TinyNet())
    pruned = prune(tiny_model())
    with pytest.raises(ValueError, match="already pruned"):
        prune(pruned)


# -- saving and loading ---------------------------------------------------------------------------------
def test_save_and_load_with_weights_only(tmp_path):
    _, model, size = build("resnet18", "random")
    pruned = prune(model)
    path = save_model(pruned, tmp_path / "pruned.pt")
    loaded = load_model(path)
    assert isinstance(loaded, mdlprune.MultiDomainNet)
    assert_equivalent(pruned, loaded.eval(), size, range(3))
    # the documented by-hand path: torch.load(weights_only=True) inside safe_globals
    with torch.serialization.safe_globals(trusted_globals(path)):
        again = torch.load(path, weights_only=True)
    assert type(again.backbone.conv1) is PrunedConv2d
    # plain weights_only loading refuses the classes until they are allowed
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path, weights_only=True)


def test_files_that_name_a_moved_layer_and_specialised_models_load(tmp_path, monkeypatch):
    _, model, size = build("resnet26", "random")
    pruned = prune(model)
    monkeypatch.setattr(PrunedConv2d, "__module__", "mdlprune.method.prune")  # where it lived before
    path = save_model(pruned, tmp_path / "old.pt")
    monkeypatch.undo()
    assert "mdlprune.method.prune.PrunedConv2d" in torch.serialization.get_unsafe_globals_in_checkpoint(path)
    assert_equivalent(pruned, load_model(path).eval(), size, range(3))
    mobile = randomize_switches(to_multidomain(torchvision.models.mobilenet_v2(weights=None, width_mult=0.5), [2, 3]), 0.5)
    plain = mdlprune.specialize(prune(mobile.eval()), 1)
    assert "ChannelSelect" in {type(m).__name__ for m in plain.modules()}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(load_model(save_model(plain, tmp_path / "plain.pt"))(x), plain(x), rtol=0, atol=0)


class Mine(nn.Module):
    """A module from outside the allowlisted packages."""


class HoldsAFunction(nn.Module):
    def __init__(self):
        super().__init__()
        self.act = torch.nn.functional.relu  # under torch.nn, but a function, not an nn.Module class


def test_load_refuses_globals_outside_the_allowlist(tmp_path):
    torch.save(Mine(), tmp_path / "mine.pt")
    with pytest.raises(CheckpointError, match=r"outside the allowlist.*test_prune.Mine"):
        load_model(tmp_path / "mine.pt")
    torch.save(nn.Sequential(HoldsAFunction()), tmp_path / "fn.pt")
    with pytest.raises(CheckpointError, match=r"outside the allowlist.*torch.nn.functional.relu"):
        load_model(tmp_path / "fn.pt")


def test_corrupt_and_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_model(tmp_path / "nope.pt")
    save_model(prune(tiny_model()), tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated/corrupt"):
        load_model(tmp_path / "cut.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_model(tmp_path / "text.pt")


def test_atomic_save_keeps_the_old_file_when_saving_fails(tmp_path):
    path = save_model(prune(tiny_model()), tmp_path / "m.pt")
    before = path.read_bytes()

    class Unpicklable(nn.Module):
        def __reduce_ex__(self, protocol):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_model(Unpicklable(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left behind


def test_saved_files_get_the_usual_permissions(tmp_path):
    import os

    path = save_model(prune(tiny_model()), tmp_path / "m.pt")
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
