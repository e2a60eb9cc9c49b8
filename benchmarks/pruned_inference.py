"""Pruned inference: latency of the pruned model vs the single-domain backbone for β ∈ {1, 0.75, 0.5, 0.25},
next to the MAC ratio, with and without dependency-aware pruning (which removes producer filters and so some of
the input gathers).

Masks: what Ours converges to, all domains sharing the same channels, with a keep ratio β in every layer (a
random subset per layer, seeded), or the trained masks of a checkpoint (``--checkpoint``).

    python benchmarks/pruned_inference.py --device cpu                   # batches 1 and 64, 2 threads
    python benchmarks/pruned_inference.py --device cuda --batches 256 --size 64

Target (issue #6): latency ratio ≤ 1.3 × MAC ratio at batch 64 on CPU.
"""

from __future__ import annotations

import argparse

import torch
from common import markdown, save

import mdlprune
from mdlprune.method.backbones import resnet26
from mdlprune.method.pruned import PrunedConv2d
from mdlprune.training.checkpoint import load_checkpoint
from mdlprune.experiments.timing import measure


@torch.no_grad()
def shared_masks(model: mdlprune.MultiDomainNet, beta: float, seed: int = 0) -> None:
    """Every domain uses the same random fraction β of each layer's input channels (at least one)."""
    g = torch.Generator().manual_seed(seed)
    for _, layer in model.switch_layers():
        c = layer.in_channels
        keep = torch.randperm(c, generator=g)[: max(1, round(beta * c))]
        on = torch.zeros(c, dtype=torch.bool)
        on[keep] = True
        layer.switches.copy_(torch.where(on, 1e-3, -1e-3).expand_as(layer.switches))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--width", type=float, default=0.375)
    p.add_argument("--betas", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25])
    p.add_argument("--checkpoint", help="use the trained masks of this training checkpoint instead")
    p.add_argument("--min-run-time", type=float, default=4.0, help="seconds per model and setting, over the repeats")
    p.add_argument("--repeats", type=int, default=5, help="interleaved backbone/pruned measurements")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = args.device
    backbone = resnet26(10, width=args.width).eval()
    size = (3, args.size, args.size)
    base_macs = mdlprune.count_macs(backbone, size)
    rows = []
    settings = [("checkpoint", None)] if args.checkpoint else [(f"β={b}", b) for b in args.betas]
    for label, beta in settings:
        model = mdlprune.to_multidomain(backbone, [10] * 5).eval()
        if beta is None:
            state = load_checkpoint(args.checkpoint)["model"]
            model.load_state_dict({k: v for k, v in state.items() if "switches" in k}, strict=False)
        else:
            shared_masks(model, beta)
        for aware in (True, False):
            pruned = mdlprune.prune(model, dependency_aware=aware).to(dev).eval()
            gathers = sum(isinstance(m, PrunedConv2d) and m.in_index is not None for m in pruned.modules())
            mac_ratio = mdlprune.count_macs(pruned.cpu(), size, 0, mask_aware=False) / base_macs
            pruned.to(dev)
            for batch in args.batches:
                x = torch.randn(batch, *size, device=dev)
                b = backbone.to(dev)
                # interleaved, so that drifts in machine load hit both alike; the median of the repeats
                base_ms, pruned_ms = [], []
                for _ in range(args.repeats):
                    base_ms.append(measure(lambda: b(x), dev, args.threads, args.min_run_time / args.repeats).median_ms)
                    pruned_ms.append(measure(lambda: pruned(x, 0), dev, args.threads, args.min_run_time / args.repeats).median_ms)
                t_base, t_pruned = sorted(base_ms)[len(base_ms) // 2], sorted(pruned_ms)[len(pruned_ms) // 2]
                ratios = sorted(p / q for p, q in zip(pruned_ms, base_ms))
                ratio = ratios[len(ratios) // 2]
                rows.append({"masks": label, "dependency-aware": aware, "batch": batch, "gathers": gathers,
                             "MAC ratio": mac_ratio, "backbone ms": t_base, "pruned ms": t_pruned,
                             "latency ratio": ratio, "ratio range": f"{ratios[0]:.2f}–{ratios[-1]:.2f}",
                             "latency / MAC ratio": ratio / mac_ratio})  # fmt: skip
                print(rows[-1], flush=True)
    print(markdown(rows, list(rows[0])))
    print(f"saved {save('pruned_inference', dev, rows, threads=args.threads, width=args.width)}")


if __name__ == "__main__":
    main()
