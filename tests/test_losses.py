"""Budget loss (eq. 4), dual ascent, sharing losses (eq. 5): values and gradients on hand-made masks."""

import pytest
import torch

from mdlprune import BudgetLoss, IntersectionLoss, JaccardLoss, UnionLoss, binarize, to_multidomain
from mdlprune.method.losses import check_beta, intersection, make_sharing_loss, theta_bar, union
from helpers import TinyNet


def masks_of(rows):
    return torch.tensor(rows, dtype=torch.float32, requires_grad=True)


# -- budget ---------------------------------------------------------------------------------------------
def test_theta_bar_plain_and_cost_weighted():
    m = masks_of([[1, 1, 1, 0], [0, 0, 1, 0]])
    assert theta_bar(m).tolist() == [0.75, 0.25]
    assert theta_bar(m, torch.tensor([1.0, 1.0, 2.0, 4.0])).tolist() == [0.5, 0.25]


def test_budget_loss_value_and_gradient_when_over_budget():
    loss = BudgetLoss(num_domains=2, beta=0.5)
    loss.lam[:] = torch.tensor([2.0, 3.0])
    m = masks_of([[1, 1, 1, 0], [0, 0, 1, 0]])
    value = loss(m, 0)  # λ_0 (θ̄_0 − β) = 2 (0.75 − 0.5)
    assert value.item() == pytest.approx(0.5)
    value.backward()
    assert m.grad.tolist() == [[0.5] * 4, [0.0] * 4]  # λ_0 / M on domain 0, nothing on domain 1


def test_budget_loss_is_zero_with_zero_gradient_under_budget():
    loss = BudgetLoss(num_domains=2, beta=0.5)
    loss.lam[:] = 3.0
    m = masks_of([[1, 1, 1, 0], [0, 0, 1, 0]])
    value = loss(m, 1)
    value.backward()
    assert value.item() == 0.0 and torch.all(m.grad == 0)


def test_budget_loss_cost_weighted_gradient():
    w = torch.tensor([1.0, 1.0, 2.0, 4.0])
    loss = BudgetLoss(num_domains=1, beta=0.25, weights=w)
    loss.lam[0] = 4.0
    m = masks_of([[1, 1, 1, 0]])  # θ̄ = 4/8
    value = loss(m, 0)
    assert value.item() == pytest.approx(4.0 * (0.5 - 0.25))
    value.backward()
    torch.testing.assert_close(m.grad[0], 4.0 * w / w.sum())


def test_budget_on_two_costs_adds_each_violation_with_its_own_multiplier():
    w = torch.stack([torch.ones(4), torch.tensor([4.0, 2.0, 1.0, 1.0])])  # switches, and a cost heavy on switch 0
    m = masks_of([[1, 0, 0, 0], [0, 1, 1, 0]])
    assert theta_bar(m, w).tolist() == [[0.25, 0.5], [0.5, 0.375]]  # (N, K)
    loss = BudgetLoss(num_domains=2, beta=0.4, lr_lambda=0.5, weights=w)
    assert loss.lam.shape == (2, 2)
    loss.lam[0] = torch.tensor([3.0, 2.0])
    value = loss(m, 0)  # only the weighted cost is over budget: 2 (0.5 − 0.4); the switches' term clamps to 0
    assert value.item() == pytest.approx(0.2)
    value.backward()
    torch.testing.assert_close(m.grad[0], 2.0 * w[1] / w[1].sum())  # no gradient from the met budget
    assert torch.all(m.grad[1] == 0)
    lam = loss.dual_step(m.detach(), 1)  # domain 1: switches over (0.5), the weighted cost under (0.375)
    torch.testing.assert_close(lam, torch.tensor([0.5 * 0.1, 0.0]))
    with pytest.raises(ValueError, match=r"\(M,\) or \(K, M\) costs >= 0, each summing to > 0"):
        BudgetLoss(2, 0.5, weights=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="costs >= 0, each summing to > 0"):
        BudgetLoss(2, 0.5, weights=torch.tensor([2.0, -1.0]))


def test_dual_step():
    loss = BudgetLoss(num_domains=2, beta=0.5, lr_lambda=0.1)
    m = torch.tensor([[1.0, 1, 1, 0], [0, 0, 1, 0]])
    assert float(loss.dual_step(m, 0)) == pytest.approx(0.1 * 0.25)  # grows while violated
    assert float(loss.dual_step(m, 1)) == 0.0  # clamped at zero when met
    loss.lam[0] = 0.1
    loss.dual_step(torch.tensor([[0.0, 0, 0, 0], [0, 0, 0, 0]]), 0)
    assert loss.lam[0].item() == pytest.approx(0.05)  # decays once the budget is met


