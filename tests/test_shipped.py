"""The committed sweep ships its runs as domain-specific parameters: rebuilt from the shipped backbone, they give
back exactly the accuracies the sweep measured and docs/results/mini-sweep.json lists."""

import json

import pytest

from mdlprune.data import mini_decathlon
from mdlprune.data.shipped import load_backbone, load_trained, shipped_runs, sweep_path
from mdlprune.experiments.runs import evaluate_method, mini_config, shipped_run
from mdlprune.training.methods import METHODS


@pytest.fixture(scope="module")
def committed():
    record = json.loads(sweep_path().read_text())
    return record, {(r["method"], r["beta"], r["seed"]): r for r in record["rows"]}


def test_every_multi_domain_run_of_the_sweep_is_shipped(committed):
    _, rows = committed
    expected = sorted(f"{m}-beta{b:g}-seed{s}" if b is not None else f"{m}-seed{s}"
                      for m, b, s in rows if not METHODS[m].per_domain_models)  # fmt: skip
    assert shipped_runs() == expected


@pytest.mark.parametrize("method, beta", [("ours", 0.5), ("ba2", 1.0)])
def test_a_shipped_run_gives_back_its_accuracies_exactly(committed, method, beta):
    record, rows = committed
    bench = mini_decathlon(size="default")
    backbone = load_backbone()
    config = mini_config(method, beta, quick=False)
    run = shipped_run(method, bench, backbone, config)
    assert run is not None, "the shipped run was trained with the mini preset's settings on the default benchmark"
    result = evaluate_method(run, bench, backbone)
    row = rows[(method, beta, 0)]
    assert result.accuracies == row["accuracies"]
    assert result.rel_params == row["params"] and result.rel_macs == row["macs"]
    assert max(result.theta_bar.values()) == row["max_theta_bar"]
    assert record["baseline"] == rows[("finetune", None, 0)]["accuracies"]


def test_an_unknown_run_names_what_is_shipped():
    with pytest.raises(FileNotFoundError, match="shipped: .*ours-beta0.5-seed0"):
        load_trained("ours", 0.33)
