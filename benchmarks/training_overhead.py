"""Training overhead of the switches: time per training step of the switch model (BA² / Ours: frozen kernels,
straight-through switches, per-domain BN) vs plain fine-tuning of the same backbone, same batch, same device,
measured side by side in one run.

    python benchmarks/training_overhead.py --device cpu                  # batch 64, 32 px, 2 threads
    python benchmarks/training_overhead.py --device cuda --batch 256 --size 64

Target (issue #6): ratio ≤ 1.15 on CPU, ≤ 1.10 on GPU.
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F
from common import markdown, save

import mdlprune
from mdlprune.method.losses import BudgetLoss, IntersectionLoss
from mdlprune.method.backbones import resnet26
from mdlprune.experiments.timing import measure


def steps(backbone, batch: int, size: int, device: str):
    """Two training steps to compare: fine-tuning all weights, and a BA²+sharing step of domain 0."""
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(10, (batch,), device=device)

    finetune = copy.deepcopy(backbone).to(device).train()
    finetune.fc = torch.nn.Linear(finetune.fc.in_features, 10).to(device)
    opt_ft = torch.optim.SGD(finetune.parameters(), lr=1e-3, momentum=0.9)

    def finetune_step():
        loss = F.cross_entropy(finetune(x), y)
        opt_ft.zero_grad(set_to_none=True)
        loss.backward()
        opt_ft.step()

    model = mdlprune.to_multidomain(backbone, [10] * 5).to(device).train()
    opt_s = torch.optim.Adam(model.switch_parameters(), lr=1e-4)
    opt_h = torch.optim.SGD(model.domain_parameters(), lr=1e-3, momentum=0.9)
    budget = BudgetLoss(5, 0.5).to(device)
    sharing = IntersectionLoss().to(device)

    def switch_step():
        masks = model.binary_masks()
        loss = F.cross_entropy(model(x, 0), y) + budget(masks, 0) + sharing(masks, 0.5)
        opt_s.zero_grad(set_to_none=True)
        opt_h.zero_grad(set_to_none=True)
        loss.backward()
        opt_s.step()
        opt_h.step()
        with torch.no_grad():
            budget.dual_step(model.binary_masks(), 0)

    return finetune_step, switch_step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--widths", type=float, nargs="+", default=[0.375, 1.0])
    p.add_argument("--min-run-time", type=float, default=3.0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for width in args.widths:
        ft, sw = steps(resnet26(10, width=width), args.batch, args.size, args.device)
        # interleave the two measurements so that drifts in machine load affect both alike
        t_ft, t_sw = [], []
        for _ in range(3):
            t_ft.append(measure(ft, args.device, args.threads, args.min_run_time / 3))
            t_sw.append(measure(sw, args.device, args.threads, args.min_run_time / 3))
        ft_ms = sorted(t.median_ms for t in t_ft)[1]
        sw_ms = sorted(t.median_ms for t in t_sw)[1]
        rows.append({"backbone": f"ResNet-26 w{width}", "batch": args.batch, "size": args.size,
                     "finetune ms/step": ft_ms, "switch ms/step": sw_ms, "ratio": sw_ms / ft_ms,
                     "spread (IQR, switch)": max(t.iqr_ms for t in t_sw)})  # fmt: skip
        print(rows[-1], flush=True)
    print(markdown(rows, list(rows[0])))
    print(f"saved {save('training_overhead', args.device, rows, threads=args.threads)}")


if __name__ == "__main__":
    main()
