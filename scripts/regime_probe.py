"""Probe the mini-decathlon's regime: train a few methods with a chosen number of training images per class.

How the benchmark's sizes were chosen (docs/RESULTS.md §1): the same methods and settings as ``mdlprune sweep``,
with the targets' training splits cut to PER_CLASS images per class and the rounds given, scored against the
Finetune run of the same probe.

    python scripts/regime_probe.py d:20,g:20,t:40,s:20,f:10 34 finetune:,feature:,ba2:1.0,ours:0.5 [KEY=VALUE ...]
    (d, g, t, s, f: digits, glyphs, textures, signs, flowers; METHOD:BETA, BETA empty for the baselines; KEY=VALUE
    overrides a training setting, e.g. weight_decay=5e-4, its value read as a Python literal)
"""

import ast
import sys
import time

import torch

from mdlprune.data import mini_decathlon
from mdlprune.data.shipped import load_backbone
from mdlprune.experiments.runs import run_methods
from mdlprune.method.metrics import s_score

DOMAINS = {"d": ("digits", 10), "g": ("glyphs", 40), "t": ("textures", 16), "s": ("signs", 25), "f": ("flowers", 20)}


def main(argv: list[str]) -> int:
    per_class = dict(item.split(":") for item in argv[0].split(","))
    rounds = int(argv[1])
    methods = [(m, float(b) if b else None) for m, b in (x.split(":") for x in argv[2].split(","))]
    overrides = {k: ast.literal_eval(v) for k, v in (x.split("=", 1) for x in argv[3:])}
    size = {DOMAINS[k][0]: {"train": int(v) * DOMAINS[k][1]} for k, v in per_class.items()}
    bench = mini_decathlon(size=size)
    bench.generate(include_source=False)
    t0 = time.perf_counter()
    results = run_methods(methods, load_backbone(), bench, progress=False, quick=False, rounds=rounds,
                          lr_milestones=[max(1, rounds * 3 // 4)], **overrides)  # fmt: skip
    baseline = next(r for r in results if r.method == "finetune").accuracies
    for r in results:
        accs = " ".join(f"{k} {v:.1f}" for k, v in r.accuracies.items())
        print(f"{r.label:12s} S {s_score(r.accuracies, baseline):5.0f}  mean {sum(r.accuracies.values()) / 5:.1f}  {accs}")
    print(f"{time.perf_counter() - t0:.0f} s, torch {torch.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
