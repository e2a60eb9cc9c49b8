"""Experiments on the mini-decathlon: train a method, prune, evaluate; the demo; the β sweep.

``train_method`` builds the model(s) a method needs from the pretrained backbone and trains them with
:class:`~mdlprune.train.Trainer`, resuming from (or simply loading) its checkpoint when one exists;
``evaluate_method`` prunes where the method allows it, checks that the pruned model computes what the
trained one does, and measures accuracy, MACs and Params.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .data.mini import MiniDecathlon, quick_mode
from .evaluate import MethodResult, accuracy, protocol_crops
from .history import History
from .metrics import count_macs, param_bits
from .multidomain import MultiDomainNet, to_multidomain
from .prune import prune
from .train import Trainer, TrainConfig

__all__ = ["mini_config", "mini_defaults", "TrainedMethod", "train_method", "evaluate_method", "run_methods", "run_from_config"]

#: In quick mode (CI), training shrinks to this on top of the mini preset.
MINI_QUICK = dict(epochs=2, batch_size=32, lr_milestones=(1,))


def mini_defaults() -> dict:
    """The training settings of the mini-decathlon on a CPU: the ``train`` section of the shipped
    ``mdlprune/configs/mini.yaml`` (the paper's settings, TrainConfig's defaults, would take hours here;
    docs/RESULTS.md says how these were chosen)."""
    from .config import load_config

    train = load_config("mini")["train"]
    return {k: v for k, v in train.items() if k not in ("method", "beta")}


def mini_config(method: str, beta: float = 0.5, quick: bool | None = None, **overrides) -> TrainConfig:
    """The training configuration of ``method`` on the mini-decathlon (``quick``: the CI-sized one)."""
    quick = quick_mode() if quick is None else quick
    settings = {**mini_defaults(), **(MINI_QUICK if quick else {}), **overrides}
    return TrainConfig.from_dict({"method": method, "beta": beta, **settings})


@dataclass
class TrainedMethod:
    """The model(s) a method trained: one multi-domain model, or one model per domain for Finetune."""

    method: str
    config: TrainConfig
    models: list[MultiDomainNet]
    histories: list[History]
    seconds: float
    divergence: float | None = None  # under torchrun: the largest difference between ranks' switches and λ


def _checkpoint(folder: Path | None, name: str) -> Path | None:
    return None if folder is None else Path(folder) / f"{name}.pt"


def train_method(
    method: str,
    backbone: nn.Module,
    bench: MiniDecathlon,
    config: TrainConfig | None = None,
    *,
    device: str | torch.device = "cpu",
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    sharing_loss: Callable | None = None,
    tag: str | None = None,
) -> TrainedMethod:
    """Train ``method`` ("ours", "ba2", "feature", "finetune") on every domain of ``bench``.

    With ``checkpoint_dir``, each run writes its checkpoint there and picks up from it: a finished run is
    loaded instead of trained again, an interrupted one continues where it stopped. Under ``torchrun`` the
    loaders shard every global batch over the ranks and the BatchNorms synchronise their statistics
    (:mod:`mdlprune.distributed`); the returned models have plain BatchNorms again.
    """
    from .distributed import convert_sync_batchnorm, is_distributed, revert_sync_batchnorm

    rank = torch.distributed.get_rank() if is_distributed() else 0
    world = torch.distributed.get_world_size() if is_distributed() else 1
    config = config or mini_config(method)
    if config.method != method:
        config = dataclasses.replace(config, method=method).validate()
    t0 = time.perf_counter()
    name = tag or (method if method in ("feature", "finetune") else f"{method}-beta{config.beta:g}")
    groups = [list(range(len(bench)))] if method != "finetune" else [[d] for d in range(len(bench))]
    per_step = config.batch_size // len(bench) if config.schedule == "mixed" else config.batch_size
    models, histories, divergence = [], [], None
    for domains in groups:
        doms = [bench.targets[d] for d in domains]
        with torch.random.fork_rng(devices=[]):  # the heads' initialisation depends on the seed alone
            torch.manual_seed(config.seed)
            model = to_multidomain(backbone, [d.num_classes for d in doms], domain_names=[d.name for d in doms])
        model = model.to(device)
        if world > 1:
            convert_sync_batchnorm(model)
        loaders = [d.loader("train", max(1, per_step), device=device, seed=1000 * config.seed + i, drop_last=True,
                            rank=rank, world_size=world) for i, d in zip(domains, doms)]  # fmt: skip
        suffix = f"-{doms[0].name}" if method == "finetune" else ""
        trainer = Trainer(
            model, loaders, config, sharing_loss=sharing_loss, checkpoint=_checkpoint(checkpoint_dir, name + suffix),
            input_size=(3, bench.image_size, bench.image_size), progress=progress,
        )  # fmt: skip
        histories.append(trainer.fit(resume=True))
        if trainer.divergence is not None:
            divergence = max(divergence or 0.0, trainer.divergence)
        models.append(revert_sync_batchnorm(model).eval())
    return TrainedMethod(method, config, models, histories, time.perf_counter() - t0, divergence)


@torch.no_grad()
def evaluate_method(
    trained: TrainedMethod,
    bench: MiniDecathlon,
    backbone: nn.Module,
    split: str = "test",
    crops: int | str = "protocol",
    device: str | torch.device = "cpu",
) -> MethodResult:
    """Accuracy per domain (``crops``: 1, 5, 10, or ``"protocol"``: 5 without flips, 10 with), relative MACs
    (mean over domains, mask-aware) and Params; BA² and Ours are evaluated *after* pruning."""
    size = (3, bench.image_size, bench.image_size)
    base_macs, base_bits = count_macs(backbone, size), param_bits(backbone)
    notes: dict = {}

    def acc(model, d, domain_arg):
        dom = bench.targets[d]
        n = getattr(dom, "test_crops", protocol_crops(dom.flip)) if crops == "protocol" else int(crops)
        loader = dom.loader(split, 256, device=device, full=n > 1)
        return accuracy(model, loader, domain_arg, crops=n, crop_size=bench.image_size if n > 1 else None)

    theta = union_fraction = None
    if trained.method in ("ours", "ba2"):
        model = trained.models[0].to(device).eval()
        masks = torch.cat(list(model.masks().values()), dim=1)
        theta = {n: float(masks[d].float().mean()) for d, n in enumerate(bench.names)}
        union_fraction = float(masks.any(0).float().mean())
        pruned = prune(model)
        x = bench.targets[0].loader("val", 64, device=device).iterate().__next__()[0]
        notes["max_abs_diff_pruned"] = max(
            float((model(x, d) - pruned(x, d)).abs().max()) for d in range(model.num_domains)
        )
        notes["max_abs_output"] = max(float(model(x, d).abs().max()) for d in range(model.num_domains))
        accs = {n: acc(pruned, d, d) for d, n in enumerate(bench.names)}
        rel_macs = sum(count_macs(pruned, size, d) for d in range(len(bench))) / (len(bench) * base_macs)
        rel_params = param_bits(pruned) / base_bits
        notes["pruned_macs_dense"] = count_macs(pruned, size, 0, mask_aware=False) / base_macs
        trained_model = pruned
    elif trained.method == "feature":
        model = trained.models[0].to(device).eval()
        accs = {n: acc(model, d, d) for d, n in enumerate(bench.names)}
        rel_macs = sum(count_macs(model, size, d) for d in range(len(bench))) / (len(bench) * base_macs)
        rel_params = 1.0  # one shared frozen backbone (heads excluded)
        trained_model = model
    else:  # finetune: one model per domain
        accs = {n: acc(m.to(device).eval(), d, 0) for d, (n, m) in enumerate(zip(bench.names, trained.models))}
        rel_macs = sum(count_macs(m, size, 0) for m in trained.models) / (len(bench) * base_macs)
        rel_params = float(len(trained.models))  # one full backbone per domain
        trained_model = None
    notes["crops"] = crops
    result = MethodResult(
        trained.method, trained.config.beta if trained.method in ("ours", "ba2") else None, accs,
        rel_macs, rel_params, theta, union_fraction, round(trained.seconds, 1), notes,
    )  # fmt: skip
    result.model = trained_model  # not serialised; kept for saving the pruned model
    return result


def run_methods(
    methods: Sequence[tuple[str, float | None]],
    backbone: nn.Module,
    bench: MiniDecathlon,
    *,
    device: str = "cpu",
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    quick: bool | None = None,
    log: Callable[[str], None] = print,
    **overrides,
) -> list[MethodResult]:
    """Train and evaluate each ``(method, beta)``; ``beta`` is ignored for Feature and Finetune."""
    results = []
    for method, beta in methods:
        config = mini_config(method, beta if beta is not None else 1.0, quick, **overrides)
        trained = train_method(method, backbone, bench, config, device=device, checkpoint_dir=checkpoint_dir, progress=progress)
        result = evaluate_method(trained, bench, backbone, device=device)
        log(f"{result.label}: " + ", ".join(f"{k} {v:.1f}" for k, v in result.accuracies.items())
            + f" | MACs {result.rel_macs:.3f}, Params {result.rel_params:.3f} ({trained.seconds:.0f} s)")  # fmt: skip
        result.histories = trained.histories
        results.append(result)
    return results


def save_results(results: Sequence[MethodResult], path: str | Path, **meta) -> Path:
    """Write results (and ``meta``: command, machine, ...) as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**meta, "results": [r.to_dict() for r in results]}, indent=2) + "\n")
    return path


