"""Experiments: train a method, prune, evaluate; one run from a configuration file.

:func:`train_method` builds the model(s) a method needs from the pretrained backbone and trains them with
:class:`~mdlprune.training.Trainer`, resuming from (or simply loading) its checkpoint when one exists;
:func:`evaluate_method` prunes where the method allows it, checks that the pruned model computes what the
trained one does, and measures accuracy, MACs and Params. What a method trains and whether it is pruned come
from its row of :data:`~mdlprune.training.methods.METHODS`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import yaml

from ..data.base import Benchmark
from ..data.shipped import load_trained, run_name, shipped_runs
from ..method.macs import count_macs, executed_macs, relative_macs
from ..method.metrics import param_bits
from ..method.convert import to_multidomain
from ..method.multidomain import MultiDomainNet
from ..method.prune import compare_outputs, prune
from ..training.checkpoint import check_identity, check_rounds, fingerprint, load_checkpoint, load_model, save_model
from ..training.config import RunConfig, TrainConfig, load_config, quick_mode
from ..training.distributed import barrier, convert_sync_batchnorm, init_from_env, is_distributed, revert_sync_batchnorm
from ..training.domain_state import save_domain_state
from ..training.history import History
from ..training.methods import get_method
from ..training.trainer import Trainer
from .build import build_backbone, build_benchmark
from .evaluate import MethodResult, accuracy, protocol_crops
from .report import Table

__all__ = ["mini_config", "TrainedMethod", "train_method", "evaluate_method", "run_methods", "save_results",
           "train_from_config", "evaluate_from_config", "run_identity"]  # fmt: skip


def mini_config(method: str, beta: float = 0.5, quick: bool | None = None, preset: str | None = None,
                **overrides) -> TrainConfig:  # fmt: skip
    """The training settings of ``method`` on the mini-decathlon: the ``train`` section of a shipped
    configuration (``preset``; default ``mini``, or ``mini-quick`` in quick mode), with ``overrides``."""
    quick = quick_mode() if quick is None else quick
    train = load_config(preset or ("mini-quick" if quick else "mini")).train
    return dataclasses.replace(train, method=method, beta=beta, **overrides)


def run_identity(bench: Benchmark, backbone: nn.Module, model_settings: dict | None = None) -> dict:
    """The data and model part of a run's identity (the trainer adds the training settings): a checkpoint made
    on other data or from another backbone is never resumed (:func:`~mdlprune.training.checkpoint.check_identity`).
    ``model_settings``: the configuration's ``model`` section, when the run comes from one (clearer messages)."""
    settings = dict(model_settings or {})
    if settings.get("backbone") == "mini":  # the shipped backbone: width, k and weights do not apply
        settings = {"backbone": "mini"}
    model = {**settings, "class": type(backbone).__name__, "sha256": fingerprint(backbone)}
    return {"data": bench.identity(), "model": model}


@dataclass
class TrainedMethod:
    """The model(s) a method trained: one multi-domain model, or one model per domain (Finetune)."""

    method: str
    config: TrainConfig
    models: list[MultiDomainNet]
    histories: list[History]
    seconds: float  # wall time of the training, also when this call loaded it from a checkpoint
    divergence: float | None = None  # under torchrun: the largest difference between ranks' switches and λ
    origin: str = "trained"  # "trained" here, "resumed" from a checkpoint, "loaded" finished, or "shipped"
    tag: str | None = None  # the run's own name (a variant of the method, e.g. a student's sharing loss)


