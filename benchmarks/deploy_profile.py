"""The measurements behind the explanations in benchmarks/RESULTS.md (issue 14) and METHOD §6:

1. Where the MACs go, by stage: the mini backbone, its specialised model with the learned masks (domain 0), and
   Torch-Pruning's model at the same MACs (as in deploy_latency.py), with the residual stream's width.
2. Depthwise convolution on CPU: the whole layer against half its groups computed and scattered into the output
   (the alternative pruning rejected for groups no domain feeds).
3. MobileNetV2 specialised from the pruned model against from the trained one (random β = 0.5 masks, 3 domains).
4. MobileNetV2 (64 px, deploy_latency.py's masks, domain 0) pruned with grouped padding over channel 0 (the default)
   and over each group's own channels (``pad_own_channels``): Params, MACs executed, and latency against the backbone,
   for the multi-domain model and the model specialised from the trained one (5 interleaved rounds, median and range).
5. What serving every domain holds in memory (floats, parameters and buffers), with the shipped Ours β = 0.5 masks:
   the pruned multi-domain model, the per-domain kernel slices its eval passes keep once every domain has run, and
   one specialised model per domain; and what keeping the slices saves in time (domain 0, against the backbone).

    python benchmarks/deploy_profile.py            # 2 threads; needs torch-pruning for part 1
    python benchmarks/deploy_profile.py padding    # part 4 alone
6. What ``keep_domain_models`` costs: the first pass of each domain (it builds the domain's specialised model), and on
   later passes the check that nothing changed (``serving.domain_model`` on a warm cache), for the mini backbone's
   learned masks and MobileNetV2 (64 px, differing masks), batch 1.
7. ONNX Runtime at batch 64 on the mini backbone (shared random masks, then the learned ones, domain 0): the backbone
   (BatchNorm folded), the specialised model, the same with the channels each convolution reads rounded up to a
   multiple of 4 and of 16 (``specialize(..., channel_multiple=k)``), and Torch-Pruning's at the same MACs, each
   exported to ONNX; how many of its convolutions ONNX Runtime runs in its blocked NCHWc layout; their latency
   against the eager backbone (5 interleaved rounds), and ONNX Runtime's own profile of each: time per run by
   operator type (a convolution fused with its ReLU or addition counts as a convolution).

    python benchmarks/deploy_profile.py memory     # part 5 alone
    python benchmarks/deploy_profile.py serving    # part 6 alone
    python benchmarks/deploy_profile.py ort        # part 7 alone
8. One 3 × 3 convolution in ONNX Runtime, batch 64 at 32 px, c → c channels for c around multiples of 16.

    python benchmarks/deploy_profile.py ort-convs  # part 8 alone

``--time-scale F`` (first) multiplies every timing budget by F: ``--time-scale 0.01`` runs every part in seconds, to
check that it runs (tests/test_benchmarks.py), with timings that mean nothing.
"""

from __future__ import annotations

import copy
import io
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from deploy_latency import models, torch_pruning
from torch.utils.benchmark import Timer

import mdlprune
from mdlprune.method.specialize import fold_batchnorms


SCALE = 1.0  # every timing budget's factor (--time-scale)


def _median(statement: str, names: dict, seconds: float) -> float:
    """Median seconds per run of ``statement`` (``torch.utils.benchmark``, ``seconds`` of runs in all)."""
    return Timer(statement, globals=names).blocked_autorange(min_run_time=seconds).median


def stages() -> None:
    size = (3, 32, 32)
    backbone, model = models("mini", "learned")
    plain = mdlprune.specialize(mdlprune.prune(model).eval(), 0)
    base = mdlprune.count_macs(backbone, size)
    tp, _ = torch_pruning(backbone, mdlprune.count_macs(plain, size) / base, size)
    print("| model | MACs | by stage (fraction of the backbone's MACs) | residual stream width |\n|---|---|---|---|")
    for name, m in (("backbone", backbone), ("specialised, learned masks", plain), ("Torch-Pruning", tp)):
        total, layers = mdlprune.count_macs(m, size, by_layer=True)
        by_stage: dict[str, float] = {}
        for layer, macs in layers.items():
            by_stage[layer.split(".")[0]] = by_stage.get(layer.split(".")[0], 0) + macs / base
        stem = next(mod for n, mod in m.named_modules() if isinstance(mod, nn.Conv2d))
        cells = ", ".join(f"{k} {v:.3f}" for k, v in by_stage.items())
        print(f"| {name} | {total / base:.3f} | {cells} | {stem.out_channels} |")


