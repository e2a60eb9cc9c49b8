"""Experiments end to end on tiny data: train → evaluate for every method, configs, the shipped backbone."""

import shutil

import pytest
import torch

from mdlprune.experiments.cli import main
from mdlprune.data import mini_decathlon
from mdlprune.experiments.evaluate import accuracy, results_table
from mdlprune.experiments.runs import (TrainedMethod, evaluate_from_config, evaluate_method, mini_config, run_methods,
                                      train_from_config, train_method)
from mdlprune.training.domain_state import load_domain_state
from mdlprune.method.backbones import resnet26
from mdlprune.data.shipped import backbone_record, load_backbone, shipped_dir
from mdlprune.training.checkpoint import CheckpointError, load_model
from mdlprune.training.config import load_config

TINY = {"train": 32, "val": 16, "test": 24}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    b = mini_decathlon(size=TINY, root=tmp_path_factory.mktemp("mini"), workers=2)
    b.generate(include_source=False)
    return b


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return resnet26(60, width=0.25)


def cfg(method, beta=0.5, **kw):
    return mini_config(method, beta, quick=True, **{"rounds": 1, "batch_size": 16, **kw})


def test_finetune_scores_each_model_on_its_own_domain(bench, backbone, tmp_path):
    trained = train_method("finetune", backbone, bench, cfg("finetune"), checkpoint_dir=tmp_path, progress=False)
    assert [m.domain_names for m in trained.models] == [(n,) for n in bench.names]
    result = evaluate_method(trained, bench, backbone, crops=1)
    for d, (name, model) in enumerate(zip(bench.names, trained.models)):
        expected = accuracy(model, bench.targets[d].loader("test", 256), 0)
        assert result.accuracies[name] == pytest.approx(expected)
    assert result.rel_params == len(bench) and result.beta is None


@pytest.mark.parametrize("method", ["ours", "ba2"])
def test_pruned_methods_are_evaluated_after_pruning(bench, backbone, tmp_path, method):
    trained = train_method(method, backbone, bench, cfg(method, lr_lambda=2.0), checkpoint_dir=tmp_path, progress=False)
    result = evaluate_method(trained, bench, backbone)
    assert result.notes["max_abs_diff_pruned"] <= 1e-5 * result.notes["max_abs_output"]
    assert set(result.theta_bar) == set(bench.names) and 0 < result.union_fraction <= 1
    assert result.rel_macs < 1.0 and result.rel_params > 0
    table = results_table([result], {n: 50.0 for n in bench.names})
    assert table.rows[0][0] == ("Ours" if method == "ours" else "BA²") + " β=0.50"