# -- configuration files -----------------------------------------------------------------------------------
def backbone_from_config(model_cfg: dict) -> nn.Module:
    """The backbone a configuration's ``model`` section names (see :mod:`mdlprune.config`)."""
    import torchvision

    from .models import resnet26, wrn28
    from .pretrain import load_backbone

    name, weights = model_cfg["backbone"], model_cfg.get("weights")
    if name == "mini":
        return load_backbone()
    if name == "resnet26":
        net = resnet26(width=model_cfg.get("width", 1.0))
    elif name == "wrn28":
        net = wrn28(k=model_cfg.get("k", 10), width=model_cfg.get("width", 1.0))
    elif name in ("resnet18", "resnet50"):
        if weights == "imagenet":
            return getattr(torchvision.models, name)(weights="IMAGENET1K_V1")
        net = getattr(torchvision.models, name)()
    else:
        raise ValueError(f"unknown backbone {name!r}: choose mini, resnet26, wrn28, resnet18 or resnet50")
    if weights not in (None, "imagenet"):
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
    elif weights == "imagenet":
        raise ValueError(f"ImageNet weights exist for the torchvision backbones, not for {name}")
    return net


def benchmark_from_config(data_cfg: dict):
    """The benchmark a configuration's ``data`` section names."""
    from .data import mini_decathlon

    kind = data_cfg["benchmark"]
    if kind == "mini":
        bench = mini_decathlon(data_cfg.get("image_size", 32), data_cfg.get("seed", 0), data_cfg.get("size"),
                               data_cfg.get("root"))  # fmt: skip
        if data_cfg.get("domains"):
            unknown = [d for d in data_cfg["domains"] if d not in bench.names]
            if unknown:
                raise ValueError(f"unknown mini-decathlon domains {unknown}: choose from {bench.names}")
            bench.targets = [bench[d] for d in data_cfg["domains"]]
        return bench
    from .data.presets import RealBenchmark, decathlon_devkit, imagenet_to_sketch, torchvision_decathlon

    if kind not in ("decathlon", "torchvision", "sketch"):
        raise ValueError(f"unknown benchmark {kind!r}: choose mini, decathlon, torchvision or sketch")
    if not data_cfg.get("root"):
        raise ValueError(f"the {kind} benchmark needs data.root: the folder holding (or receiving) its datasets")
    domains = data_cfg.get("domains")
    if kind == "decathlon":
        return RealBenchmark(decathlon_devkit(data_cfg["root"], domains), 64, data_cfg.get("num_workers", 4))
    if kind == "torchvision":
        found = torchvision_decathlon(data_cfg["root"], domains, download=data_cfg.get("download", False))
        return RealBenchmark(found, 64, data_cfg.get("num_workers", 4))
    return RealBenchmark(imagenet_to_sketch(data_cfg["root"], domains), 224, data_cfg.get("num_workers", 4))


