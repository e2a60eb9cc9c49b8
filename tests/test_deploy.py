"""One domain's model for a device: ``specialize`` (exact, smaller, plain torch.nn) and the ONNX export."""

import copy
import importlib.util

import pytest
import torch
import torch.nn as nn
import torchvision

from mdlprune import (PrunedConv2d, count_macs, keep_domain_kernels, keep_domain_models, load_model, prune,
                      randomize_switches, save_model, specialize, to_multidomain)
from mdlprune.experiments.cli import main as cli
from mdlprune.method.backbones import resnet26
from mdlprune.method.domain import DomainBatchNorm2d, DomainModule
from mdlprune.method.specialize import ChannelSelect, fold_batchnorms

DOMAINS = {"digits": 3, "glyphs": 4, "signs": 5}


def _trained_like(backbone: nn.Module, keep: float = 0.5, seed: int = 0):
    """A multi-domain model whose domains differ: random switches, per-domain BatchNorm statistics and affines."""
    model = to_multidomain(backbone, DOMAINS)
    randomize_switches(model, keep=keep, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model.eval()


def _assert_same(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5):
    assert (a - b).abs().max() <= rtol * b.abs().max(), f"max |Δ| {(a - b).abs().max():.2e}"


@pytest.mark.parametrize("arch", ["resnet26", "resnet18"])
def test_specialized_model_equals_the_multi_domain_model_on_every_domain(arch):
    torch.manual_seed(0)
    backbone, size = (resnet26(10, width=0.25), 32) if arch == "resnet26" else (torchvision.models.resnet18(), 48)
    model = _trained_like(backbone)
    pruned = prune(model)
    x = torch.randn(3, 3, size, size)
    for d, name in enumerate(DOMAINS):
        expected = model(x, d)
        for source in (model, pruned):
            plain = specialize(source, name)
            _assert_same(plain(x), expected)
        # plain torch.nn: no per-domain layer or switch; every BatchNorm after a conv folded (ResNet-26's last one
        # reads the residual stream, the sum of blocks, and stays); frozen, in eval mode
        assert not any(isinstance(m, DomainModule) for m in plain.modules())
        left = [n for n, m in plain.named_modules() if isinstance(m, nn.BatchNorm2d)]
        assert left == (["bn_final"] if arch == "resnet26" else [])
        assert not plain.training and not any(p.requires_grad for p in plain.parameters())


def test_channels_last_models_compute_the_same_and_their_gathers_keep_the_format(monkeypatch):
    """A GPU serves convolutions fastest in channels_last; a gather that returned NCHW would make every next
    convolution copy its input back. Pruned and specialised models, converted, give the same outputs."""
    import mdlprune.method.pruned as pruned_module
    from mdlprune.method.switch import select_channels

    x = torch.randn(2, 6, 5, 5).to(memory_format=torch.channels_last)
    index = torch.tensor([4, 0, 0, 3])
    assert torch.equal(select_channels(x, index), x[:, index])
    assert select_channels(x, index).is_contiguous(memory_format=torch.channels_last)
    gathered = []  # the pruned layers' gathers
    monkeypatch.setattr(pruned_module, "select_channels",
                        lambda x, i: gathered.append(x.is_contiguous(memory_format=torch.channels_last)) or select_channels(x, i))  # fmt: skip
    torch.manual_seed(0)
    pruned = prune(_trained_like(resnet26(10, width=0.25))).eval()
    x = torch.randn(2, 3, 32, 32)
    seen = []
    for d in range(3):
        plain = specialize(pruned, d)
        want_plain, want_pruned = plain(x), pruned(x, d)
        cl = torch.channels_last
        for m in plain.modules():
            if isinstance(m, ChannelSelect):
                m.register_forward_hook(lambda mod, inp, out: seen.append(out.is_contiguous(memory_format=cl)))
        with torch.no_grad():
            _assert_same(plain.to(memory_format=cl)(x.to(memory_format=cl)), want_plain)
            _assert_same(copy.deepcopy(pruned).to(memory_format=cl)(x.to(memory_format=cl), d), want_pruned)
    assert seen and all(seen) and True in gathered


def _mobile_net():
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v2(weights=None, width_mult=0.5)


@pytest.mark.parametrize("make", [lambda: resnet26(10, width=0.25), _mobile_net], ids=["resnet26", "mobilenet_v2"])
def test_specialized_model_executes_only_its_domains_channels(make):
    model = _trained_like(make(), keep=0.5)
    pruned = prune(model)
    size = (3, 32, 32)
    for d in range(len(DOMAINS)):
        plain = specialize(pruned, d)
        executed = count_macs(plain, size)
        assert executed <= count_macs(model, size, d)  # what the domain needs (dependency-aware: even less)
        assert executed < count_macs(pruned, size, d, mask_aware=False)  # what the multi-domain model executes
        assert sum(p.numel() for p in plain.parameters()) < sum(p.numel() for p in pruned.parameters())
        # plain torch.nn that torch.fx traces (quantisation and other tools; pruning traces through its gathers)
        x = torch.randn(2, *size)
        _assert_same(torch.fx.symbolic_trace(plain)(x), plain(x))
        _assert_same(plain(x), model(x, d))
    if isinstance(model.backbone, torchvision.models.MobileNetV2):  # one gather before a depthwise conv, not two
        pairs = [m for m in plain.modules() if isinstance(m, nn.Sequential) and isinstance(m[0], ChannelSelect)]
        assert any(m[1].groups > 1 for m in pairs if isinstance(m[1], nn.Conv2d))
        assert not any(isinstance(m[1], nn.Sequential) for m in pairs)
        return
    # gathers only where a residual stream is read: a block's second conv reads its pruned first conv directly
    plain = specialize(pruned, 0)
    assert not isinstance(plain.layer1[0].conv2, nn.Sequential)
    assert any(isinstance(m, ChannelSelect) for m in plain.modules())


def test_specialize_with_everything_on_is_the_backbone_with_batchnorm_folded():
    backbone = resnet26(10, width=0.25).eval()
    model = to_multidomain(backbone, DOMAINS).eval()  # switches start on: every domain computes the backbone
    plain = specialize(model, 1)
    assert not any(isinstance(m, ChannelSelect) for m in plain.modules())
    assert [n for n, m in plain.named_modules() if isinstance(m, nn.BatchNorm2d)] == ["bn_final"]
    feats = nn.Sequential(*list(backbone.children())[:-1])
    x = torch.randn(2, 3, 32, 32)
    _assert_same(nn.Sequential(*list(plain.children())[:-1])(x), feats(x))


def test_fold_batchnorms_leaves_what_it_cannot_fold():
    class Shared(nn.Module):  # one BatchNorm after a conv whose output is also read elsewhere: no fold
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    m = Shared().eval()
    x = torch.randn(2, 3, 8, 8)
    before = m(x)
    fold_batchnorms(m)
    assert isinstance(m.bn, nn.BatchNorm2d)
    _assert_same(m(x), before)
    train = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))  # train mode: batch statistics, no fold
    fold_batchnorms(train)
    assert isinstance(train[1], nn.BatchNorm2d)


