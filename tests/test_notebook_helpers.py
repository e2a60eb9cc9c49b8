"""The logic behind the notebooks' widgets and set-up, and the timing helper."""

import os

import pytest
import torch

from mdlprune.course import dual_ascent_toy, plot_dual_ascent, plot_round_plans, random_union, setup
from mdlprune.experiments.timing import measure


@pytest.mark.parametrize("beta", [0.2, 0.5, 0.8])
def test_dual_ascent_toy_meets_the_budget_with_the_best_switches(beta):
    """θ̄ reaches β, then dual ascent holds it there, give or take the one switch that the equilibrium of λ
    lets flip back and forth (at β = 0.8 it ends 161 / 200 on)."""
    run = dual_ascent_toy(beta, steps=1500, num_switches=200)
    assert run["theta"][0] == 1.0 and min(run["theta"]) <= beta
    assert abs(run["theta"][-1] - beta) <= 1 / 200 + 1e-12
    assert run["kept_importance"][0] == pytest.approx(run["best_importance"][0], abs=0.01)
    assert max(run["lam"]) > 0


def test_dual_ascent_plot_has_labelled_axes():
    fig = plot_dual_ascent(0.4, 0.05)
    assert [ax.get_xlabel() for ax in fig.axes] == ["step", "step"]
    assert [ax.get_ylabel() for ax in fig.axes] == ["θ̄", "λ"]


def test_random_union():
    assert random_union(1, 0.5) == 0.5
    assert random_union(5, 0.5) == pytest.approx(0.96875)


def test_round_plan_picture():
    fig = plot_round_plans({"round_robin": [(0,), (0,), (1,)], "mixed": [(0, 1), (0,)]}, ["a", "b"])
    assert len(fig.axes) == 2 and fig.axes[0].get_xlabel() == "training step in the round"


def test_setup_uses_one_overridable_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MDLPRUNE_DATA", raising=False)
    monkeypatch.setenv("MDLPRUNE_QUICK", "1")
    s = setup(root=tmp_path)
    assert s.quick and s.checkpoints == tmp_path.resolve() / "runs" / "notebooks" / "quick"
    assert s.checkpoints.is_dir() and os.environ["MDLPRUNE_DATA"] == str(tmp_path.resolve() / "data" / "cache")


def test_measure_times_a_callable():
    x = torch.randn(64, 64)
    t = measure(lambda: x @ x, threads=1, min_run_time=0.05)
    assert t.median_ms > 0 and t.iqr_ms >= 0 and t.runs >= 1 and t.threads == 1


# -- the "Your turn" checkers: right answers pass, the usual wrong ones get a useful line --------------------
def test_check_binarize():
    from mdlprune.course.exercises import check_binarize

    class STE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, s):
            return (s > 0).float()

        @staticmethod
        def backward(ctx, g):
            return g

    class NoGrad(STE):
        @staticmethod
        def backward(ctx, g):
            return g * 0

    assert check_binarize(STE.apply).startswith("correct")
    assert "forward pass should be 1[s > 0]" in check_binarize(lambda s: (s >= 0).float() + 0 * s)
    assert "no gradient flows back" in check_binarize(lambda s: (s > 0).float())
    assert "backward pass should hand dL/db straight" in check_binarize(NoGrad.apply)
    assert "raised ZeroDivisionError" in check_binarize(lambda s: 1 / 0)


def test_check_intersection_loss():
    from mdlprune.course.exercises import check_intersection_loss

    def right(m, beta):
        return (1 - m.prod(0).sum() / (m.shape[1] * beta)).clamp(min=0)

    assert check_intersection_loss(right).startswith("correct")
    assert "max(0, ·) is missing" in check_intersection_loss(lambda m, b: 1 - m.prod(0).sum() / (m.shape[1] * b))
    assert "I counts channels" in check_intersection_loss(lambda m, b: (1 - m.sum(0).clamp(max=1).sum() / (m.shape[1] * b)).clamp(min=0))
    assert "scalar" in check_intersection_loss(lambda m, b: m)


def test_check_kept_channels():
    from mdlprune.course.exercises import check_kept_channels

    assert check_kept_channels(lambda m: m.any(0).nonzero().flatten()).startswith("correct")
    assert "the union, not the intersection" in check_kept_channels(lambda m: m.all(0).nonzero().flatten())
    assert "indices" in check_kept_channels(lambda m: m.any(0))


def test_check_s_score():
    from mdlprune.course.exercises import check_s_score

    def right(acc, base):
        total = 0.0
        for d in acc:
            e, e_max = 100 - acc[d], 2 * (100 - base[d])
            total += 1000 * (max(0.0, e_max - e) / e_max) ** 2
        return total

    def no_clamp(acc, base):
        return sum(1000 * ((2 * (100 - base[d]) - (100 - acc[d])) / (2 * (100 - base[d]))) ** 2 for d in acc)

    def not_twice(acc, base):
        return sum(1000 * (max(0.0, (100 - base[d]) - (100 - acc[d])) / (100 - base[d])) ** 2 for d in acc)

    assert check_s_score(right).startswith("correct")
    assert "twice" in check_s_score(not_twice)
    assert "clamp E_max − E at 0" in check_s_score(no_clamp)


def test_a_tagged_run_is_described_by_its_tag():
    """A student's variant of a method (notebook 07) is named by its tag, not by the method it varies."""
    from mdlprune.course import describe_run
    from mdlprune.experiments.runs import TrainedMethod, mini_config

    config = mini_config("ours", 0.5)
    assert describe_run(TrainedMethod("ours", config, [], [], 12.0)) == "ours: trained now; its training took 12 s"
    run = TrainedMethod("ours", config, [], [], 12.0, tag="yours-beta0.5")
    assert describe_run(run) == "yours-beta0.5: trained now; its training took 12 s"
