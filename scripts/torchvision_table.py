"""Which torchvision classifiers convert with no arguments, and what pruning buys on them (docs/TORCHVISION.md).

Each model (``weights=None``: the structure is what matters, and nothing is downloaded) is converted with
``to_multidomain(model, [10, 10, 10])`` and nothing else, given random masks (every switch on with probability
β = 0.5, drawn per domain, so the domains differ), pruned, and measured:

* the largest difference between the pruned and the switch model over the 3 domains, relative to the output scale;
* Params (pruned model, all domains, heads excluded) relative to the single-domain backbone;
* MACs relative to the backbone, mean over domains: *needed* (the channels each domain switches on, the papers'
  count) and *executed* (what the pruned model's kernels compute in an eval pass);
* for grouped and depthwise convolutions alone, the executed MACs relative to the backbone's.

    python scripts/torchvision_table.py > docs/TORCHVISION.md
"""

from __future__ import annotations

import platform
import sys
import time

import torch
import torch.nn as nn
import torchvision

from mdlprune import count_macs, needed_macs, param_bits, prune, randomize_switches, to_multidomain

MODELS = ["resnet18", "resnet50", "wide_resnet50_2", "resnext50_32x4d", "vgg11_bn", "densenet121", "googlenet",
          "squeezenet1_1", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "mnasnet0_5",
          "shufflenet_v2_x1_0", "regnet_x_400mf", "regnet_y_400mf", "convnext_tiny"]  # fmt: skip
SIZE = 64


def perturb_batchnorms(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics, so that equal outputs are not an artefact of fresh BatchNorms."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
                m.weight.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.num_features, generator=g))


def row(name: str) -> str:
    torch.manual_seed(0)
    kwargs = {"init_weights": True} if name == "googlenet" else {}  # (torchvision warns without it)
    backbone = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
    perturb_batchnorms(backbone)
    model = to_multidomain(backbone, [10, 10, 10]).eval()
    randomize_switches(model, keep=0.5, seed=1)
    pruned = prune(model)
    x = torch.randn(2, 3, SIZE, SIZE)
    err = 0.0
    with torch.no_grad():
        for d in range(3):
            ref = model(x, d)
            err = max(err, float((pruned(x, d) - ref).abs().max() / ref.abs().max()))
    size = (3, SIZE, SIZE)
    dense, dense_layers = count_macs(backbone, size, by_layer=True)
    needed = sum(needed_macs(pruned, size, d) for d in range(3)) / 3 / dense
    executed, grouped = 0.0, 0.0
    grouped_names = [n for n, m in backbone.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    for d in range(3):  # executed MACs, by layer
        total, layers = count_macs(pruned, size, d, mask_aware=False, by_layer=True)
        executed += total / dense / 3
        if grouped_names:
            grouped += sum(layers[n] for n in grouped_names) / sum(dense_layers[n] for n in grouped_names) / 3
    convs = [m for m in backbone.modules() if isinstance(m, nn.Conv2d)]
    switched = len(model.switch_layers())
    params = param_bits(pruned) / param_bits(backbone, model.head_name)
    grouped_cell = f"{len(grouped_names)} · {grouped:.2f}" if grouped_names else "—"
    return (f"| {name} | `{model.head_name}` | {switched}/{len(convs)} | {grouped_cell} | {params:.2f} | {needed:.2f} | "
            f"{executed:.2f} | {err:.1e} |")  # fmt: skip


def main() -> None:
    start = time.time()
    rows = [row(n) for n in MODELS]
    print("# Torchvision classifiers: conversion with no arguments, pruning, costs\n")
    print("Each model (`weights=None`) is converted with `to_multidomain(model, [10, 10, 10])` and no other argument,")
    print("given random masks (each switch on with probability β = 0.5, drawn per domain: the domains differ), and")
    print(f"pruned; inputs {SIZE}×{SIZE}. Params and MACs are relative to the single-domain backbone; MACs are the mean")
    print("over the 3 domains. **Needed** MACs count the channels each domain switches on (the papers' count, and")
    print("every MACs column of docs/RESULTS.md); **executed** MACs what the pruned model's kernels compute in an eval")
    print("pass: an ungrouped layer convolves the domain's own channels, a grouped one the union of the domains'")
    print("channels with the domain's mask multiplied in. *Grouped* gives the number of grouped/depthwise convolutions")
    print("and their executed MACs relative to the backbone's. *Error*: the largest |pruned − switch model| over the")
    print("domains, relative to the largest output.\n")
    print("| model | head found | convs with switches | grouped · executed | Params | needed MACs | executed MACs | error |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(r)
    print()
    print("The one conv without switches in SqueezeNet is its classifier (a 1×1 convolution, made per domain). In")
    print("ConvNeXt only the stem, the downsampling layers and the depthwise convolutions are `nn.Conv2d`; its")
    print("pointwise layers are `nn.Linear` on channels-last tensors, which get no switches (docs/METHOD.md §1).")
    print("Random masks that differ by domain are the hard case for grouped layers: a grouped layer computes every")
    print("group some domain reads, for every domain (a channel a domain switches off is a zero kernel there, so")
    print("needed MACs fall by half while executed ones do not). A depthwise channel goes when no domain reads its")
    print("output (1 in 8 at random masks: MobileNetV2, MnasNet, ShuffleNet); squeeze-excitation (MobileNetV3,")
    print("EfficientNet) and ConvNeXt's LayerNorm read every channel, so there none goes. Grouped convolutions of 4 or")
    print("more channels per group (ResNeXt, RegNet) keep as many channels in every group.\n")
    print(f"Command: `python scripts/torchvision_table.py > docs/TORCHVISION.md` ({platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"{time.time() - start:.0f} s).")


if __name__ == "__main__":
    sys.exit(main())
