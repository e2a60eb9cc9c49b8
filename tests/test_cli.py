"""The command line: help, bad arguments, the smoke job, train → prune → evaluate from a configuration."""

import pytest

from mdlprune.experiments.cli import main
from mdlprune.training.config import builtin_configs, load_config


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_every_command(capsys):
    code, out, _ = run(capsys)
    assert code == 2
    for command in ("demo", "sweep", "train", "prune", "evaluate", "smoke"):
        assert command in out
    with pytest.raises(SystemExit) as e:
        main(["demo", "--help"])
    assert e.value.code == 0
    assert "--beta" in capsys.readouterr().out


def test_bad_beta_fails_fast_with_a_clear_message(capsys):
    code, _, err = run(capsys, "demo", "--beta", "1.5")
    assert code == 2 and "beta must be in (0, 1]" in err and "Traceback" not in err
    code, _, err = run(capsys, "sweep", "--betas", "0.5", "0")
    assert code == 2 and "beta must be in (0, 1]" in err


def test_missing_configuration(capsys):
    code, _, err = run(capsys, "train", "--config", "nowhere.yaml")
    assert code == 2 and "no configuration file nowhere.yaml" in err and "'mini'" in err


def test_bad_overrides(capsys):
    code, _, err = run(capsys, "train", "--config", "mini", "--set", "train.lr=0.1")
    assert code == 2 and "unknown setting train.lr" in err
    code, _, err = run(capsys, "train", "--config", "mini", "--set", "train.lr_domian=0.1")
    assert code == 2 and "unknown setting train.lr_domian (did you mean 'lr_domain'?)" in err
    code, _, err = run(capsys, "train", "--config", "mini", "--set", "model.depth=50")
    assert code == 2 and "unknown setting model.depth" in err
    code, _, err = run(capsys, "train", "--config", "mini", "--set", "foo=1")
    assert code == 2 and "unknown configuration section 'foo'" in err
    code, _, err = run(capsys, "train", "--config", "mini", "--set", "beta")
    assert code == 2 and "section.key=value" in err


def test_shipped_configurations_parse():
    assert "mini" in builtin_configs()
    for name in builtin_configs():
        cfg = load_config(name)
        assert set(cfg.to_dict()) == {"data", "model", "train", "output", "device"}


def test_smoke_prints_equal_outputs_and_sizes(capsys):
    code, out, _ = run(capsys, "smoke", "--width", "0.25", "--domains", "3")
    assert code == 0
    assert "| pruned model |" in out and "max abs diff" in out


def test_demo_and_sweep_refuse_zero_rounds_before_training(capsys):
    code, _, err = run(capsys, "demo", "--rounds", "0")
    assert code == 2 and "rounds must be an int >= 1" in err
    code, _, err = run(capsys, "sweep", "--betas", "0.5", "2")
    assert code == 2 and "beta must be in (0, 1]" in err


def test_shipped_presets_extend_one_another():
    quick, mini = load_config("mini-quick"), load_config("mini")
    assert quick.data.size == "quick" and quick.train.rounds == 12 and quick.train.lr_switches == 2.5 * mini.train.lr_switches
    assert quick.train.lr_domain == mini.train.lr_domain and quick.train.sharing == mini.train.sharing