def train_method(
    method: str,
    backbone: nn.Module,
    bench: Benchmark,
    config: TrainConfig | None = None,
    *,
    device: str | torch.device = "cpu",
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    sharing_loss: Callable | None = None,
    tag: str | None = None,
    restart: bool = False,
    model_settings: dict | None = None,
    checkpoint_name: str | None = None,
) -> TrainedMethod:
    """Train ``method`` (a name of :data:`~mdlprune.training.methods.METHODS`) on every domain of ``bench``.

    With ``checkpoint_dir``, each run writes its checkpoint there and picks up from it: a finished run is
    loaded instead of trained again, an interrupted one continues where it stopped; one made with other settings,
    data or backbone is refused, unless ``restart`` (which trains afresh over it). Under ``torchrun`` the
    loaders shard every global batch over the ranks and the BatchNorms synchronise their statistics
    (:mod:`mdlprune.training.distributed`); the returned models have plain BatchNorms again. The checkpoint's file
    is named by ``checkpoint_name``, else by the run (``tag``, else the method, β and seed).
    """
    spec = get_method(method)
    rank = torch.distributed.get_rank() if is_distributed() else 0
    world = torch.distributed.get_world_size() if is_distributed() else 1
    config = config or mini_config(method)
    if config.method != method:
        config = dataclasses.replace(config, method=method)
    name = tag or (f"{method}-beta{config.beta:g}" if spec.switches else method) + (f"-seed{config.seed}" if config.seed else "")
    n = len(bench)
    groups = [[d] for d in range(n)] if spec.per_domain_models else [list(range(n))]
    per_step = config.batch_size // n if config.schedule == "mixed" else config.batch_size
    identity = run_identity(bench, backbone, model_settings)
    models, histories, divergence, seconds, steps, resumed = [], [], None, 0.0, 0, False
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
        suffix = f"-{doms[0].name}" if spec.per_domain_models else ""
        checkpoint = None if checkpoint_dir is None else Path(checkpoint_dir) / f"{checkpoint_name or name}{suffix}.pt"
        if restart and checkpoint is not None:
            checkpoint.unlink(missing_ok=True)
        trainer = Trainer(model, loaders, config, sharing_loss=sharing_loss, checkpoint=checkpoint, identity=identity,
                          input_size=(3, bench.image_size, bench.image_size), progress=progress, label=tag)  # fmt: skip
        resumed |= checkpoint is not None and checkpoint.is_file()
        histories.append(trainer.fit(resume=True))
        seconds, steps = seconds + trainer.train_seconds, steps + trainer.steps_run
        if trainer.divergence is not None:
            divergence = max(divergence or 0.0, trainer.divergence)
        model.run_identity = trainer.identity  # travels with the saved model: what it was trained with
        models.append(revert_sync_batchnorm(model).eval())
    origin = "trained" if not resumed else "resumed" if steps else "loaded"
    return TrainedMethod(method, config, models, histories, seconds, divergence, origin, tag)


def _test_loader(dom, split: str, crops: int | str, device):
    n = getattr(dom, "test_crops", protocol_crops(dom.flip)) if crops == "protocol" else int(crops)
    return dom.loader(split, 256, device=device, full=n > 1), n


@torch.no_grad()
def evaluate_method(
    trained: TrainedMethod,
    bench: Benchmark,
    backbone: nn.Module,
    split: str = "test",
    crops: int | str = "protocol",
    device: str | torch.device = "cpu",
) -> MethodResult:
    """Accuracy per domain (``crops``: 1, 5, 10, or ``"protocol"``: 5 without flips, 10 with), relative MACs
    (mean over domains, mask-aware) and Params. Methods with switches are evaluated *after* pruning."""
    spec = get_method(trained.method)
    size = (3, bench.image_size, bench.image_size)
    notes: dict = {}

    def acc(model, d, domain_arg):
        loader, n = _test_loader(bench.targets[d], split, crops, device)
        return accuracy(model, loader, domain_arg, crops=n, crop_size=bench.image_size if n > 1 else None)

    theta = union_fraction = None
    if spec.switches:
        model = trained.models[0].to(device).eval()
        usage = model.channel_usage()
        theta, union_fraction = usage.theta_bar, usage.union
        pruned = prune(model)
        x = next(bench.targets[0].loader("val", 64, device=device).iterate())[0]
        same = compare_outputs(model, pruned, x)
        notes["max_abs_diff_pruned"], notes["max_abs_output"] = same.max_abs_diff, same.output_scale
        accs = {name: acc(pruned, d, d) for d, name in enumerate(bench.names)}
        rel_macs = relative_macs(pruned, backbone, size)
        rel_params = param_bits(pruned) / param_bits(backbone)
        notes["pruned_macs_dense"] = executed_macs(pruned, size, 0) / count_macs(backbone, size)  # (executed, domain 0)
        final_model = pruned
    elif spec.per_domain_models:  # one whole backbone per domain
        accs = {name: acc(m.to(device).eval(), d, 0) for d, (name, m) in enumerate(zip(bench.names, trained.models))}
        rel_macs = sum(count_macs(m, size, 0) for m in trained.models) / (len(bench) * count_macs(backbone, size))
        rel_params = float(len(trained.models))
        final_model = None
    else:  # one shared backbone as it is (Feature: its BatchNorms are the source's), heads excluded
        model = trained.models[0].to(device).eval()
        accs = {name: acc(model, d, d) for d, name in enumerate(bench.names)}
        rel_macs = relative_macs(model, backbone, size)
        rel_params = 1.0
        final_model = model
    notes["crops"] = crops
    result = MethodResult(trained.method, trained.config.beta if spec.switches else None, accs, rel_macs, rel_params,
                          theta, union_fraction, round(trained.seconds, 1), notes, trained.config.seed)  # fmt: skip
    result.model = final_model  # not serialised; kept for saving the pruned model
    return result


