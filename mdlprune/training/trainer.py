"""Simultaneous multi-domain training with the budget and sharing losses (METHOD §5).

One step on a batch of domain d minimises

    L = CE_d + L_B(θ̄_d, β) + L_PS(θ_1, …, θ_N, β)                                       (eqs. 4-5)

with Adam on the switches and SGD (momentum 0.9) on the per-domain BatchNorms and heads; the backbone is
frozen. After the step, the multipliers ascend: λ_d ← max(0, λ_d + η_λ (θ̄_d − β)) (and λ_PS too when it is
learnable). The domains take turns in rounds (:mod:`mdlprune.training.schedule`).

The same loop trains the baselines; what each method trains is a row of :data:`~mdlprune.training.methods.METHODS`.

Checkpoints are written atomically at the end of every domain's epoch and hold everything needed to
continue exactly where training stopped: model, optimizers, schedulers, multipliers, every random
generator, the position in the round and the history.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..method.domain import DomainBatchNorm2d
from ..method.losses import BudgetLoss, intersection, make_sharing_loss, union
from ..method.macs import switch_costs
from ..method.multidomain import MultiDomainNet
from .checkpoint import RESTART, CheckpointError, atomic_save, callable_identity, check_identity, check_rounds, load_checkpoint
from .config import TrainConfig
from .distributed import barrier, is_distributed, max_divergence
from .history import History, NonFiniteError, StepLog
from .methods import get_method
from .optim import LazyAdam
from .recalibrate import recalibrate_batchnorm
from .schedule import round_plan

__all__ = ["Trainer", "NonFiniteError"]

CHECKPOINT_FORMAT = "mdlprune-train-3"


class Trainer:
    """Trains a :class:`MultiDomainNet` on one loader per domain (see the module docstring).

    Args:
        model: the multi-domain model (its ``domain_names`` name the loaders' domains, in order).
        loaders: one training loader per domain: anything with ``__len__``, ``iterate(start, resume)``,
            ``state_dict`` and ``load_state_dict`` (:class:`mdlprune.data.EpochLoader`).
        config: a :class:`~mdlprune.training.config.TrainConfig`.
        sharing_loss: a callable ``(masks, beta) -> scalar`` replacing ``config.sharing`` (methods with sharing).
        checkpoint: file to write checkpoints to (and to resume from with ``fit(resume=True)``).
        identity: the run's other settings that change its result (``{"data": {...}, "model": {...}}``, see
            :func:`~mdlprune.experiments.runs.run_identity`); stored in checkpoints with the training
            settings, and a checkpoint made with different ones is refused.
        input_size: ``(C, H, W)``, needed only for MAC-weighted budgets.
        progress: show a ``tqdm.auto`` progress bar, labelled ``label`` (default: the method's name).
        log_every: convert the logged values to Python floats every this many steps (one device sync).

    Under ``torchrun`` (a process group of several ranks is initialised), the trainer wraps the model in
    ``DistributedDataParallel``; the loaders must shard each global batch (``rank``, ``world_size``), and the
    model's BatchNorms should be :class:`mdlprune.training.distributed.SyncBatchNorm2d` (see
    :func:`mdlprune.experiments.runs.train_method`, which arranges both).
    """

    def __init__(
        self,
        model: MultiDomainNet,
        loaders: Sequence,
        config: TrainConfig,
        *,
        sharing_loss: Callable | None = None,
        checkpoint: str | os.PathLike | None = None,
        identity: dict | None = None,
        input_size: Sequence[int] | None = None,
        progress: bool = True,
        label: str | None = None,
        log_every: int = 10,
    ):
        if not isinstance(model, MultiDomainNet):
            raise TypeError(f"Trainer trains a MultiDomainNet, got {type(model).__name__}")
        if len(loaders) != model.num_domains:
            raise ValueError(
                f"{len(loaders)} training loaders for a model with {model.num_domains} domains "
                f"({list(model.domain_names)}): give one loader per domain, in the model's order"
            )
        if any(len(loader) == 0 for loader in loaders):
            empty = [model.domain_names[d] for d, loader in enumerate(loaders) if len(loader) == 0]
            raise ValueError(f"the training loaders of {empty} yield no batch: their training split is empty, or "
                             "smaller than one batch (batches are full-sized; train.batch_size is "
                             f"{config.batch_size}): lower train.batch_size or give the domain more images")  # fmt: skip
        self.config, self.method = config, get_method(config.method)
        self.model, self.loaders = model, list(loaders)
        self.checkpoint = Path(checkpoint) if checkpoint else None
        train = config.settings_that_matter()
        if sharing_loss is not None and "sharing" in train:  # a loss of the user's: its name and code identify it
            train["sharing"] = callable_identity(sharing_loss)
        self.identity = {**(identity or {}), "train": train, "format": CHECKPOINT_FORMAT}
        self.progress, self.log_every = progress, max(1, int(log_every))
        self.label = label or config.method
        self.rank = torch.distributed.get_rank() if is_distributed() else 0
        self.world_size = torch.distributed.get_world_size() if is_distributed() else 1
        self.device = next(model.parameters()).device
        self._setup_parameters()
        self.forward_model: nn.Module = model
        if self.world_size > 1:
            self.forward_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,  # the other domains' heads and BatchNorms sit out every step
            )  # fmt: skip
        self.divergence: float | None = None

        c = self.config
        self.budget = self.sharing = None
        if self.method.switches:
            kinds = c.cost_weighted if isinstance(c.cost_weighted, tuple) else [c.cost_weighted] * bool(c.cost_weighted)
            w = [switch_costs(model, kind, input_size).to(self.device) for kind in kinds]
            weights = None if not w else w[0] if len(w) == 1 else torch.stack(w)  # (K, M): one budget per cost, at β
            self.budget = BudgetLoss(model.num_domains, c.beta, c.lr_lambda, weights).to(self.device)
        if self.method.sharing:
            self.sharing = sharing_loss or make_sharing_loss(c.sharing, c.lambda_ps, c.learnable_lambda_ps, c.lr_lambda_ps)
            if isinstance(self.sharing, nn.Module):
                self.sharing.to(self.device)

        self.round_rng = torch.Generator().manual_seed(c.seed)
        self._round_start = self.round_rng.get_state()
        self.round = self.step_in_round = self.global_step = 0
        self.seconds_before = 0.0  # training time of the checkpoint this run resumed from
        self._fit_start: float | None = None
        self.steps_run = 0  # steps trained by this process (0: the run was loaded finished)
        self.calibrated = False
        self.history = History(model.domain_names, budget_cost=c.cost_weighted if self.method.switches else None)
        self.log = StepLog(self.history, self.world_size)

    # -- set-up ------------------------------------------------------------------------------------------
    def _setup_parameters(self) -> None:
        c, m = self.config, self.model
        for p in m.parameters():
            p.requires_grad_(False)
        sgd = {
            "heads": lambda: list(m.heads.parameters()),
            "domain": m.domain_parameters,
            "all": lambda: [p for n, p in m.named_parameters() if not n.endswith(".switches")],
        }[self.method.trains]()
        for p in sgd:
            p.requires_grad_(True)
        self.opt_switches = None
        if self.method.switches:
            switches = m.switch_parameters()
            for p in switches:
                p.requires_grad_(True)
            optimizer = LazyAdam if c.switch_optimizer == "lazy_adam" else torch.optim.Adam
            self.opt_switches = optimizer(switches, lr=c.lr_switches)
        self.opt_sgd = torch.optim.SGD(sgd, lr=c.lr_domain, momentum=c.momentum, weight_decay=c.weight_decay)
        self.optimizers = [opt for opt in (self.opt_sgd, self.opt_switches) if opt is not None]
        self.schedulers = [torch.optim.lr_scheduler.MultiStepLR(opt, list(c.lr_milestones), c.lr_gamma)
                           for opt in (self.opt_switches, self.opt_sgd) if opt is not None]  # fmt: skip

    def _train_mode(self) -> None:
        self.model.train()
        per_domain = {id(bn) for m in self.model.modules() if isinstance(m, DomainBatchNorm2d) for bn in m.bns}
        for mod in self.model.modules():
            if not isinstance(mod, nn.modules.batchnorm._BatchNorm):
                continue
            # Feature keeps the source's statistics; shared (excluded) BatchNorms keep theirs unless all trains
            if self.method.frozen_batchnorm or (id(mod) not in per_domain and self.method.trains != "all"):
                mod.eval()

    def round_plan(self, order: Sequence[int]) -> list[tuple[int, ...]]:
        """The steps of a round: each step lists the domains whose next batch it trains on."""
        return round_plan(self.config.schedule, [len(loader) for loader in self.loaders], order)

    def total_steps(self) -> int:
        return self.config.rounds * len(self.round_plan(range(len(self.loaders))))

    # -- one step ----------------------------------------------------------------------------------------
    def train_step(self, batches: list[tuple[int, torch.Tensor, torch.Tensor]]) -> None:
        """One optimisation step on ``[(domain, images, labels), ...]``: descend on
        Σ_d (CE_d + L_B(d)) + L_PS (eqs. 4-5), then ascend on the multipliers."""
        self._train_mode()
        masks = self.model.binary_masks() if self.budget is not None else None
        loss, ce, lb = 0.0, {}, {}
        for d, x, y in batches:
            ce[d] = F.cross_entropy(self.forward_model(x, d), y)
            loss = loss + ce[d]
            if self.budget is not None:
                lb[d] = self.budget(masks, d)  # L_B(d) = max(0, λ_d (θ̄_d − β))
                loss = loss + lb[d]
        lps = None
        if self.sharing is not None:
            lps = self.sharing(masks, self.config.beta)  # e.g. max(0, λ_PS (1 − I / (M β)))
            loss = loss + lps
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in self.optimizers:
            opt.step()
        after = self._dual_steps([d for d, _, _ in batches])
        self._log_step(batches, ce, lb, lps, after)

    @torch.no_grad()
    def _dual_steps(self, domains: list[int]) -> torch.Tensor | None:
        """λ_d ← max(0, λ_d + η_λ (θ̄_d − β)) for the step's domains (and λ_PS, if learnable), on the switches
        after the step; returns those switches."""
        if self.budget is None:
            return None
        after = self.model.binary_masks()
        for d in domains:
            self.budget.dual_step(after, d)
        if hasattr(self.sharing, "dual_step"):
            self.sharing.dual_step(after, self.config.beta)
        return after

    def _log_step(self, batches, ce: dict, lb: dict, lps, after) -> None:
        zero = torch.zeros((), device=self.device)
        values = {f"ce_{d}": v.detach() for d, v in ce.items()}
        values["L_B"] = sum((v.detach() for v in lb.values()), zero)
        values["L_PS"] = zero if lps is None else lps.detach()
        record: dict[str, Any] = {"step": self.global_step, "round": self.round}
        if after is not None:
            thetas, lams = self.budget.theta_bar(after), self.budget.lam
            if thetas.dim() == 2:  # several costs: θ̄_d is the binding one (the largest), λ_d the total push
                for k, kind in enumerate(self.config.cost_weighted):
                    for d in range(len(lams)):
                        values[f"theta_{d}_{kind}"], values[f"lambda_{d}_{kind}"] = thetas[d, k], lams[d, k]
                thetas, lams = thetas.amax(dim=1), lams.sum(dim=1)
            for d, (tb, lam) in enumerate(zip(thetas, lams)):
                values[f"theta_{d}"], values[f"lambda_{d}"] = tb, lam
            values["intersection"], values["union"] = intersection(after), union(after)
            if isinstance(getattr(self.sharing, "lambda_ps", None), torch.Tensor):
                values["lambda_ps"] = self.sharing.lambda_ps
            record["num_switches"] = after.shape[1]
        record["domain"] = batches[0][0] if len(batches) == 1 else None
        record["lr_domain"] = self.opt_sgd.param_groups[0]["lr"]
        self.log.add(record, values)
    # -- the loop ----------------------------------------------------------------------------------------
    def fit(self, resume: bool = False, callback: Callable[["Trainer"], None] | None = None) -> History:
        """Train for ``config.rounds`` rounds. With ``resume=True`` and an existing checkpoint, continue
        exactly where it stopped. ``callback(trainer)`` runs after every step (e.g. to stop early)."""
        if resume and self.checkpoint is not None and self.checkpoint.is_file():
            self.load_state_dict(load_checkpoint(self.checkpoint, map_location=self.device))
        if self.round < self.config.rounds:
            self.calibrated = False  # (more rounds than the checkpoint's run: calibrate again at the end)
        self._fit_start = time.perf_counter()
        bar = None
        if self.progress and self.rank == 0 and self.round < self.config.rounds:  # (none for a finished run)
            bar = tqdm(total=self.total_steps(), initial=self.global_step, desc=self.label, leave=True)
        try:
            while self.round < self.config.rounds:
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
                    self.steps_run += 1
                    self.step_in_round = k + 1
                    if self.global_step % self.log_every == 0:
                        self.log.flush()
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
            self.log.flush()
            if bar is not None:
                bar.close()
            self.seconds_before, self._fit_start = self.train_seconds, None
        return self.history

    @property
    def train_seconds(self) -> float:
        """Wall time spent training this run, over every process that trained it (a checkpoint keeps it)."""
        running = time.perf_counter() - self._fit_start if self._fit_start is not None else 0.0
        return self.seconds_before + running

    def _postfix(self) -> dict[str, str]:
        out = {"round": f"{self.round + 1}/{self.config.rounds}"}
        ce = self.history.last("ce")
        if ce is not None:
            out["CE"] = f"{ce:.3f}"
        if self.budget is not None:
            thetas = [self.history.last(f"theta_{d}", 1.0) for d in range(self.model.num_domains)]
            out["θ̄max"] = f"{max(thetas):.3f}"
        return out

    # -- checkpoints -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        self.log.flush()
        state = {
            "format": CHECKPOINT_FORMAT,
            "identity": self.identity,
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
            "train_seconds": self.train_seconds,
            "calibrated": self.calibrated,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "history": self.history.state_dict(),
        }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"not a training checkpoint of this version (format {state.get('format')!r}, "
                                  f"this version writes {CHECKPOINT_FORMAT!r}): train afresh over it ({RESTART}), or "
                                  "write to another folder")  # fmt: skip
        if list(state["domain_names"]) != list(self.model.domain_names):
            raise CheckpointError(
                f"the checkpoint trains domains {state['domain_names']}, this trainer {list(self.model.domain_names)}"
            )
        check_identity(state.get("identity"), self.identity, self.checkpoint or "the checkpoint")
        check_rounds(state["round"], self.config.rounds, self.checkpoint or "the checkpoint")
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
        self.seconds_before = float(state.get("train_seconds", 0.0))
        self._fit_start = time.perf_counter() if self._fit_start is not None else None
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.history = History.from_state_dict(state["history"])
        self.log = StepLog(self.history, self.world_size)

    def save(self) -> None:
        """Write the checkpoint (atomically; only rank 0 writes, the others wait for it)."""
        state = self.state_dict()  # (flushes the logs: a collective operation under torchrun)
        bad = [n for n, p in self.model.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]
        if bad:
            raise NonFiniteError(f"training diverged before step {self.global_step}: {len(bad)} trained tensors hold "
                                 f"NaN or inf (e.g. {bad[0]}); lower the learning rates (train.lr_domain, "
                                 "train.lr_switches) or the dual step train.lr_lambda")  # fmt: skip
        if self.checkpoint is not None and self.rank == 0:
            atomic_save(state, self.checkpoint)
        barrier()