@pytest.mark.parametrize("arch", ["resnet26", "mobilenet_v2"])
def test_channel_multiple_rounds_what_each_convolution_reads_and_computes_the_same(arch):
    torch.manual_seed(0)
    backbone = resnet26(10, width=0.5) if arch == "resnet26" else torchvision.models.mobilenet_v2(width_mult=0.5)
    model = _trained_like(backbone, keep=0.4)
    pruned = prune(model)
    x = torch.randn(2, 3, 32, 32)
    rounded_somewhere = False
    for source in (model, pruned):
        for d in range(len(DOMAINS)):
            exact = specialize(source, d)
            rounded = specialize(source, d, channel_multiple=8)
            _assert_same(rounded(x), model(x, d))
            before = [m.in_channels for m in exact.modules() if isinstance(m, nn.Conv2d) and m.groups == 1]
            after = [m.in_channels for m in rounded.modules() if isinstance(m, nn.Conv2d) and m.groups == 1]
            assert len(before) == len(after) and all(a >= b for a, b in zip(after, before))
            rounded_somewhere |= after != before
            if source is model:  # from the trained model every width is there to round into, but the input's 3
                assert all(c % 8 == 0 for c in after[1:]), after
            assert count_macs(rounded, (3, 32, 32)) >= count_macs(exact, (3, 32, 32))
            assert specialize(source, d, channel_multiple=1).state_dict().keys() == exact.state_dict().keys()
    assert rounded_somewhere  # (the masks are not multiples of 8 by chance)
    same = specialize(pruned, 0, channel_multiple=torch.tensor(8))  # any integer type
    assert [m.in_channels for m in same.modules() if isinstance(m, nn.Conv2d)] == [
        m.in_channels for m in specialize(pruned, 0, channel_multiple=8).modules() if isinstance(m, nn.Conv2d)]


