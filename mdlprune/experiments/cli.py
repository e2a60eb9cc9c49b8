"""The ``mdlprune`` command line (also ``python -m mdlprune``).

=============  ===================================================================================
``demo``       the main job: BA² and Ours at one β on the mini-decathlon, pruned, evaluated (≤ 10 min CPU)
``sweep``      Feature, Finetune, and BA² / Ours over a β sweep: the results table and Pareto plots
``train``      train one method from a configuration file (resumable)
``prune``      prune a trained model file and check that it computes the same function
``evaluate``   accuracy per domain, MACs and Params of a model file
``export``     one domain's model (or each) to ONNX, checked in ONNX Runtime against PyTorch
``smoke``      no training: random switches, prune, size table (seconds)
=============  ===================================================================================
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ..data.mini import mini_decathlon
from ..data.shipped import load_backbone, load_baseline
from ..method.backbones import resnet26
from ..method.macs import count_macs, executed_macs, needed_macs
from ..method.metrics import param_bits
from ..method.convert import to_multidomain
from ..method.multidomain import MultiDomainNet, randomize_switches
from ..method.prune import compare_outputs, prune
from ..training.checkpoint import CheckpointError, load_model, save_model
from ..training.history import NonFiniteError
from ..training.config import load_config, quick_mode, resolve_device
from ..training.methods import METHODS
from .evaluate import results_table, seed_spread
from .plots import pareto_plot
from .provenance import command, machine
from .report import Table, format_bits
from .runs import evaluate_from_config, mini_config, run_methods, save_results, train_from_config

__all__ = ["main", "build_parser", "ANTICIPATED"]

#: the errors a user can cause and fix (configuration, data, checkpoints, files, devices, a diverged run): the
#: command prints them as one line and exits with 2; anything else is a bug and keeps its traceback
ANTICIPATED = (ValueError, TypeError, OSError, CheckpointError, NonFiniteError)


# -- smoke -------------------------------------------------------------------------------------------------
def _smoke(args: argparse.Namespace) -> int:
    """Build a multi-domain ResNet-26, switch channels off at random, prune, report sizes (no training)."""
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    backbone = resnet26(width=args.width)
    num_classes = [10, 40, 16, 25, 20][: args.domains]
    model = to_multidomain(backbone, num_classes).eval()
    randomize_switches(model, keep=args.keep, seed=args.seed)
    pruned = prune(model)
    size = (3, args.image_size, args.image_size)
    x = torch.randn(8, *size)
    base_macs, base_bits = count_macs(backbone, size), param_bits(backbone)
    table = Table(["domain", "needed MACs", "executed MACs", "relative needed", "relative executed", "max abs diff"],
                  digits=3)  # fmt: skip
    for d in range(model.num_domains):  # (of the pruned model; the switch model executes the whole backbone)
        diff = compare_outputs(model, pruned, x, domains=[d]).max_abs_diff
        needed, executed = needed_macs(pruned, size, d), executed_macs(pruned, size, d)
        table.add(model.domain_names[d], needed, executed, needed / base_macs, executed / base_macs, f"{diff:.1e}")
    sizes = Table(["model", "parameter memory", "relative Params"], digits=3)
    sizes.add("backbone (1 domain)", format_bits(base_bits), 1.0)
    sizes.add(f"switch model ({model.num_domains} domains)", format_bits(param_bits(model)), param_bits(model) / base_bits)
    sizes.add("pruned model", format_bits(param_bits(pruned)), param_bits(pruned) / base_bits)
    print(f"ResNet-26 (width {args.width}), {model.num_domains} domains, switches on with p = {args.keep}\n")
    print(table, "\n")
    print(sizes, "\n")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


# -- demo and sweep ----------------------------------------------------------------------------------------
def _preset(args: argparse.Namespace) -> tuple[str, bool]:
    """The shipped configuration whose ``train`` section a demo or sweep uses, and whether it is quick."""
    quick = args.quick or quick_mode()
    return ("mini-quick" if quick else "mini-gpu" if getattr(args, "full", False) else "mini"), quick


def _overrides(args: argparse.Namespace) -> dict:
    return {} if args.rounds is None else {"rounds": args.rounds}


def _demo(args: argparse.Namespace) -> int:
    """BA² and Ours at one β on the mini-decathlon: train, prune, evaluate, report."""
    preset, quick = _preset(args)
    mini_config("ours", args.beta, preset=preset, **_overrides(args))  # validate now, not after the data are drawn
    device = resolve_device(args.device)
    out = Path(args.out)
    t0 = time.perf_counter()
    print(f"mdlprune demo: β = {args.beta}, {'quick' if quick else 'full' if args.full else 'default'} settings, "
          f"{machine(device)}")  # fmt: skip
    bench = mini_decathlon(size=load_config(preset).data.size)
    print(f"data: {bench} (ready in {bench.generate(include_source=False):.1f} s)")
    backbone = load_backbone()
    results = run_methods([("ba2", args.beta), ("ours", args.beta)], backbone, bench, device=device,
                          checkpoint_dir=out / "checkpoints", progress=not args.no_progress, preset=preset,
                          restart=args.restart, **_overrides(args))  # fmt: skip
    baseline, note = load_baseline(args.baseline)
    print()
    if baseline is not None:
        print(results_table(results, baseline, title=f"mini-decathlon, β = {args.beta} (test set)"))
    else:
        for r in results:
            print(r.label, r.accuracies, f"MACs {r.rel_macs:.3f} Params {r.rel_params:.3f}")
    print(f"\n({note})")
    ours = results[-1]
    path = save_model(ours.model, out / "ours-pruned.pt")
    bits, base = param_bits(ours.model), param_bits(backbone)
    print(f"\npruned Ours model: {format_bits(bits)} of parameters ({bits / base:.3f} × the single-domain backbone's "
          f"{format_bits(base)}) for {len(bench)} domains; saved to {path} ({path.stat().st_size / 2**20:.2f} MiB on disk)")  # fmt: skip
    for r in results:
        print(f"{r.label}: θ̄ per domain {', '.join(f'{v:.3f}' for v in r.theta_bar.values())}; channels used by some "
              f"domain {r.union_fraction:.3f}; pruned vs trained max |Δ| {r.notes['max_abs_diff_pruned']:.1e} "
              f"(outputs up to {r.notes['max_abs_output']:.1f})")  # fmt: skip
    for r in results:
        fig = r.histories[0].plot("all", beta=args.beta)
        fig.suptitle(r.label.split(" ")[0])
        fig.savefig(out / f"{r.method}-training.png", dpi=100)
    if baseline is not None:
        pareto_plot(results, baseline).savefig(out / "pareto.png", dpi=100)
    seconds = time.perf_counter() - t0
    save_results(results, out / "results.json", command=command(args.argv), machine=machine(device),
                 seconds=round(seconds, 1), baseline=baseline, baseline_note=note)  # fmt: skip
    print(f"\nwrote {out}/results.json, training curves and plots; total {seconds / 60:.1f} min")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    """Every method of the table: the baselines once, the methods with switches at every β; the results
    table (E_max from this run's Finetune) and the Pareto plots."""
    preset, _ = _preset(args)
    for beta in args.betas:
        mini_config("ours", beta, preset=preset, **_overrides(args))  # validate every β before training
    if args.seeds_at is not None and not set(args.seeds_at) <= set(args.betas):
        raise ValueError(f"--seeds-at {args.seeds_at}: every β there must be one of --betas {args.betas}")
    device = resolve_device(args.device)
    out = Path(args.out)
    t0 = time.perf_counter()
    bench = mini_decathlon(size=load_config(preset).data.size)
    bench.generate(include_source=False)
    backbone = load_backbone()
    baselines = [(m.name, None) for m in METHODS.values() if not m.switches]
    repeated = args.betas if args.seeds_at is None else args.seeds_at
    methods = baselines + [(m.name, b, s) for s in args.seeds for b in args.betas for m in METHODS.values()
                           if m.switches and (s == args.seeds[0] or b in repeated)]  # fmt: skip
    results = run_methods(methods, backbone, bench, device=device, checkpoint_dir=out / "checkpoints",
                          progress=not args.no_progress, preset=preset, export_dir=out / "trained",
                          restart=args.restart, **_overrides(args))  # fmt: skip
    finetune = next(r for r in results if METHODS[r.method].s_score_baseline)
    baseline = finetune.accuracies
    table = results_table(results, baseline, title="mini-decathlon (test set; E_max from this run's Finetune)")
    print(table)
    seconds = time.perf_counter() - t0
    meta = dict(command=command(args.argv), machine=machine(device), seconds=round(seconds, 1), baseline=baseline)
    save_results(results, out / "results.json", **meta)
    rows = [r.row(baseline) for r in results]
    (out / "mini-sweep.json").write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    spread = seed_spread(results, baseline, title="spread over seeds (mean ± std)")
    if spread.rows:
        print(f"\n{spread}")
    (out / "table.md").write_text(table.to_markdown() + "\n" + (f"\n{spread.to_markdown()}\n" if spread.rows else ""))
    pareto_plot(results, baseline).savefig(out / "pareto.png", dpi=110)
    record = json.dumps({"accuracies": baseline, "command": meta["command"], "machine": meta["machine"],
                         "settings": finetune.notes}, indent=2) + "\n"  # fmt: skip
    (out / "finetune-baseline.json").write_text(record)
    if args.record_baseline:
        Path(args.record_baseline).parent.mkdir(parents=True, exist_ok=True)
        Path(args.record_baseline).write_text(record)
        print(f"recorded the Finetune baseline in {args.record_baseline}")
    print(f"\nwrote {out}/results.json, mini-sweep.json, table.md, pareto.png, finetune-baseline.json, trained/ "
          f"(the domain-specific parameters of every run); total {seconds / 60:.1f} min")
    return 0


# -- train / prune / evaluate from a configuration ---------------------------------------------------------
def _train(args: argparse.Namespace) -> int:
    """Train one method as a configuration file says; resumes from the output folder's checkpoint."""
    return train_from_config(load_config(args.config, args.set), dry_run=args.dry_run, restart=args.restart)


def _prune(args: argparse.Namespace) -> int:
    """Prune a trained multi-domain model file and check the pruned model computes the same function."""
    model = load_model(args.model).eval()
    pruned = prune(model)
    size = (3, args.image_size, args.image_size)
    same = compare_outputs(model, pruned, torch.randn(8, *size))
    if not same.holds():
        print(f"mdlprune prune: error: the pruned model differs from the trained one: {same}", file=sys.stderr)
        return 1
    out = save_model(pruned, args.out)
    t = Table(["model", "parameter memory", "needed MACs (domain 0)", "executed MACs (domain 0)"], digits=3)
    for name, m in (("trained", model), ("pruned", pruned)):
        t.add(name, format_bits(param_bits(m)), needed_macs(m, size, 0), executed_macs(m, size, 0))
    print(t)
    print(f"\nmax |Δ output| {same.max_abs_diff:.1e} on random inputs; saved {out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    """Export a trained or pruned model to ONNX for one domain (or each), checked in ONNX Runtime against PyTorch."""
    from .export import export_onnx  # imports the exporter only for this verb

    if args.multi_domain and args.channel_multiple != 1:
        raise ValueError("--channel-multiple rounds the specialised model's channels: it cannot be combined with "
                         "--multi-domain")  # fmt: skip
    model = load_model(args.model)
    if not isinstance(model, MultiDomainNet):
        raise TypeError(f"{args.model} holds a {type(model).__name__}, not a multi-domain model: give a file "
                        "written by `mdlprune train` (model.pt) or `mdlprune prune`")  # fmt: skip
    every = args.domain == "all" and "all" not in model.domain_names
    if every:
        domains = list(model.domain_names)
    else:  # a name first, so that a domain called "1" can be chosen; else an index
        domains = [args.domain if args.domain in model.domain_names or not args.domain.isdigit() else int(args.domain)]
    out = Path(args.out)
    if every and out.suffix == ".onnx":
        raise ValueError(f"--domain all writes one file per domain: give --out a folder, not {out}")
    try:
        for domain in domains:
            name = model.domain_names[model.domain_index(domain)]
            if every and (Path(name).name != name or name in (".", "..")):
                raise ValueError(f"the domain name {name!r} is not a file name: export it alone with --out FILE")
            path = out / f"{name}.onnx" if every else out
            print(export_onnx(model, path, domain, image_size=args.image_size, specialized=not args.multi_domain,
                              channel_multiple=args.channel_multiple))  # fmt: skip
    except ImportError as e:
        raise OSError(str(e)) from None
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    """Accuracy per domain, relative MACs and Params of a saved model, on the configuration's benchmark."""
    return evaluate_from_config(load_config(args.config, args.set), args.model)


def _positive(what: str):
    """An argparse type: a whole number ≥ 1, refused with one line naming ``what`` it is."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"{what}, got {text!r}")
        return value

    return parse


_size = _positive("an image size is a positive number of pixels")
_multiple = _positive("a channel multiple is a whole number ≥ 1 (1: no rounding)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mdlprune", description=__doc__.split("\n\n")[0].split("(")[0].strip() + ".",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Run `mdlprune COMMAND --help` for a command's options.")  # fmt: skip
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name, func, help_):
        p = sub.add_parser(name, help=help_, description=func.__doc__)
        p.set_defaults(func=func)
        return p

    p = add("demo", _demo, "the main job: BA² and Ours at one β, pruned and evaluated (≤ 10 min on 2 CPU cores)")
    p.add_argument("--beta", type=float, default=0.5, help="the budget β in (0, 1] (default 0.5)")
    p.add_argument("--full", action="store_true", help="longer training: the mini-gpu preset's 176 rounds (a GPU is "
                   "recommended)")
    p.add_argument("--rounds", type=int, help="round-robin rounds of training (overrides the preset)")
    p.add_argument("--baseline", help="Finetune accuracies for the S-score (default: the shipped "
                   "data/baselines/mini-finetune.json)")
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (default)")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="the mini-quick preset: 12 short rounds, 300 test images per target domain (as MDLPRUNE_QUICK=1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--restart", action="store_true", help="train afresh over the output folder's checkpoints")

    p = add("sweep", _sweep, "Feature, Finetune, BA² and Ours over a β sweep: table and Pareto plots")
    p.add_argument("--betas", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25])
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="train the methods with switches once per "
                   "seed (heads' initialisation and data order), and report the spread (default: seed 0)")
    p.add_argument("--seeds-at", type=float, nargs="+", metavar="BETA", help="run the seeds after the first only "
                   "at these budgets (default: at every β)")
    p.add_argument("--rounds", type=int, help="round-robin rounds of training (overrides the preset)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="runs/sweep")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--restart", action="store_true", help="train afresh over the output folder's checkpoints")
    p.add_argument("--record-baseline", metavar="PATH", help="also write the Finetune accuracies there (the sweep "
                   "always writes OUT/finetune-baseline.json); data/baselines/mini-finetune.json is the shipped one")

    for name, func, help_ in (("train", _train, "train one method from a configuration file"),
                              ("evaluate", _evaluate, "evaluate a saved model on a configuration's benchmark")):  # fmt: skip
        p = add(name, func, help_)
        p.add_argument("--config", required=True, help="a YAML/JSON file, or a shipped configuration's name (e.g. mini)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key, e.g. train.beta=0.25")
        if name == "evaluate":
            p.add_argument("--model", required=True, help="a model file written by train or prune")
        else:
            p.add_argument("--dry-run", action="store_true", help="build the model and data pipeline, load one batch "
                           "per domain, and stop")  # fmt: skip
            p.add_argument("--restart", action="store_true", help="train afresh, replacing the output folder's "
                           "checkpoints and models (a folder trained with other settings is refused otherwise)")

    p = add("prune", _prune, "prune a trained model file; checks the pruned model computes the same function")
    p.add_argument("--model", required=True, help="the trained multi-domain model (model.pt written by train)")
    p.add_argument("--out", required=True, help="where to write the pruned model")
    p.add_argument("--image-size", type=_size, default=32, help="input size for the equivalence check and MACs")

    p = add("export", _export, "export one domain's model to ONNX, checked in ONNX Runtime (needs mdlprune[deploy])")
    p.add_argument("--model", required=True, help="a trained or pruned multi-domain model file (train, prune)")
    p.add_argument("--domain", required=True, help="a domain's name or index, or 'all' (one file per domain)")
    p.add_argument("--out", required=True, help="the ONNX file to write (a folder with --domain all)")
    p.add_argument("--image-size", type=_size, default=32, help="side of the example batch that traces the model")
    p.add_argument("--multi-domain", action="store_true", help="export the multi-domain model with the domain fixed "
                   "(the union of the domains' channels) instead of the domain's specialised model")
    p.add_argument("--channel-multiple", type=_multiple, default=1, metavar="K", help="round the channels each "
                   "convolution reads up to a multiple of K, over zero weights (same outputs, more MACs; e.g. 4 for "
                   "ONNX Runtime 1.32 on AVX-512 CPUs: measure on your device)")

    p = add("smoke", _smoke, "no training: random switches, prune, size table (seconds)")
    p.add_argument("--width", type=float, default=0.5, help="ResNet-26 width multiplier (default 0.5)")
    p.add_argument("--domains", type=int, default=5, choices=range(1, 6), help="number of domains (1-5)")
    p.add_argument("--keep", type=float, default=0.5, help="probability that a switch is on (default 0.5)")
    p.add_argument("--image-size", type=_size, default=32, help="input resolution (default 32)")
    p.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    args.argv = argv
    try:
        return args.func(args)
    except ANTICIPATED as e:  # bad input, files, devices: one line naming the problem, no traceback
        if args.debug:
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"mdlprune {args.command}: error: {message} (`mdlprune --debug {args.command} ...` shows the traceback)",
              file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