def depthwise() -> None:
    for channels, size, batch in ((96, 16, 64), (384, 4, 64), (96, 16, 1)):
        x, w, b = torch.randn(batch, channels, size, size), torch.randn(channels, 1, 3, 3), torch.randn(channels)
        fed = torch.arange(0, channels, 2)  # half the groups

        def scatter():
            y = F.conv2d(x.index_select(1, fed), w[fed], None, 1, 1, 1, len(fed))
            return torch.zeros(batch, channels, size, size).index_copy(1, fed, y) + b.view(1, -1, 1, 1)

        def whole():
            return F.conv2d(x, w, b, 1, 1, 1, channels)

        times = {f.__name__: _median("f()", {"f": f}, 0.5 * SCALE) * 1e3 for f in (scatter, whole)}
        print(f"depthwise {channels} channels, {size}x{size}, batch {batch}: whole {times['whole']:.2f} ms, "
              f"half the groups + scatter {times['scatter']:.2f} ms")


def specialise_mobilenet() -> None:
    model = mdlprune.randomize_switches(
        mdlprune.to_multidomain(torchvision.models.mobilenet_v2(weights=None), [3, 5, 4]), 0.5, seed=1
    ).eval()
    pruned = mdlprune.prune(model)
    for d in range(3):
        a, b = (mdlprune.count_macs(mdlprune.specialize(m, d), (3, 32, 32)) for m in (pruned, model))
        print(f"MobileNetV2 domain {d}: specialised from the pruned model {a / 1e6:.2f} M MACs, from the trained {b / 1e6:.2f} M")


