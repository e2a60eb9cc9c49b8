"""End to end: wall time of ``mdlprune demo`` and of the quick notebook suite, and round-robin training
throughput (images/s) on the mini-decathlon with the data resident on the device.

    python benchmarks/end_to_end.py --device cpu --what throughput notebooks demo
    python benchmarks/end_to_end.py --device cuda --what throughput --size 64 --batch 256

``demo`` runs the real main job (about 10 minutes on 2 CPU cores); ``notebooks`` runs ``pytest --nbval-lax
notebooks/`` in quick mode, as CI does.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import markdown, save

import mdlprune
from mdlprune.data import load_backbone, mini_decathlon
from mdlprune.experiments.runs import mini_config
from mdlprune.training import Trainer

ROOT = Path(__file__).resolve().parents[1]


def throughput(device: str, size: int, batch: int, steps: int, channels_last: bool, bf16: bool) -> dict:
    """Images/s of BA²+sharing training steps on the mini-decathlon, data on ``device``."""
    bench = mini_decathlon(image_size=size, size={"train": max(batch * 4, 512), "val": 8, "test": 8})
    bench.generate(include_source=False)
    model = mdlprune.to_multidomain(load_backbone(), bench.num_classes, domain_names=bench.names).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    loaders = [d.loader("train", batch, device=device, drop_last=True) for d in bench]
    trainer = Trainer(model, loaders, mini_config("ours", 0.5, quick=False, batch_size=batch), progress=False, log_every=50)
    batches = [next(iter(loader)) for loader in loaders]

    def run(n):
        for k in range(n):
            d = k % len(loaders)
            x, y = batches[d]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
                trainer.train_step([(d, x, y)])
        trainer.log.flush()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    run(5)  # warm-up
    t0 = time.perf_counter()
    run(steps)
    seconds = time.perf_counter() - t0
    return {"what": f"training, {size} px, batch {batch}" + (", channels_last" if channels_last else "") + (", bf16" if bf16 else ""),
            "seconds": seconds, "images/s": steps * batch / seconds}  # fmt: skip


def timed(command: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--what", nargs="+", default=["throughput"], choices=["throughput", "notebooks", "demo"])
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    if "throughput" in args.what:
        variants = [(False, False)] + ([(True, False), (True, True)] if args.device.startswith("cuda") else [])
        for cl, bf16 in variants:
            rows.append(throughput(args.device, args.size, args.batch, args.steps, cl, bf16))
            print(rows[-1], flush=True)
    # cold runs, as on a fresh clone: data generated and every model trained inside the timed command
    env = {k: v for k, v in os.environ.items() if k not in ("MDLPRUNE_ROOT", "MDLPRUNE_DATA")}
    env["OMP_NUM_THREADS"] = str(args.threads)
    if "notebooks" in args.what:
        with tempfile.TemporaryDirectory() as root:
            seconds = timed([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "notebooks/"],
                            {**env, "MDLPRUNE_QUICK": "1", "MDLPRUNE_ROOT": root})  # fmt: skip
        rows.append({"what": "quick notebook suite, cold (pytest --nbval-lax notebooks/)", "seconds": seconds, "images/s": ""})
        print(rows[-1], flush=True)
    if "demo" in args.what:
        with tempfile.TemporaryDirectory() as out:
            seconds = timed([sys.executable, "-m", "mdlprune", "demo", "--no-progress", "--out", f"{out}/demo",
                             "--device", args.device], {**env, "MDLPRUNE_QUICK": "0", "MDLPRUNE_DATA": f"{out}/data"})  # fmt: skip
        rows.append({"what": "mdlprune demo (default settings), cold", "seconds": seconds, "images/s": ""})
        print(rows[-1], flush=True)
    print(markdown(rows, ["what", "seconds", "images/s"]))
    print(f"saved {save('end_to_end', args.device, rows, threads=args.threads)}")


if __name__ == "__main__":
    main()