def run_from_config(source, overrides=None, stage: str = "train", model_path=None, argv=None, dry_run: bool = False) -> int:
    """``mdlprune train`` / ``mdlprune evaluate``: see :mod:`mdlprune.config` for the file format. Under
    ``torchrun`` every process runs this; rank 0 alone writes and prints."""
    import yaml

    from .config import load_config
    from .distributed import init_from_env
    from .report import Table
    from .serialization import load_model, save_model

    cfg = load_config(source, overrides)
    train_cfg = TrainConfig.from_dict(cfg["train"])
    info = init_from_env(cfg["device"])
    device = info.device
    torch.manual_seed(train_cfg.seed)  # a randomly initialised backbone is the same on every rank and every run
    bench = benchmark_from_config(cfg["data"])
    backbone = backbone_from_config(cfg["model"])
    out = Path(cfg["output"])
    if dry_run:
        model = to_multidomain(backbone, bench.num_classes, domain_names=bench.names)
        shapes = []
        for d, dom in enumerate(bench.targets):
            x, y = next(iter(dom.loader("train", min(train_cfg.batch_size, 4), drop_last=False)))
            with torch.no_grad():
                shapes.append(f"{dom.name}: batch {tuple(x.shape)} → logits {tuple(model.eval()(x, d).shape)}")
        print(f"dry run of {source}: {type(backbone).__name__} with {model.num_switches} switches per domain, "
              f"{train_cfg.method} at β = {train_cfg.beta}, {len(bench)} domains on {device}")  # fmt: skip
        print("\n".join(shapes))
        return 0
    if stage == "train":
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        trained = train_method(train_cfg.method, backbone, bench, train_cfg, device=device, checkpoint_dir=out,
                               tag="checkpoint", progress=info.is_main)  # fmt: skip
        if not info.is_main:
            return 0
        names = ["model.pt"] if len(trained.models) == 1 else [f"model-{d.name}.pt" for d in bench.targets]
        for model, name, history in zip(trained.models, names, trained.histories):
            save_model(model.cpu(), out / name)
            (out / name.replace("model", "history").replace(".pt", ".json")).write_text(json.dumps(history.state_dict()))
        if info.world_size > 1:
            (out / "distributed.json").write_text(json.dumps(
                {"world_size": info.world_size, "max_divergence_between_ranks": trained.divergence}, indent=2) + "\n")
        print(f"trained {train_cfg.method} on {bench.names} in {trained.seconds:.0f} s"
              f"{f' on {info.world_size} processes' if info.world_size > 1 else ''}; wrote {', '.join(names)} to {out}")
        if train_cfg.method in ("ours", "ba2"):
            masks = torch.cat(list(trained.models[0].masks().values()), dim=1)
            print("θ̄ per domain: " + ", ".join(f"{n} {masks[d].float().mean():.3f}" for d, n in enumerate(bench.names))
                  + f" (β = {train_cfg.beta}); channels used by some domain: {masks.any(0).float().mean():.3f}")  # fmt: skip
        return 0
    if not info.is_main:
        return 0
    model = load_model(model_path, map_location=device).eval()
    if list(model.domain_names) != bench.names:
        raise ValueError(f"the model's domains {list(model.domain_names)} are not the benchmark's {bench.names}")
    trained = TrainedMethod("model", train_cfg, [model], [], 0.0)
    size = (3, bench.image_size, bench.image_size)
    base_macs, base_bits = count_macs(backbone, size), param_bits(backbone)
    table = Table(["domain", "accuracy (%)", "crops", "relative MACs"], digits=3, title=f"{model_path} ({bench.names})")
    for d, dom in enumerate(bench.targets):
        n = getattr(dom, "test_crops", protocol_crops(dom.flip))
        acc = accuracy(model, dom.loader("test", 256, device=device, full=True), d, crops=n, crop_size=bench.image_size)
        table.add(dom.name, round(acc, 2), n, count_macs(model, size, d) / base_macs)
    print(table)
    print(f"\nrelative Params: {param_bits(model) / base_bits:.3f} (parameter memory vs the single-domain backbone)")
    del trained
    return 0
