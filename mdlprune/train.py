"""Simultaneous multi-domain training with the budget and sharing losses (ICIAP'23 §3-4, METHOD §4-5).

One step on a batch of domain d minimises

    L_total = CE_d + L_B(θ̄_d, β) + L_PS(θ_1, …, θ_N, β)                               (eqs. 4-5)

with Adam on the switches and SGD (momentum 0.9) on the per-domain BatchNorms and heads; the backbone is
frozen. After the step, the multipliers ascend: λ_d ← max(0, λ_d + η_λ (θ̄_d − β)) (and λ_PS too when it is
learnable). The domains take turns in rounds: by default one epoch of each domain per round, in an order
shuffled every round (the paper's choice); ``schedule="alternate"`` interleaves one batch per domain, and
``"mixed"`` puts a batch of every domain in each step.

The same loop trains the baselines: ``method="ba2"`` (no sharing loss), ``"feature"`` (heads only, the
backbone and its BatchNorms frozen) and ``"finetune"`` (everything but the switches, one model per domain:
see :func:`mdlprune.experiment.train_method`).

Checkpoints are written atomically at the end of every domain's epoch and hold everything needed to
continue exactly where training stopped: model, optimizers, schedulers, multipliers, every random
generator, the position in the round and the history.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .domain import DomainBatchNorm2d
from .history import History
from .losses import BudgetLoss, check_beta, intersection, make_sharing_loss, union
from .metrics import switch_costs
from .distributed import barrier, is_distributed, max_divergence
from .multidomain import MultiDomainNet
from .optim import LazyAdam
from .serialization import CheckpointError, atomic_save, load_checkpoint

__all__ = ["TrainConfig", "Trainer", "recalibrate_batchnorm", "METHODS", "SCHEDULES"]

METHODS = ("ours", "ba2", "feature", "finetune")
SCHEDULES = ("round_robin", "alternate", "mixed")
CHECKPOINT_FORMAT = "mdlprune-train-1"


@dataclass
class TrainConfig:
    """Training hyper-parameters; the defaults are the paper's for the Visual Decathlon (METHOD §5).

    ``epochs`` counts epochs *per domain* (rounds); learning rates are divided by ``1 / lr_gamma`` at
    each of ``lr_milestones`` (in rounds).

    Two choices of ours, where the papers are silent (docs/METHOD_NOTES.md §7): the switches follow
    ``switch_optimizer="lazy_adam"`` (:class:`mdlprune.optim.LazyAdam`: a domain's switches move only when
    they get a gradient; ``"adam"`` is plain Adam), and after training every domain's BatchNorm statistics are
    recomputed with its final switches over ``bn_recalibration`` batches (0 turns it off).
    """

    method: str = "ours"
    beta: float = 0.5
    epochs: int = 60
    batch_size: int = 32
    lr_heads: float = 1e-3
    lr_switches: float = 1e-4
    lr_milestones: tuple[int, ...] = (45,)
    lr_gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_lambda: float = 1.0
    sharing: str = "intersection"
    lambda_ps: float = 1.0
    learnable_lambda_ps: bool = False
    lr_lambda_ps: float = 0.05
    cost_weighted: str | None = None
    schedule: str = "round_robin"
    switch_optimizer: str = "lazy_adam"
    bn_recalibration: int = 20
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> "TrainConfig":
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}: choose one of {list(METHODS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}: choose one of {list(SCHEDULES)}")
        self.beta = check_beta(self.beta)
        for name in ("epochs", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        for name in ("lr_heads", "lr_switches", "lr_lambda", "lambda_ps", "lr_lambda_ps", "weight_decay"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a non-negative number, got {v!r}")
        if self.switch_optimizer not in ("lazy_adam", "adam"):
            raise ValueError(f"switch_optimizer must be 'lazy_adam' or 'adam', got {self.switch_optimizer!r}")
        if not isinstance(self.bn_recalibration, int) or self.bn_recalibration < 0:
            raise ValueError(f"bn_recalibration must be a number of batches >= 0, got {self.bn_recalibration!r}")
        if self.cost_weighted not in (None, "params", "macs"):
            raise ValueError(f"cost_weighted must be None, 'params' or 'macs', got {self.cost_weighted!r}")
        self.lr_milestones = tuple(int(m) for m in self.lr_milestones)
        make_sharing_loss(self.sharing)  # raises on an unknown name
        return self

    #: the settings only the switch methods (BA², Ours) read, and those only Ours reads
    SWITCH_SETTINGS = ("beta", "lr_switches", "lr_lambda", "cost_weighted", "switch_optimizer")
    SHARING_SETTINGS = ("sharing", "lambda_ps", "learnable_lambda_ps", "lr_lambda_ps")

    def settings_that_matter(self) -> dict[str, Any]:
        """The settings this method's training depends on (``epochs`` and ``extra`` aside): a checkpoint
        resumes under any configuration that agrees on these, e.g. a Finetune run whatever ``beta`` says."""
        ignored = {"epochs", "extra"}
        if self.method in ("feature", "finetune"):
            ignored.update(self.SWITCH_SETTINGS)
        if self.method != "ours":
            ignored.update(self.SHARING_SETTINGS)
        return {k: v for k, v in self.to_dict().items() if k not in ignored}

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lr_milestones"] = list(self.lr_milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training options {unknown}; valid ones are {sorted(names)}")
        return cls(**{k: tuple(v) if k == "lr_milestones" else v for k, v in d.items()}).validate()


class Trainer:
    """Trains a :class:`MultiDomainNet` on one loader per domain (see the module docstring).

    Args:
        model: the multi-domain model (its ``domain_names`` name the loaders' domains, in order).
        loaders: one training loader per domain. :class:`mdlprune.data.TensorLoader` (or anything with
            ``__len__``, ``iterate(start, resume)``, ``state_dict`` and ``load_state_dict``).
        config: a :class:`TrainConfig`.
        sharing_loss: a callable ``(masks, beta) -> scalar`` replacing ``config.sharing`` (``method="ours"``).
        checkpoint: file to write checkpoints to (and to resume from with ``fit(resume=True)``).
        input_size: ``(C, H, W)``, needed only for MAC-weighted budgets.
        progress: show a ``tqdm.auto`` progress bar.
        log_every: convert the logged values to Python floats every this many steps (one device sync).

    Under ``torchrun`` (a process group of several ranks is initialised), the trainer wraps the model in
    ``DistributedDataParallel``; the loaders must shard each global batch (``rank``, ``world_size``), and the
    model's BatchNorms should be :class:`mdlprune.distributed.SyncBatchNorm2d` (see
    :func:`mdlprune.experiment.train_method`, which arranges both).
    """

    def __init__(
        self,
        model: MultiDomainNet,
        loaders: Sequence,
        config: TrainConfig,
        *,
        sharing_loss: Callable | None = None,
        checkpoint: str | os.PathLike | None = None,
        input_size: Sequence[int] | None = None,
        progress: bool = True,
        log_every: int = 10,
    ):
        self.config = config.validate()
        if not isinstance(model, MultiDomainNet):
            raise TypeError(f"Trainer trains a MultiDomainNet, got {type(model).__name__}")
        if len(loaders) != model.num_domains:
            raise ValueError(
                f"{len(loaders)} training loaders for a model with {model.num_domains} domains "
                f"({list(model.domain_names)}): give one loader per domain, in the model's order"
            )
        if any(len(loader) == 0 for loader in loaders):
            empty = [model.domain_names[d] for d, loader in enumerate(loaders) if len(loader) == 0]
            raise ValueError(f"the training loaders of {empty} are empty")
        self.model = model
        self.loaders = list(loaders)
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.progress, self.log_every = progress, max(1, int(log_every))
        self.rank = torch.distributed.get_rank() if is_distributed() else 0
        self.world_size = torch.distributed.get_world_size() if is_distributed() else 1
        self.device = next(model.parameters()).device
        c = self.config
        self._setup_parameters()
        self.forward_model: nn.Module = model
        if self.world_size > 1:
            self.forward_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,  # the other domains' heads and BatchNorms sit out every step
            )  # fmt: skip
        self.divergence: float | None = None

        self.budget = None
        if c.method in ("ours", "ba2"):
            weights = None
            if c.cost_weighted:
                weights = switch_costs(model, c.cost_weighted, input_size).to(self.device)
            self.budget = BudgetLoss(model.num_domains, c.beta, c.lr_lambda, weights).to(self.device)
        self.sharing = None
        if c.method == "ours":
            self.sharing = sharing_loss or make_sharing_loss(c.sharing, c.lambda_ps, c.learnable_lambda_ps, c.lr_lambda_ps)
            if isinstance(self.sharing, nn.Module):
                self.sharing.to(self.device)

        self.round_rng = torch.Generator().manual_seed(c.seed)
        self._round_start = self.round_rng.get_state()
        self.round = self.step_in_round = self.global_step = 0
        self.calibrated = False
        self.history = History(model.domain_names)
        self._pending: list[tuple[dict, torch.Tensor]] = []

    # -- set-up ------------------------------------------------------------------------------------------
    def _setup_parameters(self) -> None:
        c, m = self.config, self.model
        for p in m.parameters():
            p.requires_grad_(False)
        heads = list(m.heads.parameters())
        if c.method == "feature":
            sgd = heads
        elif c.method == "finetune":  # everything but the switches
            sgd = [p for n, p in m.named_parameters() if not n.endswith(".switches")]
        else:
            sgd = m.domain_parameters()
        for p in sgd:
            p.requires_grad_(True)
        self.opt_switches = None
        if c.method in ("ours", "ba2"):
            switches = m.switch_parameters()
            for p in switches:
                p.requires_grad_(True)
            optimizer = LazyAdam if c.switch_optimizer == "lazy_adam" else torch.optim.Adam
            self.opt_switches = optimizer(switches, lr=c.lr_switches)
        self.opt_sgd = torch.optim.SGD(sgd, lr=c.lr_heads, momentum=c.momentum, weight_decay=c.weight_decay)
        self.schedulers = [
            torch.optim.lr_scheduler.MultiStepLR(opt, list(c.lr_milestones), c.lr_gamma)
            for opt in (self.opt_switches, self.opt_sgd)
            if opt is not None
        ]

    def _train_mode(self) -> None:
        self.model.train()
        if self.config.method == "feature":  # the backbone's BatchNorms stay the source's
            for mod in self.model.modules():
                if isinstance(mod, (DomainBatchNorm2d, nn.BatchNorm2d)):
                    mod.eval()

    # -- the schedule ------------------------------------------------------------------------------------
    def round_plan(self, order: Sequence[int]) -> list[tuple[int, ...]]:
        """The steps of a round: each step lists the domains whose next batch it trains on."""
        lengths = [len(loader) for loader in self.loaders]
        s = self.config.schedule
        if s == "round_robin":
            return [(d,) for d in order for _ in range(lengths[d])]
        if s == "alternate":
            left, plan = list(lengths), []
            while any(left):
                for d in order:
                    if left[d]:
                        plan.append((d,))
                        left[d] -= 1
            return plan
        return [tuple(d for d in order if k < lengths[d]) for k in range(max(lengths))]

    def total_steps(self) -> int:
        return self.config.epochs * len(self.round_plan(range(len(self.loaders))))

    # -- one step ----------------------------------------------------------------------------------------
    def _masks(self) -> torch.Tensor | None:
        return self.model.binary_masks() if self.budget is not None else None

    def train_step(self, batches: list[tuple[int, torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
        """One optimisation step on ``[(domain, images, labels), ...]``; returns what it logs."""
        c = self.config
        self._train_mode()
        masks = self._masks()
        loss = torch.zeros((), device=self.device)
        ce_log, lb_total = {}, torch.zeros((), device=self.device)
        for d, x, y in batches:
            ce = F.cross_entropy(self.forward_model(x, d), y)
            loss = loss + ce
            ce_log[d] = ce.detach()
            if self.budget is not None:
                lb = self.budget(masks, d)
                lb_total = lb_total + lb.detach()
                loss = loss + lb
        lps = torch.zeros((), device=self.device)
        if self.sharing is not None:
            lps = self.sharing(masks, c.beta)
            loss = loss + lps
        self.opt_sgd.zero_grad(set_to_none=True)
        if self.opt_switches is not None:
            self.opt_switches.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_sgd.step()
        if self.opt_switches is not None:
            self.opt_switches.step()

        record: dict[str, Any] = {"step": self.global_step, "round": self.round}
        values = {f"ce_{d}": v for d, v in ce_log.items()}
        values["L_B"], values["L_PS"] = lb_total, lps.detach()
        if self.budget is not None:
            with torch.no_grad():
                after = self._masks()
                for d, _, _ in batches:
                    self.budget.dual_step(after, d)
                if hasattr(self.sharing, "dual_step"):
                    self.sharing.dual_step(after, c.beta)
                for d, tb in enumerate(self.budget.theta_bar(after)):
                    values[f"theta_{d}"] = tb
                for d, lam in enumerate(self.budget.lam):
                    values[f"lambda_{d}"] = lam
                values["intersection"] = intersection(after)
                values["union"] = union(after)
                if isinstance(getattr(self.sharing, "lam", None), torch.Tensor):
                    values["lambda_ps"] = self.sharing.lam
            record["num_switches"] = after.shape[1]
        record["domain"] = batches[0][0] if len(batches) == 1 else None
        record["lr_heads"] = self.opt_sgd.param_groups[0]["lr"]
        keys = list(values)
        self._pending.append(({**record, "_keys": keys}, torch.stack([v.float().reshape(()) for v in values.values()])))
        return record

    def _flush(self) -> None:
        """Turn the pending per-step tensors into floats with one transfer, and log them."""
        if not self._pending:
            return
        stacked = torch.stack([t for _, t in self._pending])
        if self.world_size > 1:  # losses differ between ranks' shards: log their mean
            torch.distributed.all_reduce(stacked)
            stacked /= self.world_size
        numbers = stacked.cpu().tolist()
        for (record, _), row in zip(self._pending, numbers):
            keys = record.pop("_keys")
            entry = dict(record)
            for k, v in zip(keys, row):
                if k.startswith("ce_"):
                    entry["ce"] = v if record["domain"] is not None else entry.get("ce", 0.0) + v
                    entry[k] = v
                else:
                    entry[k] = v
            self.history.log(**entry)
        self._pending.clear()

    # -- the loop ----------------------------------------------------------------------------------------
    def fit(self, resume: bool = False, callback: Callable[["Trainer"], None] | None = None) -> History:
        """Train for ``config.epochs`` rounds. With ``resume=True`` and an existing checkpoint, continue
        exactly where it stopped. ``callback(trainer)`` runs after every step (e.g. to stop early)."""
        if resume and self.checkpoint is not None and self.checkpoint.is_file():
            self.load_state_dict(load_checkpoint(self.checkpoint, map_location=self.device))
        if self.round < self.config.epochs:
            self.calibrated = False  # (more rounds than the checkpoint's run: calibrate again at the end)
        bar = None
        if self.progress and self.rank == 0:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps(), initial=self.global_step, desc=self.config.method, leave=False)
        try:
            while self.round < self.config.epochs:
                if self.step_in_round == 0:
                    self._round_start = self.round_rng.get_state()
                else:
                    self.round_rng.set_state(self._round_start)
                order = torch.randperm(len(self.loaders), generator=self.round_rng).tolist()
                plan = self.round_plan(order)
                epoch_ends = {max(k for k, s in enumerate(plan) if d in s) for d in range(len(self.loaders))}
                done = [sum(d in s for s in plan[: self.step_in_round]) for d in range(len(self.loaders))]
                iters = {
                    d: self.loaders[d].iterate(start=done[d], resume=done[d] > 0)
                    for d in range(len(self.loaders))
                    if done[d] < len(self.loaders[d])
                }
                for k in range(self.step_in_round, len(plan)):
                    batches = []
                    for d in plan[k]:
                        x, y = next(iters[d])
                        batches.append((d, x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)))
                    self.train_step(batches)
                    self.global_step += 1
                    self.step_in_round = k + 1
                    if self.global_step % self.log_every == 0:
                        self._flush()
                        if bar is not None:
                            bar.set_postfix(self._postfix(), refresh=False)
                    if bar is not None:
                        bar.update(1)
                    if k in epoch_ends and k + 1 < len(plan):  # a domain finished its epoch
                        self.save()
                    if callback is not None:
                        callback(self)
                for sched in self.schedulers:
                    sched.step()
                self.round += 1
                self.step_in_round = 0
                self.save()
            if self.budget is not None and self.config.bn_recalibration and not self.calibrated:
                recalibrate_batchnorm(self.model, self.loaders, self.config.bn_recalibration)
                self.calibrated = True
                self.save()
            if self.world_size > 1:  # the ranks must agree: same switches, same multipliers
                tensors = [p.detach() for p in self.model.switch_parameters()]
                tensors += [self.budget.lam] if self.budget is not None else []
                self.divergence = max_divergence(tensors)
        finally:
            self._flush()
            if bar is not None:
                bar.close()
        return self.history

    def _postfix(self) -> dict[str, str]:
        out = {"round": f"{self.round + 1}/{self.config.epochs}"}
        ce = self.history.last("ce")
        if ce is not None:
            out["CE"] = f"{ce:.3f}"
        if self.budget is not None:
            thetas = [self.history.last(f"theta_{d}", 1.0) for d in range(self.model.num_domains)]
            out["θ̄max"] = f"{max(thetas):.3f}"
        return out

    # -- checkpoints -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        self._flush()
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "domain_names": list(self.model.domain_names),
            "model": self.model.state_dict(),
            "opt_sgd": self.opt_sgd.state_dict(),
            "opt_switches": None if self.opt_switches is None else self.opt_switches.state_dict(),
            "schedulers": [s.state_dict() for s in self.schedulers],
            "budget": None if self.budget is None else self.budget.state_dict(),
            "sharing": self.sharing.state_dict() if isinstance(self.sharing, nn.Module) else None,
            "loaders": [loader.state_dict() for loader in self.loaders],
            "round_start": self._round_start,
            "round_rng": self.round_rng.get_state(),
            "round": self.round,
            "step_in_round": self.step_in_round,
            "global_step": self.global_step,
            "calibrated": self.calibrated,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "history": self.history.state_dict(),
        }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"not a training checkpoint of this version (format {state.get('format')!r})")
        if list(state["domain_names"]) != list(self.model.domain_names):
            raise CheckpointError(
                f"the checkpoint trains domains {state['domain_names']}, this trainer {list(self.model.domain_names)}"
            )
        saved = state["config"]
        now = self.config.settings_that_matter()
        changed = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v}
        if changed:
            raise CheckpointError(
                f"the checkpoint was trained with other settings {changed} (saved, now): resume with the same "
                "configuration, or start a new run in another checkpoint file"
            )
        self.model.load_state_dict(state["model"])
        self.opt_sgd.load_state_dict(state["opt_sgd"])
        if self.opt_switches is not None:
            self.opt_switches.load_state_dict(state["opt_switches"])
        for s, sd in zip(self.schedulers, state["schedulers"]):
            s.load_state_dict(sd)
        if self.budget is not None:
            self.budget.load_state_dict(state["budget"])
        if isinstance(self.sharing, nn.Module) and state["sharing"] is not None:
            self.sharing.load_state_dict(state["sharing"])
        for loader, sd in zip(self.loaders, state["loaders"]):
            loader.load_state_dict(sd)
        self._round_start = state["round_start"]
        self.round_rng.set_state(state["round_rng"])
        self.round, self.step_in_round, self.global_step = state["round"], state["step_in_round"], state["global_step"]
        self.calibrated = state["calibrated"]
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.history = History.from_state_dict(state["history"])

    def save(self) -> None:
        """Write the checkpoint (atomically; only rank 0 writes, the others wait for it)."""
        state = self.state_dict()  # (flushes the logs: a collective operation under torchrun)
        if self.checkpoint is not None and self.rank == 0:
            atomic_save(state, self.checkpoint)
        barrier()


@torch.no_grad()
def recalibrate_batchnorm(model: MultiDomainNet, loaders: Sequence, batches: int = 20) -> None:
    """Recompute every domain's BatchNorm running statistics with its current switches.

    During simultaneous training a domain's switches keep changing after its last batches (the sharing loss
    moves them while other domains train), so the running statistics its BatchNorms collected no longer match
    the masks the model is evaluated with. This runs ``batches`` training batches of each domain through the
    model, averaging the statistics of each batch equally (``momentum=None``); nothing else changes.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, DomainBatchNorm2d)]
    for d, loader in enumerate(loaders):
        bns = [m.bns[d] for m in norms]
        momenta = [bn.momentum for bn in bns]
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
            bn.train()
        saved = loader.state_dict()  # leave the training randomness untouched
        for k, (x, _) in enumerate(loader.iterate()):
            if k == batches:
                break
            model(x.to(device), d)
        loader.load_state_dict(saved)
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
            bn.eval()
    model.train(was_training)