def interleaved(fns: dict, rounds: int = 5, min_time: float = 0.5) -> dict[str, list[float]]:
    """Seconds per call of each function, ``rounds`` times, the functions taking turns within each round."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():
        f(), f()
    for _ in range(rounds):
        for k, f in fns.items():
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < min_time * SCALE:
                f()
                n += 1
            times[k].append((time.perf_counter() - start) / n)
    return times


def _conv_weights(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, mdlprune.PrunedConv2d)))


def padding() -> None:
    print("| masks | batch | model | padding | conv weights | MACs executed | latency / backbone |\n|---|---|---|---|---|---|---|")
    for masks in ("differ", "shared"):
        backbone, model = models("mobilenet_v2", masks)
        built = {("multi-domain", own): mdlprune.prune(model, pad_own_channels=own).eval() for own in (False, True)}
        built.update({("specialised", own): mdlprune.specialize(model, 0, pad_own_channels=own) for own in (False, True)})
        size, base = (3, 64, 64), mdlprune.count_macs(backbone, (3, 64, 64))
        params = _conv_weights(backbone)
        for batch in (1, 64):
            x = torch.randn(batch, *size)
            fns = {"backbone": lambda: backbone(x)}
            fns.update({key: (lambda m=m: m(x, 0)) if key[0] == "multi-domain" else (lambda m=m: m(x)) for key, m in built.items()})
            with torch.inference_mode():  # (the models were built outside it, so their per-domain kernels are kept)
                times = interleaved(fns)
            ref = statistics.median(times["backbone"])
            for key, m in built.items():
                t = [v / ref for v in times[key]]
                macs = mdlprune.executed_macs(m, size, 0) if key[0] == "multi-domain" else mdlprune.count_macs(m, size)
                held = _conv_weights(m)
                print(f"| {masks} | {batch} | {key[0]} | {'own channels' if key[1] else 'channel 0'} | "
                      f"{held / params:.3f} | {macs / base:.3f} | {statistics.median(t):.2f} ({min(t):.2f}-{max(t):.2f}) |")


def _floats(model: nn.Module) -> int:
    return sum(t.numel() for t in (*model.parameters(), *model.buffers()) if t.is_floating_point())


def memory() -> None:
    backbone, model = models("mini", "learned")
    pruned = mdlprune.prune(model).eval()
    with torch.no_grad():
        for d in range(pruned.num_domains):
            pruned(torch.randn(2, 3, 32, 32), d)
    slices = sum(w.numel() for m in pruned.modules() if isinstance(m, mdlprune.PrunedConv2d)
                 for _, w in m.__dict__.get("_domain_cache", (None, {}))[1].values() if w is not None and w is not m.weight)
    plain = [_floats(mdlprune.specialize(pruned, d)) for d in range(pruned.num_domains)]
    base = _floats(backbone)
    print("| what | floats | / backbone |\n|---|---|---|")
    for name, n in (("backbone (single domain)", base), ("pruned multi-domain model", _floats(pruned)),
                    ("its per-domain kernel slices, every domain run once", slices),
                    ("pruned model and its slices: what serving every domain holds", _floats(pruned) + slices),
                    (f"{len(plain)} specialised models together (BatchNorm folded)", sum(plain))):  # fmt: skip
        print(f"| {name} | {n:,} | {n / base:.2f} |")
    sliced = mdlprune.keep_domain_kernels(mdlprune.prune(model).eval(), False)
    print("\n| batch | pruned, slices kept | pruned, sliced every pass |\n|---|---|---|")
    for batch in (1, 64):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            times = interleaved({"backbone": lambda: backbone(x), "kept": lambda: pruned(x, 0), "per pass": lambda: sliced(x, 0)})
        ref = statistics.median(times["backbone"])
        cells = [sorted(v / ref for v in times[k]) for k in ("kept", "per pass")]
        print(f"| {batch} | " + " | ".join(f"{statistics.median(t):.2f} ({t[0]:.2f}–{t[-1]:.2f})" for t in cells) + " |")


def serving() -> None:
    from mdlprune.method.serving import domain_model

    print("| model | tensors watched | first pass of each domain (ms) | later pass (ms) | the check alone (µs) |")
    print("|---|---|---|---|---|")
    for arch, masks, side in (("mini", "learned", 32), ("mobilenet_v2", "differ", 64)):
        _, model = models(arch, masks)
        pruned = mdlprune.keep_domain_models(mdlprune.prune(model).eval(), True)
        x = torch.randn(1, 3, side, side)
        with torch.no_grad():
            first = []
            for d in range(pruned.num_domains):
                t = time.perf_counter()
                pruned(x, d)
                first.append((time.perf_counter() - t) * 1e3)
            later = _median("m(x, 0)", {"m": pruned, "x": x}, SCALE) * 1e3
            check = _median("f(m, 0)", {"f": domain_model, "m": pruned}, SCALE)
        watched = len(pruned.__dict__["_domain_models"]["watched"][0])  # (domain 0's: the others' tensors aside)
        print(f"| {arch}, {masks} masks | {watched} | {min(first):.0f}-{max(first):.0f} | {later:.2f} | {check * 1e6:.0f} |")


def _ort_session(module: nn.Module, path: str, profile: bool, channels: int = 3):
    import onnxruntime as ort

    if not Path(path).exists():
        x = torch.randn(2, channels, 32, 32)
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
            torch.onnx.export(module.eval(), (x,), path, dynamo=True, external_data=False, verbose=False,
                              dynamic_shapes=({0: torch.export.Dim("batch")},))  # fmt: skip
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    options.enable_profiling = profile
    options.profile_file_prefix = path + "-profile"
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _blocked_convs(path: str) -> str:
    """How many of the model's convolutions ONNX Runtime runs in its blocked NCHWc layout: "n of m" (from the graph
    it optimises for this machine)."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # (it warns that the saved graph is for this machine only)
    options.optimized_model_filepath = path + "-optimized.onnx"
    ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    convs = [n for n in onnx.load(options.optimized_model_filepath).graph.node if "Conv" in n.op_type]
    return f"{sum(n.domain == 'com.microsoft.nchwc' for n in convs)} of {len(convs)}"


def _op_times(session, feed: dict, runs: int = 30, skip: int = 5) -> tuple[float, dict[str, float]]:
    """ONNX Runtime's own profile: median ms per run, and ms per run by operator type (runs after the first ``skip``)."""
    for _ in range(max(skip + 2, round(runs * SCALE))):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[skip:]
    by_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and any(a <= e["ts"] <= b for a, b in windows):
            op = e["args"]["op_name"]
            op = "Conv" if "Conv" in op else op  # Conv, FusedConv (with ReLU, addition)
            by_op[op] = by_op.get(op, 0.0) + e["dur"] / 1e3 / len(windows)
    return statistics.median((b - a) / 1e3 for a, b in windows), by_op


