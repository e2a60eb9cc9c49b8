"""Latency of what a device would run, side by side: the backbone, the multi-domain pruned model, one domain's
specialised model (eager and ONNX Runtime), the limit of its channel counts without gathers, and Torch-Pruning's
structural pruning of the single-domain backbone to the same MACs (BatchNorm folded).

"pruned, domain models kept" is the multi-domain model with :func:`mdlprune.keep_domain_models` on (its eval passes
run the domain's specialised model).

Backbones (``--arch``): ``mini`` (the shipped ResNet-26, 32 px), torchvision ``resnet50`` and ``mobilenet_v2``
(``weights=None``, ``--size`` px). Masks (``--masks``): ``learned`` (the shipped sweep's Ours β = 0.5 run, or
``--learned``'s; mini only), ``differ`` (random, each domain its own half of every layer's channels: what BA²
learns), ``shared`` (random, one half for all domains). Each model is timed in interleaved rounds against the backbone; a row gives
the median ratio and its range.

    python benchmarks/deploy_latency.py                                    # mini, batches 1 and 64, 2 threads
    python benchmarks/deploy_latency.py --arch resnet50 mobilenet_v2 --masks differ shared --size 64
    python benchmarks/deploy_latency.py --device cuda --batches 1 64 256 --dtype bf16 --channels-last
    python benchmarks/deploy_latency.py --channel-multiple 16      # and the specialised model with rounded channels

On CUDA the times are CUDA events (``measure``); the ONNX Runtime row runs only where ONNX Runtime has a provider for
the device (on CUDA, its ``CUDAExecutionProvider``). ``--dtype``/``--channels-last`` convert every PyTorch model and
the input (the ONNX file is exported in float32). Torch-Pruning is not a dependency of mdlprune: without it
(``pip install torch-pruning``) its rows are left out, with a note.

The "dense limit" is the specialised model with every channel gather replaced by a slice of the first channels
(no copy): the same convolutions and channel counts, the cost of the representation removed. It computes another
function; it only bounds what gathers cost. (A gather that reads more channels than it receives, the zero-kernel
padding of a grouped convolution, stays.)
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
from common import markdown, save

import mdlprune
from mdlprune.data.shipped import load_backbone, load_trained
from mdlprune.experiments.export import export_onnx
from mdlprune.experiments.timing import measure
from mdlprune.method.convert import find_head
from mdlprune.method.specialize import ChannelSelect, fold_batchnorms
from mdlprune.training.checkpoint import load_model


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class _FirstChannels(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, : self.n]


def dense_limit(plain: nn.Module) -> nn.Module:
    """``plain`` with every :class:`ChannelSelect` replaced by a slice of the first channels (no gather); one that reads
    more channels than it receives (the zero-kernel padding of grouped convolutions) stays."""
    for name, m in list(plain.named_modules()):
        if isinstance(m, ChannelSelect) and len(m.index) <= m.incoming_channels:
            plain.set_submodule(name, _FirstChannels(len(m.index)))
    return plain


def models(arch: str, masks: str, learned: Path | None = None) -> tuple[nn.Module, mdlprune.MultiDomainNet]:
    if arch == "mini":
        backbone = load_backbone().eval()
    else:
        import torchvision

        torch.manual_seed(0)
        backbone = getattr(torchvision.models, arch)(weights=None).eval()
    if masks == "learned":
        if arch != "mini":
            raise SystemExit("learned masks exist for the mini backbone only (the shipped sweep)")
        model = load_model(learned) if learned else load_trained("ours", 0.5)[0]
    else:
        model = mdlprune.to_multidomain(backbone, [10, 40, 16, 25, 20])
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for _, layer in model.switch_layers():
                c = layer.in_channels
                shared = torch.randperm(c, generator=g)[: max(1, c // 2)]
                for d in range(model.num_domains):
                    keep = shared if masks == "shared" else torch.randperm(c, generator=g)[: max(1, c // 2)]
                    on = torch.zeros(c, dtype=torch.bool)
                    on[keep] = True
                    layer.switches[d] = torch.where(on, 1e-3, -1e-3)
    return backbone, model.eval()


def torch_pruning(backbone: nn.Module, mac_ratio: float, size: tuple[int, ...]) -> tuple[nn.Module, float]:
    """The backbone pruned by Torch-Pruning (L2 magnitude, uniform ratio, head kept) to at most ``mac_ratio`` of its
    MACs (bisection on the ratio: the largest model below it), BatchNorm folded; returns the model and its MAC
    ratio (channel counts are whole, so it lands a few percent below)."""
    import torch_pruning as tp

    base = mdlprune.count_macs(backbone, size)

    def pruned(ratio: float) -> nn.Module:
        m = copy.deepcopy(backbone).eval()
        tp.pruner.MagnitudePruner(m, torch.randn(1, *size), importance=tp.importance.MagnitudeImportance(p=2),
                                  pruning_ratio=ratio, ignored_layers=[m.get_submodule(find_head(m))]).step()  # fmt: skip
        return m

    lo, hi = 0.0, 0.95
    for _ in range(12):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mdlprune.count_macs(pruned(mid), size) / base > mac_ratio else (lo, mid)
    m = pruned(hi)
    return fold_batchnorms(m.eval()).requires_grad_(False), mdlprune.count_macs(m, size) / base


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", nargs="+", default=["mini"], choices=["mini", "resnet50", "mobilenet_v2"])
    p.add_argument("--masks", nargs="+", default=["learned", "differ", "shared"], choices=["learned", "differ", "shared"])
    p.add_argument("--size", type=int, default=64, help="image size of the torchvision backbones (mini: 32)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda (CUDA events)")
    p.add_argument("--dtype", default="fp32", choices=list(DTYPES), help="the PyTorch models' and input's dtype")
    p.add_argument("--channels-last", action="store_true", help="the PyTorch models and input in channels_last")
    p.add_argument("--domain", type=int, default=0)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per model")
    p.add_argument("--min-run-time", type=float, default=0.5, help="seconds per model and round")
    p.add_argument("--learned", type=Path, nargs="+", metavar="MODEL",
                   help="for --masks learned: the masks of these model files (mdlprune train's model.pt), or 'shipped' "
                        "(default: the shipped sweep's Ours β = 0.5); the results file is named after their folders")
    p.add_argument("--name", default="", help="appended to the results file's name (a run beside an earlier one)")
    p.add_argument("--pad-own-channels", action="store_true",
                   help="prune and specialise with pad_own_channels (grouped layers read their input without a gather)")
    p.add_argument("--channel-multiple", type=int, default=1, metavar="K",
                   help="also time the specialised model with the channels each convolution reads rounded up to a "
                        "multiple of K (specialize's channel_multiple, from the trained model), eager and in ONNX Runtime")
    args = p.parse_args()
    if args.channel_multiple < 1:
        p.error(f"--channel-multiple takes a whole number ≥ 1 (1: no rounded model), got {args.channel_multiple}")
    torch.set_num_threads(args.threads)
    dev, dtype = torch.device(args.device), DTYPES[args.dtype]
    fmt = torch.channels_last if args.channels_last else torch.preserve_format
    d, rows = args.domain, []
    try:
        import torch_pruning as _  # noqa: F401  (only whether it imports; the function below imports it again)

        with_tp = True
    except ImportError:
        with_tp = False
    if not with_tp:
        print("Torch-Pruning is not installed (pip install torch-pruning): its rows are left out", file=sys.stderr)
    tmp_dir = tempfile.TemporaryDirectory()
    tmp = Path(tmp_dir.name)
    sources = [None if str(p) == "shipped" else p for p in args.learned] if args.learned else [None]
    for arch, masks, learned in ((a, m, src) for a in args.arch for m in args.masks if a == "mini" or m != "learned"
                                 for src in (sources if m == "learned" else [None])):  # fmt: skip
        size = (3, 32, 32) if arch == "mini" else (3, args.size, args.size)
        backbone, model = models(arch, masks, learned)
        masks = masks if learned is None else f"learned ({learned.resolve().parent.name})"
        own = args.pad_own_channels
        pruned = mdlprune.prune(model, pad_own_channels=own).eval()
        plain = mdlprune.specialize(pruned, d, pad_own_channels=own)
        served = mdlprune.keep_domain_models(copy.deepcopy(pruned), True)  # the multi-domain model, opted in
        limit = dense_limit(mdlprune.specialize(pruned, d, pad_own_channels=own))
        k = args.channel_multiple
        # from the trained model: rounding can reach past the union of the domains' channels that pruning kept
        rounded = mdlprune.specialize(model, d, pad_own_channels=own, channel_multiple=k) if k > 1 else None
        import onnxruntime as ort

        provider = "CPUExecutionProvider" if dev.type == "cpu" else "CUDAExecutionProvider"
        sessions = {}
        if provider in ort.get_available_providers():
            exports = [("specialised, ONNX Runtime", pruned, 1)]
            exports += [(f"specialised, channels ×{k}, ONNX Runtime", model, k)] if rounded is not None else []
            for name, source, multiple in exports:
                onnx_path = export_onnx(source, tmp / f"{arch}-{len(rows)}-{multiple}.onnx", d, image_size=size[-1],
                                        channel_multiple=multiple).path  # fmt: skip
                options = ort.SessionOptions()
                options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
                sessions[name] = ort.InferenceSession(str(onnx_path), options, providers=[provider])
        base_macs = mdlprune.count_macs(backbone, size)
        macs = {"backbone": 1.0, "pruned (all domains)": mdlprune.executed_macs(pruned, size, d) / base_macs,
                "pruned, domain models kept": mdlprune.executed_macs(served, size, d) / base_macs,
                "specialised": mdlprune.count_macs(plain, size) / base_macs}  # fmt: skip
        macs.update({"specialised, ONNX Runtime": macs["specialised"], "dense limit": macs["specialised"]})
        if rounded is not None:
            macs[f"specialised, channels ×{k}"] = macs[f"specialised, channels ×{k}, ONNX Runtime"] = \
                mdlprune.count_macs(rounded, size) / base_macs
        tp_model = None
        if with_tp:
            tp_model, macs["Torch-Pruning, same MACs"] = torch_pruning(backbone, macs["specialised"], size)
            tp_model = tp_model.to(dev, dtype, memory_format=fmt)
        backbone, pruned, served, plain, limit = (m.to(dev, dtype, memory_format=fmt)
                                                  for m in (backbone, pruned, served, plain, limit))  # fmt: skip
        rounded = rounded.to(dev, dtype, memory_format=fmt) if rounded is not None else None
        for batch in args.batches:
            x = torch.randn(batch, *size).to(dev, dtype, memory_format=fmt)
            runs = {"backbone": lambda: backbone(x), "pruned (all domains)": lambda: pruned(x, d),
                    "pruned, domain models kept": lambda: served(x, d), "specialised": lambda: plain(x), "dense limit": lambda: limit(x)}  # fmt: skip
            if tp_model is not None:
                runs["Torch-Pruning, same MACs"] = lambda: tp_model(x)
            if rounded is not None:
                runs[f"specialised, channels ×{k}"] = lambda: rounded(x)
            xn = torch.randn(batch, *size).numpy()
            for name, s in sessions.items():
                runs[name] = lambda s=s: s.run(None, {s.get_inputs()[0].name: xn})
            times: dict[str, list[float]] = {k: [] for k in runs}
            with torch.no_grad():
                for _ in range(args.rounds):  # interleaved: machine drifts hit every model alike
                    for name, fn in runs.items():
                        times[name].append(measure(fn, dev, args.threads, args.min_run_time).median_ms)
            for name in runs:
                ratios = sorted(t / b for t, b in zip(times[name], times["backbone"]))
                rows.append({"arch": arch, "masks": masks, "batch": batch, "model": name, "MAC ratio": macs[name],
                             "ms": statistics.median(times[name]), "latency ratio": statistics.median(ratios),
                             "ratio range": f"{ratios[0]:.2f}–{ratios[-1]:.2f}"})  # fmt: skip
                print(rows[-1], flush=True)
    print(markdown(rows, list(rows[0])))
    name = "deploy_latency" if args.arch == ["mini"] else "deploy_latency-" + "-".join(args.arch)
    name += "-pad-own-channels" if args.pad_own_channels else ""
    name += ("" if args.dtype == "fp32" else f"-{args.dtype}") + ("-channels-last" if args.channels_last else "")
    name += f"-channels{args.channel_multiple}" if args.channel_multiple > 1 else ""
    name += f"-{args.name}" if args.name else ""
    name += "".join(f"-{p.resolve().parent.name}" for p in sources if p is not None) if "learned" in args.masks else ""
    learned = [str(p) for p in args.learned] if args.learned else None
    path = save(name, args.device, rows, threads=args.threads, domain=d, pad_own_channels=args.pad_own_channels,
                channel_multiple=args.channel_multiple,
                learned=learned, dtype=args.dtype, channels_last=args.channels_last)  # fmt: skip
    print(f"saved {path}")
    tmp_dir.cleanup()


if __name__ == "__main__":
    main()
