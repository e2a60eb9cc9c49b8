"""How the quick preset (``mini-quick``, what CI and the course's quick runs train) was chosen (docs/RESULTS.md §4).

Each variant trains the small sweep notebook 06 trains in quick mode (Feature, Finetune, BA² and Ours at β = 1 and
0.5) from scratch, in a checkpoint folder of its own, and prints every run's accuracies, its S-score against the
variant's own Finetune, Params, MACs and the largest θ̄_d. A variant is the ``mini-quick`` preset with a data size
and training overrides; ``chosen`` is the preset as shipped.

    python scripts/quick_presets.py                      # every variant, about 6 minutes each on two CPU cores
    python scripts/quick_presets.py before chosen        # some of them
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from mdlprune.data import mini_decathlon
from mdlprune.data.shipped import load_backbone
from mdlprune.experiments.runs import run_methods
from mdlprune.method.metrics import s_score

SMALL = {"train": 200, "val": 60, "test": 300}  # the preset's earlier data (it tested on 100 images)
VARIANTS = {  # name: (data size, training overrides of mini-quick, what it is)
    "before": (SMALL, {"rounds": 16, "lr_milestones": [12], "lr_switches": 5e-4},
               "200 training images per domain, 16 rounds, switches at 5e-4 (the earlier preset)"),
    "whole-train": ("quick", {"rounds": 16, "lr_milestones": [12], "lr_switches": 5e-4},
                    "the default training sets, otherwise as before"),
    "slower-switches": ("quick", {"rounds": 16, "lr_milestones": [12]}, "... and switches at 2.5e-4"),
    "chosen": ("quick", {}, "... and 12 rounds (the preset as shipped)"),
    "batch-32": ("quick", {"rounds": 16, "lr_milestones": [12], "batch_size": 32, "lr_switches": 5e-4},
                 "the default training sets, 16 rounds at batch 32, switches at 5e-4"),
}  # fmt: skip
METHODS = [("feature", None), ("finetune", None), ("ba2", 1.0), ("ours", 1.0), ("ba2", 0.5), ("ours", 0.5)]


def run_variant(name: str) -> None:
    size, overrides, what = VARIANTS[name]
    torch.manual_seed(0)
    bench, backbone = mini_decathlon(size=size), load_backbone()
    with tempfile.TemporaryDirectory() as checkpoints:
        start = time.perf_counter()
        results = run_methods(METHODS, backbone, bench, checkpoint_dir=checkpoints, progress=False, quick=True,
                              log=lambda line: None, **overrides)  # fmt: skip
        seconds = time.perf_counter() - start
    baseline = next(r for r in results if r.method == "finetune").accuracies
    print(f"\n{name}: {what}; {overrides or 'no overrides'}; the six runs took {seconds:.0f} s")
    for r in results:
        theta = f"{max(r.theta_bar.values()):.2f}" if r.theta_bar else "  - "
        accs = " ".join(f"{k} {v:4.1f}" for k, v in r.accuracies.items())
        print(f"  {r.label:12s} S {s_score(r.accuracies, baseline):5.0f}  Params {r.rel_params:.3f}  "
              f"MACs {r.rel_macs:.3f}  max θ̄ {theta}  | {accs}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="*", help=f"some of {list(VARIANTS)} (default: all)")
    names = p.parse_args().variants or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}: choose from {list(VARIANTS)}")
    for name in names:
        run_variant(name)


if __name__ == "__main__":
    main()
