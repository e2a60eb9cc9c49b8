"""Would rounding a pruned layer's channel counts up to a multiple of 8 pay? Time one 3 × 3 convolution at the
mini-decathlon's first-stage size for channel counts around those pruning leaves.

    python benchmarks/conv_channels.py --device cpu
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from common import markdown, save

from mdlprune.experiments.timing import measure


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-run-time", type=float, default=3.0)
    p.add_argument("--channels", nargs="+", default=["24,24", "25,28", "26,26", "27,27", "28,28", "32,32", "40,40", "48,48"],
                   help="in,out pairs")  # fmt: skip
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for pair in args.channels:
        cin, cout = (int(c) for c in pair.split(","))
        x = torch.randn(args.batch, cin, args.size, args.size, device=args.device)
        w = torch.randn(cout, cin, 3, 3, device=args.device)
        t = measure(lambda: F.conv2d(x, w, None, 1, 1), args.device, args.threads, args.min_run_time)
        macs = args.batch * args.size * args.size * cin * cout * 9
        rows.append({"in → out": f"{cin} → {cout}", "ms": t.median_ms, "IQR ms": t.iqr_ms, "GMAC/s": macs / t.median_ms / 1e6})
        print(rows[-1], flush=True)
    print(markdown(rows, list(rows[0])))
    print(f"saved {save('conv_channels', args.device, rows, batch=args.batch, size=args.size, threads=args.threads)}")


if __name__ == "__main__":
    main()
