"""The trainer: schedules, what each method trains, the budget, exact resume, bad configurations."""

import pytest
import torch
from helpers import TinyNet, perturb_batchnorms

from mdlprune import to_multidomain
from mdlprune.data.mini import TensorLoader
from mdlprune.method.macs import switch_costs
from mdlprune.training.checkpoint import CheckpointError, load_checkpoint
from mdlprune.training.config import load_config
from mdlprune.training import Trainer, TrainConfig


def loader(n, classes, seed, batch=8):
    g = torch.Generator().manual_seed(100 + seed)
    images = torch.randint(0, 256, (n, 3, 10, 10), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % classes
    # make the task learnable: brighten the red channel by the label
    images[:, 0] = (images[:, 0].float() * 0.3 + labels.view(-1, 1, 1) * (170 / classes)).to(torch.uint8)
    return TensorLoader(images, labels, batch, 8, [0.5] * 3, [0.25] * 3, shuffle=True, augment=True, flip=True, seed=seed)


def setup(method="ours", sizes=(24, 16), rounds=2, **kw):
    net = TinyNet()
    perturb_batchnorms(net)
    model = to_multidomain(net, [3, 4][: len(sizes)])
    loaders = [loader(n, c, i) for i, (n, c) in enumerate(zip(sizes, [3, 4]))]
    cfg = TrainConfig(method=method, rounds=rounds, beta=kw.pop("beta", 0.5), lr_domain=0.05, lr_switches=1e-2,
                      lr_milestones=(1,), **kw)  # fmt: skip
    return model, loaders, cfg


class FakeLoader:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


def test_round_plans():
    model, _, cfg = setup()
    t = Trainer(model, [FakeLoader(3), FakeLoader(2)], cfg, progress=False)
    assert t.round_plan([1, 0]) == [(1,), (1,), (0,), (0,), (0,)]
    t.config.schedule = "alternate"
    assert t.round_plan([1, 0]) == [(1,), (0,), (1,), (0,), (0,)]
    t.config.schedule = "mixed"
    assert t.round_plan([1, 0]) == [(1, 0), (1, 0), (0,)]
    assert t.total_steps() == 2 * 3


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed(before, model):
    after = model.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.mark.parametrize("method", ["ours", "ba2", "feature", "finetune"])
def test_each_method_trains_what_it_should(method):
    model, loaders, cfg = setup(method, rounds=1)
    before = snapshot(model)
    Trainer(model, loaders, cfg, progress=False).fit()
    moved = changed(before, model)
    switches = {k for k in moved if k.endswith("switches")}
    kernels = {k for k in moved if k.endswith("conv1.weight") or k.endswith("conv2.weight")}
    heads = {k for k in moved if ".fc.heads." in k}
    bn = {k for k in moved if ".bns." in k}
    assert heads, "every method trains the heads"
    if method in ("ours", "ba2"):
        assert switches and bn and not kernels
    elif method == "feature":
        assert not switches and not kernels and not bn  # BN stays the source's: parameters and statistics
    else:
        assert kernels and bn and not switches


def test_budget_is_met_and_logged():
    model, loaders, cfg = setup("ours", sizes=(48, 48), rounds=6, beta=0.4, lr_lambda=1.0)
    history = Trainer(model, loaders, cfg, progress=False, log_every=3).fit()
    masks = torch.cat(list(model.layer_masks().values()), dim=1).float()
    assert (masks.mean(1) <= 0.4 + 0.02).all()
    last = history.records[-1]
    for key in ("ce", "L_B", "L_PS", "lambda_0", "lambda_1", "theta_0", "theta_1", "intersection", "union"):
        assert key in last
    assert last["theta_0"] == pytest.approx(float(masks[0].mean()))
    steps, lambdas = history.series("lambda_0")
    assert max(lambdas) > 0 and steps == sorted(steps) and len(history) == 6 * (6 + 6)
    fig = history.plot("all", beta=0.4)
    assert [ax.get_xlabel() for ax in fig.axes] == ["training step"] * 4
    assert fig.axes[1].get_ylabel() == "θ̄_d (fraction of switches on)"


def test_a_budget_on_switches_and_macs_meets_both():
    """``cost_weighted: [switches, macs]``: two multipliers per domain, and both fractions end under β."""
    model, loaders, cfg = setup("ours", sizes=(48, 48), rounds=6, beta=0.4, lr_lambda=1.0,
                                cost_weighted=["switches", "macs"])  # fmt: skip
    assert cfg.cost_weighted == ("switches", "macs") and TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert load_config("mini", ["train.cost_weighted=[switches, macs]"]).train.cost_weighted == ("switches", "macs")
    trainer = Trainer(model, loaders, cfg, progress=False, log_every=3, input_size=(3, 8, 8))
    history = trainer.fit()
    assert trainer.budget.lam.shape == (2, 2)
    masks = model.binary_masks().detach()
    macs = switch_costs(model, "macs", (3, 8, 8))
    by_switches, by_macs = masks.mean(1), (masks * macs).sum(1) / macs.sum()
    assert (by_switches <= 0.4 + 0.02).all() and (by_macs <= 0.4 + 0.02).all()
    last = history.records[-1]
    assert last["theta_0_macs"] == pytest.approx(float(by_macs[0]))
    assert last["theta_0"] == pytest.approx(max(float(by_switches[0]), float(by_macs[0])))  # the binding one
    assert last["lambda_0"] == pytest.approx(last["lambda_0_switches"] + last["lambda_0_macs"])
    # the plot says what θ̄ counts, also for the history of a checkpoint
    restored = type(history).from_state_dict(history.state_dict())
    for h in (history, restored, restored.thinned(10)):
        assert h.plot("budget").axes[0].get_ylabel() == "θ̄_d (largest of its switches / macs fractions)"
    one = type(history)(["a"], [{"step": 1, "theta_0": 0.5, "lambda_0": 0.1}], budget_cost="macs")
    assert one.plot("budget").axes[0].get_ylabel() == "θ̄_d (macs-weighted fraction on)"


def test_ba2_has_no_sharing_loss_and_ours_has_it():
    model, loaders, cfg = setup("ba2", rounds=1)
    assert Trainer(model, loaders, cfg, progress=False).sharing is None
    model, loaders, cfg = setup("ours", rounds=1, sharing="union")
    assert type(Trainer(model, loaders, cfg, progress=False).sharing).__name__ == "UnionLoss"
    calls = []

    def mine(masks, beta):
        calls.append(masks.shape)
        return masks.sum() * 0

    model, loaders, cfg = setup("ours", rounds=1)
    Trainer(model, loaders, cfg, sharing_loss=mine, progress=False).fit()
    assert calls and calls[0] == (2, 7)


@pytest.mark.parametrize("schedule", ["round_robin", "alternate", "mixed"])
def test_resume_after_a_crash_mid_epoch_gives_the_same_weights(tmp_path, schedule):
    """Train 3 rounds uninterrupted; train again but crash in the middle of a domain's epoch, then resume
    from the last checkpoint with a fresh model and trainer: the final weights must be identical."""
    torch.manual_seed(1)
    model, loaders, cfg = setup("ours", rounds=3, schedule=schedule)
    Trainer(model, loaders, cfg, checkpoint=tmp_path / "a.pt", progress=False).fit()
    reference = snapshot(model)

    class Crash(Exception):
        pass

    total = Trainer(model, loaders, cfg).total_steps()
    crashed_at = []

    def crash(trainer):  # late in training, at a step the last checkpoint does not cover
        path = tmp_path / "b.pt"
        if trainer.global_step >= 2 * total // 3 and load_checkpoint(path)["global_step"] < trainer.global_step:
            crashed_at.append(trainer.global_step)
            raise Crash

    torch.manual_seed(1)
    model, loaders, cfg = setup("ours", rounds=3, schedule=schedule)
    with pytest.raises(Crash):
        Trainer(model, loaders, cfg, checkpoint=tmp_path / "b.pt", progress=False).fit(callback=crash)
    saved = load_checkpoint(tmp_path / "b.pt")
    assert 0 < saved["global_step"] < crashed_at[0] < total

    torch.manual_seed(123)  # everything fresh, even the initial weights: the checkpoint restores it all
    model, loaders, cfg = setup("ours", rounds=3, schedule=schedule)
    history = Trainer(model, loaders, cfg, checkpoint=tmp_path / "b.pt", progress=False).fit(resume=True)
    after = model.state_dict()
    assert all(torch.equal(reference[k], after[k]) for k in reference)
    assert [r["step"] for r in history.records] == list(range(Trainer(model, loaders, cfg).total_steps()))


def test_a_finished_run_is_loaded_not_retrained(tmp_path):
    model, loaders, cfg = setup("ba2", rounds=1)
    Trainer(model, loaders, cfg, checkpoint=tmp_path / "c.pt", progress=False).fit()
    reference = snapshot(model)
    model, loaders, cfg = setup("ba2", rounds=1)
    steps = []
    Trainer(model, loaders, cfg, checkpoint=tmp_path / "c.pt", progress=False).fit(resume=True, callback=lambda t: steps.append(1))
    assert not steps and not changed(reference, model)


def test_resume_refuses_other_settings(tmp_path):
    model, loaders, cfg = setup("ours", rounds=1)
    Trainer(model, loaders, cfg, checkpoint=tmp_path / "d.pt", progress=False).fit()
    model, loaders, cfg = setup("ours", rounds=1, beta=0.25)
    with pytest.raises(CheckpointError, match=r"other settings \(train.beta: 0.5 in the checkpoint, 0.25 now\)"):
        Trainer(model, loaders, cfg, checkpoint=tmp_path / "d.pt", progress=False).fit(resume=True)


def test_resume_ignores_settings_the_method_does_not_read(tmp_path):
    model, loaders, cfg = setup("finetune", rounds=1)
    Trainer(model, loaders, cfg, checkpoint=tmp_path / "e.pt", progress=False).fit()
    reference = snapshot(model)
    model, loaders, cfg = setup("finetune", rounds=1, beta=0.25, lr_lambda=0.5, sharing="union")
    steps = []
    Trainer(model, loaders, cfg, checkpoint=tmp_path / "e.pt", progress=False).fit(resume=True, callback=lambda t: steps.append(1))
    assert not steps and not changed(reference, model)


def test_bad_configurations():
    with pytest.raises(ValueError, match=r"beta must be in \(0, 1\]"):
        TrainConfig(beta=1.5)
    with pytest.raises(ValueError, match="unknown method 'prune'"):
        TrainConfig(method="prune")
    with pytest.raises(ValueError, match="unknown schedule"):
        TrainConfig(schedule="random")
    with pytest.raises(ValueError, match="rounds must be an int >= 1"):
        TrainConfig(rounds=0)
    with pytest.raises(ValueError, match="unknown sharing loss"):
        TrainConfig(sharing="overlap")
    with pytest.raises(ValueError, match=r"cost_weighted must be .* \[switches, macs\]"):
        TrainConfig(cost_weighted=["macs", "macs"])
    with pytest.raises(ValueError, match="cost_weighted must be"):
        TrainConfig(cost_weighted="flops")
    assert TrainConfig(cost_weighted=["switches"]).cost_weighted is None  # one form per setting
    assert TrainConfig(cost_weighted=["params"]).cost_weighted == "params"
    assert TrainConfig(cost_weighted=["macs", "switches"]).cost_weighted == ("switches", "macs")
    with pytest.raises(ValueError, match=r"unknown setting train.lr"):
        TrainConfig.from_dict({"lr": 0.1})
    model, loaders, cfg = setup()
    with pytest.raises(ValueError, match="1 training loaders for a model with 2 domains"):
        Trainer(model, loaders[:1], cfg)


@pytest.mark.parametrize("method", ["ba2", "feature"])
def test_a_shared_batchnorm_keeps_its_statistics(method):
    """A BatchNorm left shared (exclude) is part of θ₀: training on several domains must not move its statistics."""
    net = TinyNet()
    perturb_batchnorms(net)
    model = to_multidomain(net, [3, 4], exclude=["bn1"])
    before = {k: v.clone() for k, v in model.backbone.bn1.state_dict().items()}
    loaders = [loader(n, c, i) for i, (n, c) in enumerate(zip((24, 16), [3, 4]))]
    cfg = TrainConfig(method=method, rounds=1, lr_domain=0.05, lr_switches=1e-2, lr_milestones=(1,))
    Trainer(model, loaders, cfg, progress=False).fit()
    assert all(torch.equal(v, before[k]) for k, v in model.backbone.bn1.state_dict().items())