def test_specialize_refuses_what_it_cannot_read():
    with pytest.raises(TypeError, match="specialize expects a MultiDomainNet"):
        specialize(resnet26(10, width=0.25), 0)
    with pytest.raises(ValueError, match="unknown domain 'flowers'"):
        specialize(_trained_like(resnet26(10, width=0.25)), "flowers")
    for bad in (0, 2.5, True, torch.tensor(2.0)):
        with pytest.raises(ValueError, match="channel_multiple must be a whole number"):
            specialize(_trained_like(resnet26(10, width=0.25)), 0, channel_multiple=bad)


# only the ONNX tests need the deploy extra (CI installs it); specialize and the kernel cache are tested without it
needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                                reason='the deploy extra: pip install "mdlprune[deploy]"')


@needs_onnx
def test_onnx_export_equals_pytorch_for_both_kinds(tmp_path):
    from mdlprune.experiments.export import export_onnx, onnx_runtime_outputs

    model = _trained_like(resnet26(10, width=0.25))
    pruned = prune(model).train()  # export sets eval mode itself and leaves the model as it was
    x = torch.randn(5, 3, 32, 32)  # another batch size than the export's: the batch dimension is dynamic
    for specialized in (True, False):
        report = export_onnx(pruned, tmp_path / f"signs-{specialized}.onnx", "signs", specialized=specialized)
        assert report.max_abs_diff <= 1e-5 * report.output_scale
        _assert_same(torch.from_numpy(onnx_runtime_outputs(report.path, x)), model(x, 2))
    assert pruned.training


@needs_onnx
def test_onnx_export_of_a_mobile_net_with_depthwise_switches(tmp_path):
    """Grouped kernels, groups left at their bias (a scatter) and per-domain group masks export and run in ONNX
    Runtime, for the specialised and the multi-domain model."""
    from mdlprune.experiments.export import export_onnx, onnx_runtime_outputs

    torch.manual_seed(0)
    model = _trained_like(torchvision.models.mobilenet_v2(weights=None, width_mult=0.5))
    pruned = prune(model)
    assert any(getattr(m, "groups", 1) > 1 and m.domain_masks is not None for m in pruned.modules())
    x = torch.randn(3, 3, 32, 32)
    for specialized in (True, False):
        report = export_onnx(pruned, tmp_path / f"mobile-{specialized}.onnx", "glyphs", specialized=specialized)
        assert report.max_abs_diff <= 1e-5 * report.output_scale
        _assert_same(torch.from_numpy(onnx_runtime_outputs(report.path, x)), model(x, 1))


