"""The ``mdlprune`` command line (also ``python -m mdlprune``).

=============  ===================================================================================
``demo``       the main job: BA² and Ours at one β on the mini-decathlon, pruned, evaluated (≤ 10 min CPU)
``sweep``      Feature, Finetune, and BA² / Ours over a β sweep: the results table and Pareto plots
``train``      train one method from a configuration file (resumable)
``prune``      prune a trained model file and check that it computes the same function
``evaluate``   accuracy per domain, MACs and Params of a model file
``smoke``      no training: random switches, prune, size table (seconds)
=============  ===================================================================================
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from .losses import check_beta

__all__ = ["main", "build_parser"]

BASELINE_FILE = Path(__file__).resolve().parents[1] / "data" / "baselines" / "mini-finetune.json"


def _machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    gpu = f", {torch.cuda.get_device_name()}" if device.startswith("cuda") else ""
    return f"{cpu}, {torch.get_num_threads()} threads{gpu}; torch {torch.__version__}"


def _command(argv: list[str] | None) -> str:
    return "mdlprune " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))


# -- smoke -------------------------------------------------------------------------------------------------
def _smoke(args: argparse.Namespace) -> int:
    """Build a multi-domain ResNet-26, switch channels off at random, prune, report sizes (no training)."""
    from . import count_macs, param_bits, prune, randomize_switches, to_multidomain
    from .models import resnet26
    from .report import Table, format_bits

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
    table = Table(["domain", "MACs (switches)", "MACs (pruned)", "relative MACs", "max abs diff"], digits=3)
    with torch.no_grad():
        for d in range(model.num_domains):
            diff = (model(x, d) - pruned(x, d)).abs().max().item()
            macs = count_macs(pruned, size, d)
            table.add(model.domain_names[d], count_macs(model, size, d), macs, macs / base_macs, f"{diff:.1e}")
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
def load_baseline(path: Path = BASELINE_FILE) -> tuple[dict[str, float] | None, str]:
    """Finetune accuracies of the mini-decathlon recorded by ``mdlprune sweep --record-baseline``."""
    if not path.is_file():
        return None, f"no Finetune baseline at {path}: S-scores need one (`mdlprune sweep --record-baseline`)"
    record = json.loads(path.read_text())
    return record["accuracies"], f"E_max from the Finetune run in {path.name} ({record['command']})"


def _demo(args: argparse.Namespace) -> int:
    """BA² and Ours at one β on the mini-decathlon: train, prune, evaluate, report."""
    from .config import resolve_device
    from .data import mini_decathlon, quick_mode
    from .evaluate import results_table
    from .experiment import run_methods, save_results
    from .metrics import param_bits
    from .plots import pareto_plot
    from .pretrain import load_backbone
    from .report import format_bits
    from .serialization import save_model

    check_beta(args.beta)  # fail now, not after the data are drawn
    device = resolve_device(args.device)
    quick = args.quick or quick_mode()
    out = Path(args.out)
    t0 = time.perf_counter()
    print(f"mdlprune demo: β = {args.beta}, {'quick' if quick else 'full' if args.full else 'default'} settings, "
          f"{_machine(device)}")  # fmt: skip
    bench = mini_decathlon(size="quick" if quick else "default")
    print(f"data: {bench} (ready in {bench.generate(include_source=False):.1f} s)")
    backbone = load_backbone()
    overrides = {"epochs": args.epochs} if args.epochs else ({"epochs": 30} if args.full else {})
    results = run_methods([("ba2", args.beta), ("ours", args.beta)], backbone, bench, device=device,
                          checkpoint_dir=out / "checkpoints", progress=not args.no_progress, quick=quick, **overrides)  # fmt: skip
    baseline, note = load_baseline()
    print()
    if baseline is not None:
        print(results_table(results, baseline, title=f"mini-decathlon, β = {args.beta} (test set)"))
        print(f"\n({note})")
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
    fig = results[0].histories[0].plot("all", beta=args.beta)
    fig.suptitle("BA²")
    fig.savefig(out / "ba2-training.png", dpi=100)
    fig = ours.histories[0].plot("all", beta=args.beta)
    fig.suptitle("Ours")
    fig.savefig(out / "ours-training.png", dpi=100)
    if baseline is not None:
        pareto_plot(results, baseline).savefig(out / "pareto.png", dpi=100)
    seconds = time.perf_counter() - t0
    save_results(results, out / "results.json", command=_command(args.argv), machine=_machine(device),
                 seconds=round(seconds, 1), baseline=baseline, baseline_note=note)  # fmt: skip
    print(f"\nwrote {out}/results.json, training curves and plots; total {seconds / 60:.1f} min")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    """Feature, Finetune, then BA² and Ours for every β: the results table and the Pareto plots."""
    from .config import resolve_device
    from .data import mini_decathlon, quick_mode
    from .evaluate import results_table
    from .experiment import run_methods, save_results
    from .plots import pareto_plot
    from .pretrain import load_backbone

    for beta in args.betas:
        check_beta(beta)
    device = resolve_device(args.device)
    quick = args.quick or quick_mode()
    out = Path(args.out)
    t0 = time.perf_counter()
    bench = mini_decathlon(size="quick" if quick else "default")
    bench.generate(include_source=False)
    backbone = load_backbone()
    methods = [("feature", None), ("finetune", None)] + [(m, b) for b in args.betas for m in ("ba2", "ours")]
    overrides = {"epochs": args.epochs} if args.epochs else {}
    results = run_methods(methods, backbone, bench, device=device, checkpoint_dir=out / "checkpoints",
                          progress=not args.no_progress, quick=quick, **overrides)  # fmt: skip
    finetune = next(r for r in results if r.method == "finetune")
    baseline = finetune.accuracies
    table = results_table(results, baseline, title="mini-decathlon (test set; E_max from this run's Finetune)")
    print(table)
    seconds = time.perf_counter() - t0
    meta = dict(command=_command(args.argv), machine=_machine(device), seconds=round(seconds, 1), baseline=baseline)
    save_results(results, out / "results.json", **meta)
    (out / "table.md").write_text(table.to_markdown() + "\n")
    pareto_plot(results, baseline).savefig(out / "pareto.png", dpi=110)
    if args.record_baseline:
        BASELINE_FILE.parent.mkdir(parents=True, exist_ok=True)
        BASELINE_FILE.write_text(json.dumps({"accuracies": baseline, "command": meta["command"],
                                             "machine": meta["machine"], "settings": finetune.notes}, indent=2) + "\n")  # fmt: skip
        print(f"recorded the Finetune baseline in {BASELINE_FILE}")
    print(f"\nwrote {out}/results.json, table.md, pareto.png; total {seconds / 60:.1f} min")
    return 0


# -- train / prune / evaluate from a configuration ---------------------------------------------------------
def _train(args: argparse.Namespace) -> int:
    """Train one method as a configuration file says; resumes from the output folder's checkpoint."""
    from .experiment import run_from_config

    return run_from_config(args.config, args.set, stage="train", argv=args.argv, dry_run=args.dry_run)


