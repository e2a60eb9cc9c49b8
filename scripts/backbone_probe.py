"""Probe a backbone for the mini-decathlon's regime: pretrain a candidate, then train a few methods on it.

Issue 15 asks for adapted methods that match fine-tuning; whether they can depends on how well the frozen
backbone's features transfer. This script pretrains a candidate backbone on the source domain (or takes a
weights file made by ``python -m mdlprune.experiments.pretrain``), then trains the given methods on the default
targets with the sweep's settings (the ``mini`` preset, ``--rounds`` to change its length) and writes one JSON
record: the backbone's settings and source accuracy, each method's accuracies, S-score (against this probe's
Finetune, or ``--baseline``'s), MACs and Params. ``--set`` changes any other training setting.

    python scripts/backbone_probe.py --name ls0 --label-smoothing 0 --out runs/probe --device cuda
    python scripts/backbone_probe.py --name shipped --backbone data/backbones/resnet26-w0.375-mini.pt --out runs/probe
    python scripts/backbone_probe.py --name union --backbone data/backbones/resnet26-w0.375-mini.pt --methods ours:0.5 \
        --set sharing=union --baseline data/baselines/mini-finetune.json --out runs/probe15
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import yaml

from mdlprune.data import mini_decathlon
from mdlprune.data.shipped import load_backbone
from mdlprune.experiments.pretrain import pretrain
from mdlprune.experiments.provenance import command, machine
from mdlprune.experiments.runs import run_methods
from mdlprune.method.metrics import s_score


PROG = "python scripts/backbone_probe.py"  # what the record's command starts with (a wrapper sets its own)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--backbone", type=Path, help="a weights file with its JSON record (skips pretraining)")
    p.add_argument("--width", type=float, default=0.375)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--per-class", type=int, help="training images per source class (default 200)")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--methods", default="finetune:,feature:,ba2:1.0,ours:0.5", help="METHOD:BETA,... (BETA empty "
                   "for the baselines)")
    p.add_argument("--rounds", type=int, help="round-robin rounds (default: the mini preset's; milestone at 3/4)")
    p.add_argument("--cost-weighted", choices=["params", "macs"], help="weight θ̄'s switches by their cost (METHOD §3; "
                   "several budgets: --set 'cost_weighted=[params, macs]')")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="another training setting, as YAML (e.g. lr_domain=0.03); repeatable")
    p.add_argument("--baseline", type=Path, help="Finetune's accuracies for the S-score when --methods has no Finetune "
                   "(a JSON file with 'accuracies', e.g. data/baselines/mini-finetune.json)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    overrides = {} if args.rounds is None else {"rounds": args.rounds, "lr_milestones": [max(1, args.rounds * 3 // 4)]}
    if args.cost_weighted:
        overrides["cost_weighted"] = args.cost_weighted
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"--set takes KEY=VALUE (a training setting, e.g. lr_domain=0.03), got {item!r}")
        overrides[key] = yaml.safe_load(value)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    record = {"name": args.name, "command": command(argv, PROG),
              "machine": machine(args.device)}  # fmt: skip
    if args.backbone:
        backbone = load_backbone(args.backbone.stem, args.backbone.parent)
        record["backbone"] = json.loads(args.backbone.with_suffix(".json").read_text())
    else:
        backbone, metrics = pretrain(args.width, args.epochs, seed=0, device=args.device,
                                     label_smoothing=args.label_smoothing, per_class=args.per_class,
                                     log=lambda s: print(f"[{args.name}] {s}", flush=True))  # fmt: skip
        torch.save(backbone.state_dict(), args.out / f"{args.name}.pt")
        record["backbone"] = {"width": args.width, "epochs": args.epochs, "per_class": args.per_class,
                              "label_smoothing": args.label_smoothing, **metrics}  # fmt: skip
    print(f"[{args.name}] backbone: {record['backbone']}", flush=True)
    methods = [(m, float(b) if b else None) for m, b in (x.split(":") for x in args.methods.split(","))]
    bench = mini_decathlon(size="default")
    results = run_methods(methods, backbone, bench, device=args.device, progress=False, preset="mini",
                          log=lambda s: print(f"[{args.name}] {s}", flush=True), **overrides)  # fmt: skip
    finetune = next((r.accuracies for r in results if r.method == "finetune"), None)
    if finetune is None and args.baseline:
        finetune = json.loads(args.baseline.read_text())["accuracies"]
        record["baseline"] = str(args.baseline)
    record["rounds"] = args.rounds
    record["cost_weighted"] = overrides.get("cost_weighted")
    record["settings"] = {k: v for k, v in overrides.items() if k not in ("rounds", "lr_milestones", "cost_weighted")}
    record["runs"] = [{"label": r.label, "accuracies": r.accuracies, "mean": round(sum(r.accuracies.values()) / len(r.accuracies), 2),
                       "s_score": None if finetune is None else round(s_score(r.accuracies, finetune)),
                       "macs": round(r.rel_macs, 3), "params": round(r.rel_params, 3),
                       "max_theta_bar": r.theta_bar and round(max(r.theta_bar.values()), 3)} for r in results]  # fmt: skip
    record["seconds"] = round(time.perf_counter() - t0, 1)
    (args.out / f"{args.name}.json").write_text(json.dumps(record, indent=1) + "\n")
    for run in record["runs"]:
        print(f"[{args.name}] {run['label']:12s} S {run['s_score']}  mean {run['mean']}  {run['accuracies']}", flush=True)
    print(f"[{args.name}] done in {record['seconds']} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
