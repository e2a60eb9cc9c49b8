"""The ``mdlprune`` command line (also ``python -m mdlprune``)."""

from __future__ import annotations

import argparse
import sys
import time

import torch

__all__ = ["main"]


def _smoke(args: argparse.Namespace) -> int:
    """Build a multi-domain ResNet-26, switch half the channels off at random, prune, report sizes."""
    from . import count_macs, param_bits, prune, randomize_switches, to_multidomain
    from .models import resnet26
    from .report import Table, format_bits

    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    backbone = resnet26(width=args.width)
    num_classes = [10, 26, 47, 43, 17][: args.domains]
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mdlprune",
        description="Budget-Aware Pruning for Multi-Domain Learning: train, prune and evaluate.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    smoke = sub.add_parser(
        "smoke",
        help="end-to-end check without training: random switches, prune, size table (seconds)",
        description=_smoke.__doc__,
    )
    smoke.add_argument("--width", type=float, default=0.5, help="ResNet-26 width multiplier (default 0.5)")
    smoke.add_argument("--domains", type=int, default=5, choices=range(1, 6), help="number of domains (1-5)")
    smoke.add_argument("--keep", type=float, default=0.5, help="probability that a switch is on (default 0.5)")
    smoke.add_argument("--image-size", type=int, default=32, help="input resolution (default 32)")
    smoke.add_argument("--seed", type=int, default=0)
    smoke.set_defaults(func=_smoke)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