def _prune(args: argparse.Namespace) -> int:
    """Prune a trained multi-domain model file and check the pruned model computes the same function."""
    from . import count_macs, param_bits, prune
    from .report import Table, format_bits
    from .serialization import load_model, save_model

    model = load_model(args.model).eval()
    pruned = prune(model)
    size = (3, args.image_size, args.image_size)
    x = torch.randn(8, *size)
    with torch.no_grad():
        diff = max(float((model(x, d) - pruned(x, d)).abs().max()) for d in range(model.num_domains))
        scale = max(float(model(x, d).abs().max()) for d in range(model.num_domains))
    if diff > 1e-5 * scale:
        print(f"error: the pruned model differs from the trained one by {diff:.2e}", file=sys.stderr)
        return 1
    out = save_model(pruned, args.out)
    t = Table(["model", "parameter memory", "MACs (domain 0)"], digits=3)
    t.add("trained", format_bits(param_bits(model)), count_macs(model, size, 0))
    t.add("pruned", format_bits(param_bits(pruned)), count_macs(pruned, size, 0))
    print(t)
    print(f"\nmax |Δ output| {diff:.1e} on random inputs; saved {out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    """Accuracy per domain, relative MACs and Params of a saved model, on the configuration's benchmark."""
    from .experiment import run_from_config

    return run_from_config(args.config, args.set, stage="evaluate", model_path=args.model, argv=args.argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mdlprune", description=__doc__.split("\n\n")[0].split("(")[0].strip() + ".",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Run `mdlprune COMMAND --help` for a command's options.")  # fmt: skip
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name, func, help_):
        p = sub.add_parser(name, help=help_, description=func.__doc__)
        p.set_defaults(func=func)
        return p

    p = add("demo", _demo, "the main job: BA² and Ours at one β, pruned and evaluated (≤ 10 min on 2 CPU cores)")
    p.add_argument("--beta", type=float, default=0.5, help="the budget β in (0, 1] (default 0.5)")
    p.add_argument("--full", action="store_true", help="longer training (30 rounds; a GPU is recommended)")
    p.add_argument("--epochs", type=int, help="rounds of training (overrides the preset)")
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (default)")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="tiny data and 2 rounds (as MDLPRUNE_QUICK=1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = add("sweep", _sweep, "Feature, Finetune, BA² and Ours over a β sweep: table and Pareto plots")
    p.add_argument("--betas", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25])
    p.add_argument("--epochs", type=int, help="rounds of training (overrides the preset)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="runs/sweep")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--record-baseline", action="store_true", help=f"write the Finetune accuracies to {BASELINE_FILE.relative_to(BASELINE_FILE.parents[2])}")

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

    p = add("prune", _prune, "prune a trained model file; checks the pruned model computes the same function")
    p.add_argument("--model", required=True, help="the trained multi-domain model (model.pt written by train)")
    p.add_argument("--out", required=True, help="where to write the pruned model")
    p.add_argument("--image-size", type=int, default=32, help="input size for the equivalence check and MACs")

    p = add("smoke", _smoke, "no training: random switches, prune, size table (seconds)")
    p.add_argument("--width", type=float, default=0.5, help="ResNet-26 width multiplier (default 0.5)")
    p.add_argument("--domains", type=int, default=5, choices=range(1, 6), help="number of domains (1-5)")
    p.add_argument("--keep", type=float, default=0.5, help="probability that a switch is on (default 0.5)")
    p.add_argument("--image-size", type=int, default=32, help="input resolution (default 32)")
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
    except (ValueError, TypeError, FileNotFoundError) as e:  # bad input: a clear message, no traceback
        print(f"mdlprune {args.command}: error: {e}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
