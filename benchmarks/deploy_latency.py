"""Latency of what a device would run, side by side: the backbone, the multi-domain pruned model, one domain's
specialised model (eager and ONNX Runtime), and the limit of its channel counts without gathers.

Masks (``--masks``): ``learned`` (the shipped sweep's Ours β = 0.5 run on the mini backbone), ``differ`` (random,
each domain its own half of every layer's channels: what BA² learns), ``shared`` (random, one half for all domains).
Each model is timed in interleaved rounds against the backbone; a row gives the median ratio and its range.

    python benchmarks/deploy_latency.py --device cpu                      # batches 1 and 64, 2 threads

The "dense limit" is the specialised model with every channel gather replaced by a slice of the first channels
(no copy): the same convolutions and channel counts, the cost of the representation removed. It computes another
function; it only bounds what gathers cost.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
from common import markdown, save

import mdlprune
from mdlprune.data.shipped import load_backbone, load_trained
from mdlprune.experiments.export import export_onnx
from mdlprune.experiments.timing import measure
from mdlprune.method.specialize import ChannelSelect


class _FirstChannels(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, : self.n]


def dense_limit(plain: nn.Module) -> nn.Module:
    """``plain`` with every :class:`ChannelSelect` replaced by a slice of the first channels (no gather)."""
    for name, m in list(plain.named_modules()):
        if isinstance(m, ChannelSelect):
            plain.set_submodule(name, _FirstChannels(len(m.index)))
    return plain


def models(masks: str) -> tuple[nn.Module, mdlprune.MultiDomainNet]:
    backbone = load_backbone().eval()
    if masks == "learned":
        model, _ = load_trained("ours", 0.5)
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--masks", nargs="+", default=["learned", "differ", "shared"], choices=["learned", "differ", "shared"])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--domain", type=int, default=0)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per model")
    p.add_argument("--min-run-time", type=float, default=0.5, help="seconds per model and round")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    size, d, rows = (3, 32, 32), args.domain, []
    tmp = Path(tempfile.mkdtemp())
    for masks in args.masks:
        backbone, model = models(masks)
        pruned = mdlprune.prune(model).eval()
        plain = mdlprune.specialize(pruned, d)
        limit = dense_limit(mdlprune.specialize(pruned, d))
        onnx_path = export_onnx(pruned, tmp / f"{masks}.onnx", d).path
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        base_macs = mdlprune.count_macs(backbone, size)
        macs = {"backbone": 1.0, "pruned (all domains)": mdlprune.count_macs(pruned, size, d, mask_aware=False) / base_macs,
                "specialised": mdlprune.count_macs(plain, size) / base_macs}  # fmt: skip
        macs.update({"specialised, ONNX Runtime": macs["specialised"], "dense limit": macs["specialised"]})
        for batch in args.batches:
            x = torch.randn(batch, *size)
            xn = x.numpy()
            runs = {"backbone": lambda: backbone(x), "pruned (all domains)": lambda: pruned(x, d),
                    "specialised": lambda: plain(x), "specialised, ONNX Runtime": lambda: session.run(None, {"images": xn}),
                    "dense limit": lambda: limit(x)}  # fmt: skip
            times: dict[str, list[float]] = {k: [] for k in runs}
            with torch.no_grad():
                for _ in range(args.rounds):  # interleaved: machine drifts hit every model alike
                    for name, fn in runs.items():
                        times[name].append(measure(fn, "cpu", args.threads, args.min_run_time).median_ms)
            for name in runs:
                ratios = sorted(t / b for t, b in zip(times[name], times["backbone"]))
                rows.append({"masks": masks, "batch": batch, "model": name, "MAC ratio": macs[name],
                             "ms": statistics.median(times[name]), "latency ratio": statistics.median(ratios),
                             "ratio range": f"{ratios[0]:.2f}–{ratios[-1]:.2f}"})  # fmt: skip
                print(rows[-1], flush=True)
    print(markdown(rows, list(rows[0])))
    print(f"saved {save('deploy_latency', 'cpu', rows, threads=args.threads, domain=d)}")


if __name__ == "__main__":
    main()