def test_a_finished_run_is_loaded(bench, backbone, tmp_path):
    first = train_method("feature", backbone, bench, cfg("feature"), checkpoint_dir=tmp_path, progress=False)
    again = train_method("feature", backbone, bench, cfg("feature"), checkpoint_dir=tmp_path, progress=False)
    a, b = first.models[0].state_dict(), again.models[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a loaded run says so, and reports the time its training took, not the time loading took
    assert (first.origin, again.origin) == ("trained", "loaded")
    assert 0 < again.seconds <= first.seconds and again.seconds == pytest.approx(first.seconds, abs=0.5)
    longer = train_method("feature", backbone, bench, cfg("feature", rounds=2), checkpoint_dir=tmp_path, progress=False)
    assert longer.origin == "resumed" and longer.seconds > first.seconds


def test_a_run_depends_on_its_seed_alone(bench, backbone, tmp_path):
    """Whatever drew from the global RNG before, the heads start the same: a run is reproducible (and the
    ranks of a distributed run start alike)."""
    runs = []
    for i, before in enumerate((1, 2)):
        torch.manual_seed(before)
        torch.rand(7)
        trained = train_method("feature", backbone, bench, cfg("feature"), checkpoint_dir=tmp_path / str(i), progress=False)
        runs.append(trained.models[0].state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_train_prune_evaluate_from_a_configuration(bench, tmp_path, capsys):
    config = {
        "data": {"benchmark": "mini", "size": TINY, "root": str(bench.root), "domains": ["digits", "signs"]},
        "model": {"backbone": "resnet26", "width": 0.25},
        "train": {"method": "ours", "beta": 0.5, "rounds": 1, "batch_size": 16, "lr_lambda": 2.0},
        "output": str(tmp_path / "run"),
        "device": "cpu",
    }
    assert train_from_config(load_config(config)) == 0
    captured = capsys.readouterr()
    assert "θ̄ per domain: digits" in captured.out
    assert "ours:" in captured.err and "checkpoint:" not in captured.err  # the bar names the method, not the file
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    model = load_model(tmp_path / "run" / "model.pt")
    assert model.domain_names == ("digits", "signs")
    assert main(["prune", "--model", str(tmp_path / "run" / "model.pt"), "--out", str(tmp_path / "pruned.pt")]) == 0
    assert "max |Δ output|" in capsys.readouterr().out
    assert evaluate_from_config(load_config(config), tmp_path / "pruned.pt") == 0
    out = capsys.readouterr().out
    assert "| digits |" in out and "relative Params" in out
    with pytest.raises(ValueError, match="unknown mini-decathlon domains"):
        train_from_config(load_config({**config, "data": {**config["data"], "domains": ["svhn"]}}))


def test_the_shipped_backbone_loads_offline_and_is_verified(tmp_path):
    record = backbone_record()
    assert record["source_test_accuracy"] > 50 and record["sha256"]
    model = load_backbone()
    assert model.fc.out_features == record["num_classes"]
    # a corrupted copy is refused
    folder = tmp_path / "backbones"
    shutil.copytree(shipped_dir() / "backbones", folder)
    weights = folder / record["file"]
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its recorded SHA-256"):
        load_backbone(folder=folder)
    with pytest.raises(FileNotFoundError, match="no backbone record"):
        load_backbone("resnet99", folder=folder)


def test_exported_runs_rebuild_to_the_same_accuracies(bench, backbone, tmp_path):
    """What a sweep ships (the domain-specific parameters of every run) reproduces its accuracies exactly."""
    results = run_methods([("ours", 0.5, 1)], backbone, bench, checkpoint_dir=tmp_path / "ckpt", progress=False,
                          quick=True, export_dir=tmp_path / "trained", rounds=1, batch_size=16, log=lambda s: None)
    result = results[0]
    assert result.seed == 1 and result.label == "Ours β=0.50 (seed 1)"
    model, meta = load_domain_state(tmp_path / "trained" / "ours-beta0.5-seed1.pt", backbone)
    assert meta["accuracies"] == result.accuracies and meta["seed"] == 1
    rebuilt = evaluate_method(TrainedMethod("ours", result_config(meta), [model], [], 0.0), bench, backbone)
    assert rebuilt.accuracies == result.accuracies and rebuilt.rel_params == result.rel_params
    row = result.row({d: 50.0 for d in bench.names})
    assert {"method", "beta", "seed", "accuracies", "s_score", "s_o", "s_p", "macs", "params", "max_theta_bar"} <= set(row)


def result_config(meta):
    return cfg(meta["method"], meta["beta"], seed=meta["seed"])


def test_a_shipped_run_is_used_only_for_exactly_its_settings(bench, backbone, tmp_path, monkeypatch):
    """shipped_run rebuilds an exported run (with its training curves) when data, backbone and every setting
    that matters agree, and declines otherwise: a notebook never shows a run as one it was not trained as."""
    from mdlprune.experiments.runs import shipped_run

    config = cfg("ours")
    run_methods([("ours", 0.5)], backbone, bench, checkpoint_dir=tmp_path / "ckpt", progress=False, quick=True,
                export_dir=tmp_path / "data" / "results" / "mini-sweep", rounds=1, batch_size=16, log=lambda s: None)
    monkeypatch.setenv("MDLPRUNE_SHIPPED", str(tmp_path / "data"))
    run = shipped_run("ours", bench, backbone, config)
    assert run is not None and run.origin == "shipped" and run.config.settings_that_matter() == config.settings_that_matter()
    assert len(run.histories[0]) > 0 and run.histories[0].last("theta_0") is not None
    assert shipped_run("ours", bench, backbone, cfg("ours", lambda_ps=0.5)) is None  # another setting
    assert shipped_run("ours", bench, backbone, cfg("ours", rounds=2)) is None  # longer training
    assert shipped_run("ba2", bench, backbone, cfg("ba2")) is None  # not shipped
    assert shipped_run("finetune", bench, backbone, cfg("finetune")) is None  # whole models are never shipped
    other = mini_decathlon(size={**TINY, "test": 12}, root=bench.root)
    assert shipped_run("ours", other, backbone, config) is None  # other data


def test_a_sweep_repeats_seeds_only_where_asked(bench, backbone, monkeypatch, capsys):
    import mdlprune.experiments.cli as cli

    seen = []
    monkeypatch.setattr(cli, "run_methods", lambda methods, *a, **k: seen.extend(methods) or (_ for _ in ()).throw(KeyboardInterrupt))
    monkeypatch.setattr(cli, "mini_decathlon", lambda **k: bench)
    monkeypatch.setattr(cli, "load_backbone", lambda: backbone)
    with pytest.raises(KeyboardInterrupt):
        main(["sweep", "--betas", "1", "0.5", "--seeds", "0", "1", "--seeds-at", "0.5", "--quick", "--no-progress"])
    assert [m for m in seen if len(m) == 3 and m[2] == 1] == [("ba2", 0.5, 1), ("ours", 0.5, 1)]
    assert {(m[0], m[1]) for m in seen if len(m) == 3 and m[2] == 0} == {(a, b) for a in ("ba2", "ours") for b in (1.0, 0.5)}
    code = main(["sweep", "--betas", "1", "0.5", "--seeds", "0", "1", "--seeds-at", "0.25"])
    assert code == 2 and "--seeds-at [0.25]: every β there must be one of --betas" in capsys.readouterr().err


def test_a_thinned_history_keeps_the_first_and_last_records():
    from mdlprune.training.history import History

    h = History(["a"], [{"step": i, "ce": float(i)} for i in range(1, 1001)])
    t = h.thinned(300)
    assert 250 <= len(t) <= 301 and t.records[0]["step"] == 1 and t.records[-1]["step"] == 1000
    assert History(["a"], h.records[:5]).thinned(300).records == h.records[:5]


def test_records_name_the_commit_of_the_code_that_ran(monkeypatch):
    """A result's record names the package's own commit (not the working directory's), and says when the code that
    ran differs from it (a run before its commit, or a stale copy of the repository on another machine)."""
    import subprocess
    from pathlib import Path

    from mdlprune.experiments import provenance

    status = {"out": " M mdlprune/method/switch.py"}
    seen = []

    real = subprocess.run

    def git(cmd, cwd=None, **kwargs):
        if cmd[0] != "git":  # (platform's own calls)
            return real(cmd, cwd=cwd, **kwargs)
        seen.append(Path(cwd))
        if cmd[1] == "rev-parse":
            return subprocess.CompletedProcess(cmd, 0, "abc1234\n", "")
        return subprocess.CompletedProcess(cmd, 0, status["out"], "")

    monkeypatch.setattr(provenance.subprocess, "run", git)
    assert provenance.code_commit() == "abc1234 +uncommitted changes"
    assert provenance.machine_info()["commit"] == "abc1234 +uncommitted changes"
    status["out"] = ""
    assert provenance.code_commit() == "abc1234"
    assert set(seen) == {Path(provenance.__file__).resolve().parents[2]}

    def no_git(cmd, cwd=None, **kwargs):
        if cmd[0] != "git":
            return real(cmd, cwd=cwd, **kwargs)
        raise OSError("git: not found")

    monkeypatch.setattr(provenance.subprocess, "run", no_git)
    assert provenance.code_commit() is None and "commit" not in provenance.machine_info()