class _Named(nn.Module):
    """A backbone whose forward argument is not called x (the exporter must not rely on the name)."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect"), nn.BatchNorm2d(8), nn.Linear(8, 10)

    def forward(self, images):
        return self.fc(torch.relu(self.bn(self.conv(images))).mean((2, 3)))


@needs_onnx
def test_onnx_export_of_any_forward_signature(tmp_path):
    from mdlprune.experiments.export import export_onnx

    model = _trained_like(_Named())
    report = export_onnx(model, tmp_path / "named.onnx", 0, image_size=8)
    assert report.max_abs_diff <= 1e-5 * report.output_scale


@needs_onnx
def test_export_command(tmp_path, capsys):
    model = _trained_like(resnet26(10, width=0.25))
    save_model(prune(model), tmp_path / "pruned.pt")
    assert cli(["export", "--model", str(tmp_path / "pruned.pt"), "--domain", "all", "--out", str(tmp_path / "onnx")]) == 0
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == ["digits.onnx", "glyphs.onnx", "signs.onnx"]
    assert "ONNX Runtime vs PyTorch" in capsys.readouterr().out
    assert cli(["export", "--model", str(tmp_path / "pruned.pt"), "--domain", "flowers", "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown domain 'flowers'" in err
    assert cli(["export", "--model", str(tmp_path / "pruned.pt"), "--domain", "1", "--multi-domain",
                "--out", str(tmp_path / "glyphs.onnx")]) == 0  # an index, and the multi-domain model
    assert "multi-domain, domain fixed, domain glyphs" in capsys.readouterr().out
    assert cli(["export", "--model", str(tmp_path / "pruned.pt"), "--domain", "signs", "--channel-multiple", "8",
                "--out", str(tmp_path / "signs8.onnx")]) == 0  # rounded channels, still checked against PyTorch
    assert "specialised, domain signs" in capsys.readouterr().out
    assert cli(["export", "--model", str(tmp_path / "pruned.pt"), "--domain", "signs", "--channel-multiple", "8",
                "--multi-domain", "--out", str(tmp_path / "z.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--channel-multiple rounds the specialised model's channels" in err
    with pytest.raises(SystemExit):  # argparse: usage and one line naming the value
        cli(["export", "--model", str(tmp_path / "pruned.pt"), "--domain", "0", "--channel-multiple", "abc",
             "--out", str(tmp_path / "z.onnx")])
    assert "a channel multiple is a whole number ≥ 1 (1: no rounding), got 'abc'" in capsys.readouterr().err
    torch.save({"a": torch.zeros(1)}, tmp_path / "state.pt")
    assert cli(["export", "--model", str(tmp_path / "state.pt"), "--domain", "0", "--out", str(tmp_path / "y.onnx")]) == 2
    assert "not a model" in capsys.readouterr().err
    assert isinstance(load_model(tmp_path / "pruned.pt"), nn.Module)


def test_pruned_model_keeps_its_masked_kernels_per_domain(tmp_path):
    model = _trained_like(resnet26(10, width=0.25))
    pruned = prune(model)
    x = torch.randn(2, 3, 32, 32)
    masked = [m for m in pruned.modules() if getattr(m, "domain_masks", None) is not None]
    assert masked, "random masks differ by domain: some layers keep per-domain masks"
    with torch.no_grad():
        first = pruned(x, 1)
        kernel = masked[0]._domain_kernel(1)
        assert torch.equal(pruned(x, 1), first) and masked[0]._domain_kernel(1) is kernel  # reused, not recomputed
        masked[0].domain_masks[1].logical_not_()  # an edit of the masks invalidates the kernel
        assert not torch.equal(pruned(x, 1), first)
        masked[0].domain_masks = masked[0].domain_masks.clone()  # so does a new mask tensor (domain 1 restored)
        masked[0].domain_masks[1].logical_not_()
        _assert_same(pruned(x, 1), model(x, 1))
    with torch.inference_mode():  # a kernel kept under inference mode does not leak into autograd afterwards
        pruned(x, 1)
    pruned.heads.requires_grad_(True)
    pruned(x, 1).sum().backward()
    assert pruned.heads.heads[1].weight.grad is not None
    assert "_domain_cache" not in masked[0].__getstate__()  # neither copied nor saved
    save_model(pruned, tmp_path / "p.pt")
    assert not any(hasattr(m, "_domain_cache") for m in load_model(tmp_path / "p.pt").modules())


def test_a_model_pruned_under_inference_mode_runs_there_and_sees_edits():
    """Tensors made under ``torch.inference_mode`` count no in-place edits, so their per-domain kernels are not kept."""
    model = _trained_like(resnet26(10, width=0.25))
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        pruned = prune(model)
        for d in range(model.num_domains):
            _assert_same(pruned(x, d), model(x, d))
        masked = next(m for m in pruned.modules() if getattr(m, "domain_masks", None) is not None)
        before = pruned(x, 1)
        masked.weight.mul_(2)  # an in-place edit under inference mode (as load_state_dict there would make)
        assert not torch.equal(pruned(x, 1), before)


def test_a_model_that_keeps_no_domain_kernels_computes_the_same_and_holds_nothing(tmp_path):
    """``keep_domain_kernels(model, False)``: every eval pass slices the domain's kernel anew (memory-short devices)."""
    model = _trained_like(resnet26(10, width=0.25))
    pruned = prune(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        kept = [pruned(x, d) for d in range(model.num_domains)]
        assert any("_domain_cache" in m.__dict__ for m in pruned.modules())
        assert keep_domain_kernels(pruned, False) is pruned
        assert not any("_domain_cache" in m.__dict__ for m in pruned.modules())  # what was kept is released
        for d in range(model.num_domains):
            assert torch.equal(pruned(x, d), kept[d])  # the same kernels, computed per call
        assert not any("_domain_cache" in m.__dict__ for m in pruned.modules())
        save_model(pruned, tmp_path / "p.pt")
        loaded = load_model(tmp_path / "p.pt")  # the choice is part of the saved model
        assert not any(m.keep_domain_kernels for m in loaded.modules() if isinstance(m, PrunedConv2d))
        keep_domain_kernels(pruned, True)
        assert torch.equal(pruned(x, 1), kept[1]) and any("_domain_cache" in m.__dict__ for m in pruned.modules())


def test_a_model_that_keeps_domain_models_serves_them_and_rebuilds_them_after_an_edit(tmp_path):
    """``keep_domain_models(model, True)``: eval passes without gradients run each domain's specialised model."""
    pruned = prune(_trained_like(resnet26(10, width=0.25))).eval()
    x, size = torch.randn(2, 3, 32, 32), (3, 32, 32)
    needed = count_macs(pruned, size, 1)
    with torch.no_grad():
        layers = [pruned(x, d) for d in range(3)]
    keep_domain_kernels(pruned, False)
    assert keep_domain_models(pruned, True) is pruned
    with torch.no_grad():
        for d in range(3):
            _assert_same(pruned(x, d), layers[d])  # BatchNorm folded: equal up to rounding
    kept = pruned.__dict__["_domain_models"]["models"]
    assert sorted(kept) == [0, 1, 2]
    assert not any(isinstance(m, (PrunedConv2d, DomainModule)) for k in kept.values() for m in k.modules())
    with torch.inference_mode():  # built or served there, it serves outside too
        _assert_same(pruned(x, 2), layers[2])
    # the MACs: what runs is the domain's model; what the domain needs is counted on its layers, as before
    assert count_macs(pruned, size, 1, mask_aware=False) == count_macs(specialize(pruned, 1), size)
    assert count_macs(pruned, size, 1) == needed
    # an edit of a parameter or buffer: the kept models are rebuilt
    reference = keep_domain_models(copy.deepcopy(pruned), False)
    with torch.no_grad():
        for m in (pruned, reference):
            next(b for b in m.modules() if isinstance(b, nn.BatchNorm2d)).running_mean.add_(0.5)
        _assert_same(pruned(x, 0), reference(x, 0))
        assert not torch.allclose(reference(x, 0), layers[0])  # (the edit changes the output)
    # an edit of domain 1's BatchNorm: domain 1's model is rebuilt, domain 0's (which does not read it) is kept
    with torch.no_grad():
        pruned(x, 0), pruned(x, 1)
        served = dict(pruned.__dict__["_domain_models"]["models"])
        for m in (pruned, reference):
            bn = next(b for b in m.modules() if isinstance(b, DomainBatchNorm2d))
            bn.bns[1].running_var.mul_(3.0)
        _assert_same(pruned(x, 1), reference(x, 1))
        _assert_same(pruned(x, 0), reference(x, 0))
        models = pruned.__dict__["_domain_models"]["models"]
        assert models[0] is served[0] and models[1] is not served[1]
        # a tensor domain 1's BatchNorm shares with domain 0's is domain 0's too: its edit is seen there
        for m in (pruned, reference):
            bn = next(b for b in m.modules() if isinstance(b, DomainBatchNorm2d))
            bn.bns[1].weight = bn.bns[0].weight
        _assert_same(pruned(x, 0), reference(x, 0))
        for m in (pruned, reference):
            next(b for b in m.modules() if isinstance(b, DomainBatchNorm2d)).bns[1].weight.mul_(0.5)
        _assert_same(pruned(x, 0), reference(x, 0))
        # so is a whole BatchNorm that is domain 1's entry and domain 0's too
        for m in (pruned, reference):
            bn = [b for b in m.modules() if isinstance(b, DomainBatchNorm2d)][1]
            bn.bns[1] = bn.bns[0]
        _assert_same(pruned(x, 0), reference(x, 0))
        for m in (pruned, reference):
            [b for b in m.modules() if isinstance(b, DomainBatchNorm2d)][1].bns[1].running_var.mul_(9.0)
        _assert_same(pruned(x, 0), reference(x, 0))
    # passes with gradients, and train mode, run the layers
    pruned.__dict__.pop("_domain_models")
    assert torch.equal(pruned(x, 0), reference(x, 0)) and "_domain_models" not in pruned.__dict__
    # saved with the model, without what it kept
    with torch.no_grad():
        pruned(x, 0)
    save_model(pruned, tmp_path / "p.pt")
    loaded = load_model(tmp_path / "p.pt")
    assert loaded.keep_domain_models and "_domain_models" not in loaded.__dict__
    with torch.no_grad():
        _assert_same(loaded(x, 0), reference(x, 0))
    # a conversion drops what was kept (new tensors); a model made under inference mode runs its layers
    loaded.double()
    assert "_domain_models" not in loaded.__dict__
    with torch.no_grad():
        _assert_same(loaded(x.double(), 0), reference.double()(x.double(), 0))
    with torch.inference_mode():
        made_there = keep_domain_models(prune(_trained_like(resnet26(10, width=0.25))), True).eval()
        assert torch.equal(made_there(x, 1), keep_domain_models(made_there, False)(x, 1))
    with pytest.raises(TypeError, match="keep_domain_models expects a MultiDomainNet"):
        keep_domain_models(resnet26(10), True)


def test_kept_domain_models_step_aside_for_training_hooks_checks_and_new_tensors():
    """Where a pass must run the layers (a module in train mode, a hook, an equivalence check) they run; a tensor put
    in by hand is seen; a domain first served under inference mode serves outside it."""
    from mdlprune.method.macs import switch_costs
    from mdlprune.method.prune import compare_outputs
    from mdlprune.training import recalibrate_batchnorm

    model = _trained_like(resnet26(10, width=0.25))
    pruned = keep_domain_models(prune(model), True).eval()
    x = torch.randn(4, 3, 32, 32)
    layers = keep_domain_models(copy.deepcopy(pruned), False)
    assert compare_outputs(model, pruned, x).max_abs_diff <= 1e-5 * compare_outputs(model, pruned, x).output_scale
    assert not pruned.__dict__.get("_domain_models", {}).get("models")  # the check ran the layers
    # BatchNorm recalibration (BatchNorms in train mode, no gradients) collects statistics through the layers
    from mdlprune.data.mini import TensorLoader

    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    loaders = [TensorLoader(images, torch.zeros(8, dtype=torch.long), 4, 32, [0.5] * 3, [0.25] * 3, shuffle=False,
                            augment=False, flip=False) for _ in range(3)]  # fmt: skip
    recalibrate_batchnorm(pruned, loaders, batches=1)
    recalibrate_batchnorm(layers, loaders, batches=1)
    with torch.no_grad():
        _assert_same(pruned(x, 1), layers(x, 1))
        seen = []
        handle = pruned.backbone.layer1[0].conv1.register_forward_hook(lambda *a: seen.append(1))
        assert torch.equal(pruned(x, 1), layers(x, 1)) and seen  # a hooked pass runs the layers
        handle.remove()
    # a tensor assigned by hand (assign=True puts it in): the domain's model is rebuilt from it
    head = pruned.backbone.get_submodule(pruned.head_name).heads[0]
    head.load_state_dict({k: v + 1 for k, v in head.state_dict().items()}, assign=True)
    layers.backbone.get_submodule(layers.head_name).heads[0].load_state_dict(head.state_dict())
    with torch.inference_mode():  # domain 2 first served here
        _assert_same(pruned(x, 2), layers(x, 2))
    with torch.no_grad():
        _assert_same(pruned(x, 0), layers(x, 0))
        _assert_same(pruned(x, 2), layers(x, 2))
    # per-layer MAC costs (a MAC-weighted budget, of a model with switches) are counted on the layers
    served = keep_domain_models(copy.deepcopy(model), True)
    assert torch.equal(switch_costs(served, "macs", (3, 32, 32)), switch_costs(model, "macs", (3, 32, 32)))
