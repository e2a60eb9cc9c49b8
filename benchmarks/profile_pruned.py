"""Where the pruned model's time goes: every convolution of the backbone and of the pruned model timed alone on
its real input (the pruned one with and without its gather and mask), grouped by stage, next to the stage's
MAC ratio; and the whole forward pass, whose time beyond the convolutions is BatchNorm, ReLU, residual adds,
pooling and the head, on the unpruned residual stream. (We time each piece rather than read torch.profiler,
whose per-operator overhead inflates these small operators unevenly.)

    python benchmarks/profile_pruned.py --checkpoint runs/sweep/checkpoints/ours-beta0.5.pt   # trained masks
    python benchmarks/profile_pruned.py --beta 0.5                                            # shared random masks

It answers why a model with half the MACs does not run in half the time (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
import torch.nn as nn
import torch.nn.functional as F
from common import markdown, save
from pruned_inference import shared_masks

import mdlprune
from mdlprune.data.shipped import load_backbone
from mdlprune.method.pruned import PrunedConv2d
from mdlprune.training.checkpoint import load_checkpoint
from mdlprune.experiments.timing import measure


def conv_inputs(model: nn.Module, kind: type, x: torch.Tensor, *args) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """Every ``kind`` module of ``model`` with the input it receives on ``x``."""
    seen, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, kind):
            hooks.append(m.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, (m, i[0]))))
    with torch.no_grad():
        model(x, *args)
    for h in hooks:
        h.remove()
    return seen


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="a training checkpoint of the shipped mini backbone (trained masks)")
    p.add_argument("--beta", type=float, default=0.5, help="without --checkpoint: shared random masks, keep ratio β")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-run-time", type=float, default=0.3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    backbone = load_backbone().eval()
    if args.checkpoint:
        state = load_checkpoint(args.checkpoint)
        model = mdlprune.to_multidomain(backbone, [1] * len(state["domain_names"]))
        model.load_state_dict({k: v for k, v in state["model"].items() if ".heads." not in k}, strict=False)
        label = args.checkpoint
    else:
        model = mdlprune.to_multidomain(backbone, [1] * 5)
        shared_masks(model, args.beta)
        label = f"shared random masks, β = {args.beta}"
    model.eval()
    pruned = mdlprune.prune(model).eval()
    x = torch.randn(args.batch, 3, args.size, args.size)

    base = conv_inputs(backbone, nn.Conv2d, x)
    mine = conv_inputs(pruned.backbone, PrunedConv2d, x)
    stages: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        for name, (conv, inp) in base.items():
            pconv, pinp = mine[name]
            t_base = measure(lambda: conv(inp), "cpu", args.threads, args.min_run_time).median_ms
            t_pruned = measure(lambda: pconv(pinp, 0), "cpu", args.threads, args.min_run_time).median_ms
            gathered = pinp.index_select(1, pconv.in_index) if pconv.in_index is not None else pinp
            w = pconv.weight
            t_conv = measure(lambda: F.conv2d(gathered, w, pconv.bias, pconv.stride, pconv.padding), "cpu",
                             args.threads, args.min_run_time).median_ms  # fmt: skip
            macs_base = conv.weight.numel() * inp.shape[-2] * inp.shape[-1] / (conv.stride[0] * conv.stride[1])
            macs_pruned = w.numel() * inp.shape[-2] * inp.shape[-1] / (conv.stride[0] * conv.stride[1])
            stage = name.split(".")[0] if name.startswith("layer") else "stem"
            row = stages.setdefault(stage, defaultdict(float))
            row["backbone MMACs"] += macs_base / 1e6
            row["pruned MMACs"] += macs_pruned / 1e6
            row["backbone conv ms"] += t_base
            row["pruned conv ms"] += t_conv
            row["pruned layer ms (gather, mask, conv)"] += t_pruned
    rows = []
    for stage, r in stages.items():
        rows.append({"stage": stage, **{k: round(v, 3) for k, v in r.items()}})
        rows[-1]["MAC ratio"] = r["pruned MMACs"] / r["backbone MMACs"]
        rows[-1]["time ratio"] = r["pruned layer ms (gather, mask, conv)"] / r["backbone conv ms"]
        rows[-1]["backbone GMAC/s"] = r["backbone MMACs"] * args.batch / r["backbone conv ms"]
    total = {k: sum(r[k] for r in stages.values()) for k in next(iter(stages.values()))}
    rows.append({"stage": "all convolutions", **{k: round(v, 3) for k, v in total.items()},
                 "MAC ratio": total["pruned MMACs"] / total["backbone MMACs"],
                 "time ratio": total["pruned layer ms (gather, mask, conv)"] / total["backbone conv ms"],
                 "backbone GMAC/s": total["backbone MMACs"] * args.batch / total["backbone conv ms"]})  # fmt: skip
    print(f"{label}: per stage, batch {args.batch}, {args.size} px, {args.threads} threads")
    print(markdown(rows, list(rows[0])))

    with torch.no_grad():
        whole = {"backbone": measure(lambda: backbone(x), "cpu", args.threads, 2.0).median_ms,
                 "pruned": measure(lambda: pruned(x, 0), "cpu", args.threads, 2.0).median_ms}  # fmt: skip
    convs = {"backbone": total["backbone conv ms"], "pruned": total["pruned layer ms (gather, mask, conv)"]}
    split = [{"model": k, "forward ms": whole[k], "convolutions ms": convs[k], "everything else ms": whole[k] - convs[k],
              "ratio to the backbone's forward": whole[k] / whole["backbone"]} for k in whole]  # fmt: skip
    print("\nthe whole forward pass (median), and its part outside the convolutions")
    print(markdown(split, list(split[0])))
    print(f"saved {save('profile_pruned-' + ('trained' if args.checkpoint else f'beta{args.beta:g}'), 'cpu', rows, masks=label, forward=split, batch=args.batch, size=args.size, threads=args.threads)}")


if __name__ == "__main__":
    main()