def shipped_run(method: str, bench: Benchmark, backbone: nn.Module, config: TrainConfig) -> TrainedMethod | None:
    """The run of the committed sweep trained with exactly ``config`` on exactly ``bench`` from ``backbone``,
    rebuilt from its shipped domain-specific parameters (``origin="shipped"``, its training curves thinned);
    ``None`` when no shipped run matches (then train it: :func:`train_method`)."""
    spec = get_method(method)
    name = run_name(method, config.beta if spec.switches else None, config.seed)
    if spec.per_domain_models or name not in shipped_runs():
        return None
    model, meta = load_trained(method, config.beta if spec.switches else None, config.seed, backbone)
    saved = TrainConfig.from_dict(meta["config"])
    if meta.get("data") != bench.identity() or saved.rounds != config.rounds or \
            saved.settings_that_matter() != config.settings_that_matter():  # fmt: skip
        return None
    history = History.from_state_dict(meta["history"])
    return TrainedMethod(method, saved, [model], [history], meta["seconds"] or 0.0, origin="shipped")


#: records of the training history kept with an exported run (curves for the notebooks, ~100 KB)
SHIPPED_HISTORY = 300


def run_methods(
    methods: Sequence[tuple[str, float | None] | tuple[str, float | None, int]],
    backbone: nn.Module,
    bench: Benchmark,
    *,
    device: str = "cpu",
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    quick: bool | None = None,
    preset: str | None = None,
    export_dir: str | Path | None = None,
    restart: bool = False,
    log: Callable[[str], None] = print,
    **overrides,
) -> list[MethodResult]:
    """Train and evaluate each ``(method, beta)`` or ``(method, beta, seed)`` with the settings of
    :func:`mini_config` (``beta`` is ignored by the methods without switches). With ``export_dir``, the
    domain-specific parameters of every multi-domain model are written there
    (:func:`~mdlprune.training.domain_state.save_domain_state`), with the run's results."""
    results = []
    for method, beta, *seed in methods:
        extra = {"seed": seed[0]} if seed else {}
        config = mini_config(method, beta if beta is not None else 1.0, quick, preset, **{**overrides, **extra})
        trained = train_method(method, backbone, bench, config, device=device, checkpoint_dir=checkpoint_dir,
                               progress=progress, restart=restart)  # fmt: skip
        result = evaluate_method(trained, bench, backbone, device=device)
        if export_dir is not None and not get_method(method).per_domain_models:
            name = run_name(result.method, result.beta, result.seed)
            save_domain_state(trained.models[0], Path(export_dir) / f"{name}.pt", backbone, **result.to_dict(),
                              config=trained.config.to_dict(), data=bench.identity(),
                              history=trained.histories[0].thinned(SHIPPED_HISTORY).state_dict())  # fmt: skip
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


# -- one run from a configuration file (``mdlprune train`` / ``evaluate``) ---------------------------------
def _prepare(cfg: RunConfig):
    info = init_from_env(cfg.device)
    torch.manual_seed(cfg.train.seed)  # a randomly initialised backbone is the same on every rank and every run
    return info, build_benchmark(cfg.data), build_backbone(cfg.model)