def test_dual_ascent_meets_the_budget_on_a_toy_problem():
    """A task that rewards every switch by its importance w_c, against a budget of 30 %: λ must grow while
    the budget is violated, θ̄ must end ≤ β, and the kept switches must be the most important ones."""
    torch.manual_seed(0)
    M, beta = 200, 0.3
    importance = torch.rand(M)
    s = torch.full((1, M), 1e-3, requires_grad=True)
    opt = torch.optim.Adam([s], lr=1e-3)
    budget = BudgetLoss(1, beta, lr_lambda=0.05)
    lambdas, means = [0.0], []
    for _ in range(1500):
        b = binarize(s)
        loss = -(importance * b[0]).sum() / M + budget(b, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        after = binarize(s.detach())  # the dual step reads the switches after the primal step
        means.append(float(after.mean()))
        lambdas.append(float(budget.dual_step(after, 0)))
    violated = [t for t, tb in enumerate(means) if tb > beta + 1e-6]  # (float32 0.3 reads 0.30000001)
    assert violated, "the budget should start violated"
    assert all(lambdas[t + 1] > lambdas[t] for t in violated)
    final = (s > 0)[0]
    assert final.float().mean() <= beta
    assert final.float().mean() >= beta - 0.02  # ... without giving up more than it must
    k = int(final.sum())
    assert torch.equal(final, importance >= importance.topk(k).values.min())


@pytest.mark.parametrize("beta", [0.0, -0.1, 1.01, 2, float("nan")])
def test_beta_outside_the_unit_interval_is_rejected(beta):
    with pytest.raises(ValueError, match=r"beta must be in \(0, 1\]"):
        BudgetLoss(2, beta)
    with pytest.raises(ValueError, match=r"beta must be in \(0, 1\]"):
        check_beta(beta)


def test_beta_of_the_wrong_type():
    with pytest.raises(TypeError, match="number in"):
        check_beta("half")


# -- sharing losses -------------------------------------------------------------------------------------
# Three domains, four switches: I = 2 (channels 0 and 3), U = 4, M = 4; with β = 0.75, M β = 3.
ROWS = [[1, 1, 0, 1], [1, 0, 1, 1], [1, 1, 0, 1]]
# ∂I/∂b_{d,c} = Π_{d'≠d} b_{d',c}          ∂U/∂b_{d,c} = Π_{d'≠d} (1 − b_{d',c})
DI = [[1, 0, 0, 1], [1, 1, 0, 1], [1, 0, 0, 1]]
DU = [[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]


def test_intersection_and_union_counts():
    m = masks_of(ROWS)
    assert intersection(m).item() == 2 and union(m).item() == 4


def test_intersection_loss_value_and_gradient():
    m = masks_of(ROWS)
    value = IntersectionLoss(lambda_ps=2.0)(m, 0.75)
    assert value.item() == pytest.approx(2.0 * (1 - 2 / 3))
    value.backward()
    torch.testing.assert_close(m.grad, -2.0 / 3 * torch.tensor(DI, dtype=torch.float32))


def test_intersection_loss_is_zero_once_the_shared_set_fills_the_budget():
    m = masks_of(ROWS)
    value = IntersectionLoss(lambda_ps=2.0)(m, 0.5)  # I = 2 = M β
    value.backward()
    assert value.item() == 0.0 and torch.all(m.grad == 0)


def test_union_loss_value_and_gradient():
    m = masks_of(ROWS)
    value = UnionLoss(lambda_ps=2.0)(m, 0.75)
    assert value.item() == pytest.approx(2.0 * (4 / 3 - 1))
    value.backward()
    torch.testing.assert_close(m.grad, 2.0 / 3 * torch.tensor(DU, dtype=torch.float32))


def test_jaccard_loss_value_and_gradient():
    m = masks_of(ROWS)
    value = JaccardLoss(lambda_ps=2.0)(m, 0.75)
    assert value.item() == pytest.approx(2.0 * (1 - 2 / 4))
    value.backward()
    expected = -2.0 * (4 * torch.tensor(DI, dtype=torch.float32) - 2 * torch.tensor(DU, dtype=torch.float32)) / 16
    torch.testing.assert_close(m.grad, expected)


def test_learnable_lambda_ps_by_dual_ascent():
    loss = IntersectionLoss(lambda_ps=1.0, learnable=True, lr_lambda_ps=0.3)
    assert float(loss.dual_step(masks_of(ROWS), 0.75)) == pytest.approx(1.0 + 0.3 * (1 - 2 / 3))
    fixed = IntersectionLoss(lambda_ps=1.0)
    assert float(fixed.dual_step(masks_of(ROWS), 0.75)) == 1.0


def test_sharing_loss_reaches_the_switches_of_every_domain():
    model = to_multidomain(TinyNet(), [2, 2, 2])
    with torch.no_grad():
        model.backbone.conv2.switches[1, 0] = -1.0  # channel 0 of conv2: on in domains 0 and 2 only
    IntersectionLoss(lambda_ps=1.0)(model.binary_masks(), 0.9).backward()
    g = model.backbone.conv2.switches.grad
    assert g[1, 0] < 0  # gradient descent raises domain 1's switch: it is the one missing
    assert g[0, 0] == 0 and g[2, 0] == 0  # the others cannot complete the intersection alone


def test_a_user_written_loss_plugs_in():
    def my_loss(masks, beta):
        return (1 - masks.prod(0).sum() / (masks.shape[1] * beta)).clamp(min=0)

    assert make_sharing_loss(my_loss) is my_loss
    m = masks_of(ROWS)
    torch.testing.assert_close(my_loss(m, 0.75), IntersectionLoss(lambda_ps=1.0)(m, 0.75))


def test_make_sharing_loss_by_name_and_errors():
    assert isinstance(make_sharing_loss("union", lambda_ps=0.5), UnionLoss)
    assert make_sharing_loss("none") is None and make_sharing_loss(None) is None
    with pytest.raises(ValueError, match=r"unknown sharing loss 'overlap': choose one of \['intersection', "):
        make_sharing_loss("overlap")
    with pytest.raises(TypeError, match="callable"):
        make_sharing_loss(3)
    with pytest.raises(ValueError, match="lambda_ps must be >= 0"):
        IntersectionLoss(lambda_ps=-1)