def ort_profile() -> None:
    size, batch = (3, 32, 32), 64
    x = torch.randn(batch, *size)
    images = x.numpy()
    with tempfile.TemporaryDirectory() as tmp:
        for masks in ("shared", "learned"):
            backbone, model = models("mini", masks)
            plain = mdlprune.specialize(mdlprune.prune(model).eval(), 0)
            base = mdlprune.count_macs(backbone, size)
            tp, tp_macs = torch_pruning(backbone, mdlprune.count_macs(plain, size) / base, size)
            onnx = {"backbone, BatchNorm folded": fold_batchnorms(copy.deepcopy(backbone)).requires_grad_(False),
                    "specialised": plain}  # fmt: skip
            for k in (4, 16):  # from the trained model, as in deploy_latency.py
                onnx[f"specialised, channels ×{k}"] = mdlprune.specialize(model, 0, channel_multiple=k)
            onnx["Torch-Pruning, same MACs"] = tp
            macs = {k: mdlprune.count_macs(m, size) / base for k, m in onnx.items()}
            macs["Torch-Pruning, same MACs"] = tp_macs
            paths = {k: f"{tmp}/{masks}-{i}.onnx" for i, k in enumerate(onnx)}
            sessions = {k: _ort_session(m, paths[k], profile=False) for k, m in onnx.items()}
            fns = {"eager backbone": lambda: backbone(x)}
            fns.update({k: (lambda s=s: s.run(None, {s.get_inputs()[0].name: images})) for k, s in sessions.items()})
            with torch.no_grad():
                times = interleaved(fns)
            ref = times["eager backbone"]
            print(f"\n{masks} masks, batch {batch}: ONNX Runtime, latency against the eager backbone "
                  f"({statistics.median(ref) * 1e3:.1f} ms), median of 5 interleaved rounds and range")
            print("| model (ONNX Runtime) | MACs | latency / eager backbone | convolutions in NCHWc | ms per run, profiled "
                  "| by operator, ms per run |\n|---|---|---|---|---|---|")  # fmt: skip
            for k, m in onnx.items():
                t = sorted(a / b for a, b in zip(times[k], ref))
                session = _ort_session(m, paths[k], profile=True)
                total, by_op = _op_times(session, {session.get_inputs()[0].name: images})
                ops = ", ".join(f"{op} {ms:.2f}" for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1]) if ms >= 0.05)
                print(f"| {k} | {macs[k]:.3f} | {statistics.median(t):.2f} ({t[0]:.2f}–{t[-1]:.2f}) | "
                      f"{_blocked_convs(paths[k])} | {total:.2f} | {ops} |")  # fmt: skip


def ort_convs() -> None:
    """One 3 × 3 convolution (and ReLU) with c channels in and out, batch 64 at 32 px, in ONNX Runtime."""
    counts = (16, 20, 23, 24, 25, 28, 30, 32, 40, 47, 48)
    fns = {}
    with tempfile.TemporaryDirectory() as tmp:
        for c in counts:
            layer = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU()).eval()
            session = _ort_session(layer, f"{tmp}/conv{c}.onnx", profile=False, channels=c)
            x = torch.randn(64, c, 32, 32).numpy()
            fns[c] = lambda s=session, x=x: s.run(None, {s.get_inputs()[0].name: x})
        times = interleaved(fns, rounds=3, min_time=0.3)
    print("| channels in → out | ms (median of 3 interleaved rounds) | ms per 1,000 channel pairs |\n|---|---|---|")
    for c in counts:
        ms = statistics.median(times[c]) * 1e3
        print(f"| {c} → {c} | {ms:.2f} | {ms / (c * c) * 1e3:.2f} |")


PARTS = {"stages": stages, "depthwise": depthwise, "mobilenet": specialise_mobilenet, "padding": padding,
         "memory": memory, "serving": serving, "ort": ort_profile,
         "ort-convs": ort_convs}  # fmt: skip

if __name__ == "__main__":
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    args = sys.argv[1:]
    if args[:1] == ["--time-scale"]:
        try:
            SCALE = float(args[1])
        except (IndexError, ValueError):
            SCALE = 0.0
        if not (math.isfinite(SCALE) and SCALE > 0):
            sys.exit("deploy_profile.py: --time-scale takes a positive number, e.g. --time-scale 0.01")
        args = args[2:]
    if any(a.startswith("--time-scale") for a in args):
        sys.exit("deploy_profile.py: --time-scale F comes first, before the parts: "
                 "deploy_profile.py --time-scale F PART")
    unknown = [a for a in args if a not in PARTS]
    if unknown:
        sys.exit(f"deploy_profile.py: unknown part {unknown[0]!r}; parts: {', '.join(PARTS)} (none: all of them)")
    for part in args or PARTS:
        PARTS[part]()
