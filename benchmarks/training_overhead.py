"""Training overhead of the switches: time per training step of the switch model (BA² / Ours: frozen kernels,
straight-through switches, per-domain BN, the budget and sharing losses, lazy Adam, the dual step, the step log)
vs plain fine-tuning of the same backbone, same batch, same device, measured side by side in one run.

Both steps are :meth:`mdlprune.training.Trainer.train_step` itself, one domain's batch, with the preset's optimizers: what
``mdlprune train`` runs, not a re-creation of it.

    python benchmarks/training_overhead.py --device cpu                  # batch 64, 32 px, 2 threads
    python benchmarks/training_overhead.py --device cuda --batch 256 --size 64

Target (issue #6): ratio ≤ 1.15 on CPU, ≤ 1.10 on GPU.
"""

from __future__ import annotations

import argparse
import copy

import torch
from common import markdown, save

import mdlprune
from mdlprune.experiments.timing import measure
from mdlprune.method.backbones import resnet26
from mdlprune.training import Trainer, TrainConfig


def steps(backbone, batch: int, size: int, device: str, method: str = "ours"):
    """Two training steps to compare, each ``Trainer.train_step`` on one batch of domain 0: Finetune's and
    ``method``'s (β = 0.5)."""
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(10, (batch,), device=device)
    loaders = [[(x, y)]] * 5  # one batch per domain: the trainer only asks their lengths here

    def step(name: str):
        model = mdlprune.to_multidomain(copy.deepcopy(backbone), [10] * 5).to(device)
        trainer = Trainer(model, loaders, TrainConfig(method=name, beta=0.5), progress=False)
        return lambda: trainer.train_step([(0, x, y)])

    return step("finetune"), step(method)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--widths", type=float, nargs="+", default=[0.375, 1.0])
    p.add_argument("--min-run-time", type=float, default=3.0)
    p.add_argument("--method", default="ours", choices=["ours", "ba2"], help="the switch method to time")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for width in args.widths:
        ft, sw = steps(resnet26(10, width=width), args.batch, args.size, args.device, args.method)
        # interleave the two measurements so that drifts in machine load affect both alike
        t_ft, t_sw = [], []
        for _ in range(3):
            t_ft.append(measure(ft, args.device, args.threads, args.min_run_time / 3))
            t_sw.append(measure(sw, args.device, args.threads, args.min_run_time / 3))
        ft_ms = sorted(t.median_ms for t in t_ft)[1]
        sw_ms = sorted(t.median_ms for t in t_sw)[1]
        rows.append({"backbone": f"ResNet-26 w{width}", "method": args.method, "batch": args.batch, "size": args.size,
                     "finetune ms/step": ft_ms, "switch ms/step": sw_ms, "ratio": sw_ms / ft_ms,
                     "spread (IQR, switch)": max(t.iqr_ms for t in t_sw)})  # fmt: skip
        print(rows[-1], flush=True)
    print(markdown(rows, list(rows[0])))
    print(f"saved {save('training_overhead', args.device, rows, threads=args.threads)}")


if __name__ == "__main__":
    main()