def _check_folder(out: Path, bench: Benchmark, backbone: nn.Module, train: TrainConfig, model_settings: dict) -> None:
    """Refuse, before anything is written, a run folder whose checkpoints were made with other settings."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"the output {out} is a file, not a folder: choose another output (--set output=...)")
    now = {**run_identity(bench, backbone, model_settings), "train": train.settings_that_matter()}
    for path in sorted(out.glob("checkpoint*.pt")) if out.is_dir() else []:
        state = load_checkpoint(path)
        check_identity({k: v for k, v in (state.get("identity") or {}).items() if k != "format"}, now, path)
        check_rounds(state.get("round", 0), train.rounds, path)


def train_from_config(cfg: RunConfig, dry_run: bool = False, restart: bool = False,
                      log: Callable[[str], None] = print) -> int:  # fmt: skip
    """Train ``cfg.train.method`` as the configuration says; resume from the output folder's checkpoint (one
    made with other settings is refused, or replaced with ``restart``). ``config.yaml`` is written once the
    run is accepted. Under ``torchrun`` every process runs this; rank 0 alone writes and prints."""
    info, bench, backbone = _prepare(cfg)
    train, out = cfg.train, Path(cfg.output)
    if dry_run:
        model = to_multidomain(backbone, bench.num_classes, domain_names=bench.names).eval()
        log(f"dry run: {type(backbone).__name__} with {model.num_switches} switches per domain, {train.method} "
            f"at β = {train.beta}, {len(bench)} domains on {info.device}")  # fmt: skip
        for d, dom in enumerate(bench.targets):
            x, _ = next(iter(dom.loader("train", min(train.batch_size, 4), drop_last=False)))
            log(f"{dom.name}: batch {tuple(x.shape)} → logits {tuple(model(x, d).shape)}")
        return 0
    if restart and info.is_main and out.is_dir():
        for old in [*out.glob("checkpoint*.pt"), *out.glob("model*.pt"), *out.glob("history*.json"), out / "config.yaml"]:
            old.unlink(missing_ok=True)
    barrier()  # (under torchrun: the other ranks look at the folder only once rank 0 has cleared it)
    _check_folder(out, bench, backbone, train, dataclasses.asdict(cfg.model))
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    trained = train_method(train.method, backbone, bench, train, device=info.device, checkpoint_dir=out,
                           checkpoint_name="checkpoint", progress=info.is_main,
                           model_settings=dataclasses.asdict(cfg.model))  # fmt: skip
    if not info.is_main:
        return 0
    names = [f"model-{d.name}.pt" for d in bench.targets] if len(trained.models) > 1 else ["model.pt"]
    for model, name, history in zip(trained.models, names, trained.histories):
        save_model(model.cpu(), out / name)
        (out / name.replace("model", "history").replace(".pt", ".json")).write_text(json.dumps(history.state_dict()))
    if info.world_size > 1:
        (out / "distributed.json").write_text(json.dumps(
            {"world_size": info.world_size, "max_divergence_between_ranks": trained.divergence}, indent=2) + "\n")
    log(f"trained {train.method} on {bench.names} in {trained.seconds:.0f} s"
        f"{f' on {info.world_size} processes' if info.world_size > 1 else ''}; wrote {', '.join(names)} to {out}")
    if get_method(train.method).switches:
        usage = trained.models[0].channel_usage()
        log("θ̄ per domain: " + ", ".join(f"{n} {v:.3f}" for n, v in usage.theta_bar.items())
            + f" (β = {train.beta}); channels used by some domain: {usage.union:.3f}")  # fmt: skip
    return 0


def evaluate_from_config(cfg: RunConfig, model_path: str | Path, log: Callable[[str], None] = print) -> int:
    """Accuracy per domain (the papers' crops), relative MACs and Params of a saved model on the
    configuration's benchmark."""
    info, bench, backbone = _prepare(cfg)
    if not info.is_main:
        return 0
    model = load_model(model_path, map_location=info.device).eval()
    if not isinstance(model, MultiDomainNet):
        raise TypeError(f"{model_path} holds a {type(model).__name__}, not a multi-domain model: evaluate a model.pt "
                        "written by `mdlprune train` or a pruned one written by `mdlprune prune`")  # fmt: skip
    if list(model.domain_names) != bench.names:
        raise ValueError(f"the model's domains {list(model.domain_names)} are not the benchmark's {bench.names}")
    if model.heads.num_classes != bench.num_classes:
        raise ValueError(f"the model's heads have {model.heads.num_classes} classes, the benchmark's domains "
                         f"{bench.num_classes}: this model was trained on other data")  # fmt: skip
    size = (3, bench.image_size, bench.image_size)
    base_macs = count_macs(backbone, size)
    table = Table(["domain", "accuracy (%)", "crops", "relative MACs"], digits=3, title=f"{model_path} ({bench.names})")
    for d, dom in enumerate(bench.targets):
        loader, n = _test_loader(dom, "test", "protocol", info.device)
        acc = accuracy(model, loader, d, crops=n, crop_size=bench.image_size)
        table.add(dom.name, round(acc, 2), n, count_macs(model, size, d) / base_macs)
    log(str(table))
    log(f"\nrelative Params: {param_bits(model) / param_bits(backbone):.3f} (parameter memory vs the single-domain backbone)")
    return 0
