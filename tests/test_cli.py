"""The command line: help, bad arguments, the smoke job, train → prune → evaluate from a configuration."""

import pytest

from mdlprune.cli import main
from mdlprune.config import builtin_configs, load_config


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
    assert code == 2 and "unknown training options ['lr']" in err
    code, _, err = run(capsys, "train", "--config", "mini", "--set", "model.depth=50")
    assert code == 2 and "unknown key model.depth" in err
    code, _, err = run(capsys, "train", "--config", "mini", "--set", "beta")
    assert code == 2 and "section.key=value" in err


def test_shipped_configurations_parse():
    assert "mini" in builtin_configs()
    for name in builtin_configs():
        cfg = load_config(name)
        assert set(cfg) == {"data", "model", "train", "output", "device"}


def test_smoke_prints_equal_outputs_and_sizes(capsys):
    code, out, _ = run(capsys, "smoke", "--width", "0.25", "--domains", "3")
    assert code == 0
    assert "| pruned model |" in out and "max abs diff" in out
