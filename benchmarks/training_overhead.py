"""Training overhead of the switches: time per training step of the switch model (BA² / Ours: frozen kernels,
straight-through switches, per-domain BN, the budget and sharing losses, lazy Adam, the dual step, the step log)
vs plain fine-tuning of the same backbone, same batch, same device, measured side by side in one run.

Three steps, interleaved: plain fine-tuning (the backbone itself, every weight, SGD with momentum: the target's
baseline); our trainer's Finetune step (:meth:`mdlprune.training.Trainer.train_step` on the multi-domain model, whose
switches stay on but are still binarised and multiplied in, and whose BatchNorms route by domain); and the switch
method's ``Trainer.train_step``, one domain's batch, with the preset's optimizers: what ``mdlprune train`` runs.

    python benchmarks/training_overhead.py --device cpu                  # batch 64, 32 px, 2 threads
    python benchmarks/training_overhead.py --device cuda --batch 256 --size 64

Target (issue #6): switch step ÷ plain fine-tuning ≤ 1.15 on CPU, ≤ 1.10 on GPU.
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F
from common import markdown, save

import mdlprune
from mdlprune.experiments.timing import measure
from mdlprune.method.backbones import resnet26
from mdlprune.training import Trainer, TrainConfig


def steps(backbone, batch: int, size: int, device: str, method: str = "ours"):
    """The three training steps to compare (module docstring), on one batch of domain 0; ``method`` at β = 0.5."""
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(10, (batch,), device=device)
    loaders = [[(x, y)]] * 5  # one batch per domain: the trainer only asks their lengths here

    plain = copy.deepcopy(backbone).to(device).train()
    optimizer = torch.optim.SGD(plain.parameters(), lr=1e-3, momentum=0.9)

    def plain_step():
        loss = F.cross_entropy(plain(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def trainer_step(name: str):
        model = mdlprune.to_multidomain(copy.deepcopy(backbone), [10] * 5).to(device)
        trainer = Trainer(model, loaders, TrainConfig(method=name, beta=0.5), progress=False)
        return lambda: trainer.train_step([(0, x, y)])

    return {"plain fine-tuning": plain_step, "Finetune (trainer)": trainer_step("finetune"), "switch": trainer_step(method)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--widths", type=float, nargs="+", default=[0.375, 1.0])
    p.add_argument("--min-run-time", type=float, default=3.0)
    p.add_argument("--method", default="ours", choices=["ours", "ba2"], help="the switch method to time")
    p.add_argument("--name", default="", help="appended to the results file's name (e.g. b32 for another batch)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for width in args.widths:
        runs = steps(resnet26(10, width=width), args.batch, args.size, args.device, args.method)
        times = {name: [] for name in runs}
        for _ in range(3):  # interleaved, so that drifts in machine load affect every step alike
            for name, fn in runs.items():
                times[name].append(measure(fn, args.device, args.threads, args.min_run_time / 3))
        ms = {name: sorted(t.median_ms for t in ts)[1] for name, ts in times.items()}
        rows.append({"backbone": f"ResNet-26 w{width}", "method": args.method, "batch": args.batch, "size": args.size,
                     **{f"{name} ms/step": v for name, v in ms.items()},
                     "ratio": ms["switch"] / ms["plain fine-tuning"],
                     "ratio to Finetune (trainer)": ms["switch"] / ms["Finetune (trainer)"],
                     "spread (IQR, switch)": max(t.iqr_ms for t in times["switch"])})  # fmt: skip
        print(rows[-1], flush=True)
    print(markdown(rows, list(rows[0])))
    name = "training_overhead" + (f"-{args.name}" if args.name else "")
    print(f"saved {save(name, args.device, rows, threads=args.threads)}")


if __name__ == "__main__":
    main()
