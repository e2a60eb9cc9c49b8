"""A catalogue of faults a careless or hostile user can cause, one case each: every one ends in a named error
(the CLI: one line on stderr, exit code 2, no traceback), and no file claims settings it was not trained with."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision
import yaml
from helpers import TinyNet
from test_data import _jpeg, make_devkit

from mdlprune import BudgetLoss, IntersectionLoss, prune, save_model, to_multidomain
from mdlprune.data import mini_decathlon
from mdlprune.data.real.decathlon import DatasetNotFoundError, DecathlonDataset
from mdlprune.data.real.presets import imagenet_to_sketch
from mdlprune.method.backbones import resnet26
from mdlprune.experiments.cli import main
from mdlprune.method.prune import Equivalence
from mdlprune.training import Trainer, TrainConfig
from mdlprune.training.checkpoint import CheckpointError, atomic_save, load_checkpoint, load_model
from mdlprune.training.history import NonFiniteError

TINY_DATA = {"benchmark": "mini", "size": {"train": 32, "val": 16, "test": 16}, "domains": ["digits", "signs"]}
TINY_TRAIN = {"method": "ours", "beta": 0.5, "rounds": 2, "batch_size": 16, "bn_recalibration": 2}


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, *words):
    """Exit code 2, one line on stderr naming the problem, no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], f"{w!r} not in {lines[0]!r}"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run R (its config file, folder and files), trained once for the whole module."""
    root = tmp_path_factory.mktemp("run")
    cfg = {"data": {**TINY_DATA, "root": str(root / "data")}, "model": {"backbone": "mini"}, "train": TINY_TRAIN,
           "output": str(root / "R"), "device": "cpu"}  # fmt: skip
    (root / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(root / "tiny.yaml")]) == 0
    return root


@pytest.fixture
def run(finished, tmp_path):
    """A copy of the finished run, with the paths in its configuration pointing at the copy."""
    shutil.copytree(finished / "R", tmp_path / "R")
    cfg = yaml.safe_load((finished / "tiny.yaml").read_text())
    cfg["output"] = str(tmp_path / "R")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# -- 1, 2: a finished run is never reused, nor its config.yaml rewritten, under other settings ----------------
@pytest.mark.parametrize("override, named", [
    ("data.image_size=64", "data.image_size"),
    ("data.seed=7", "data.seed"),
    ("train.rounds=1", "has trained 2 rounds, more than the 1 asked for"),
    ("train.beta=0.25", "train.beta"),
    ("model.backbone=resnet26", "model.backbone: 'mini' in the checkpoint, 'resnet26' now"),
])  # fmt: skip
def test_a_run_is_not_reused_under_other_settings(run, capsys, override, named):
    before = _snapshot(run / "R")
    code, _, err = cli(capsys, "train", "--config", run / "tiny.yaml", "--set", override)
    one_line_error(code, err, named, "another output folder", "--restart")
    assert _snapshot(run / "R") == before  # config.yaml and model.pt still describe the run that was trained


def test_restart_trains_afresh_and_the_files_agree(run, capsys):
    code, _, _ = cli(capsys, "train", "--config", run / "tiny.yaml", "--set", "train.beta=0.25", "--restart")
    assert code == 0
    assert yaml.safe_load((run / "R" / "config.yaml").read_text())["train"]["beta"] == 0.25
    model = load_model(run / "R" / "model.pt")
    assert model.run_identity["train"]["beta"] == 0.25
    assert load_checkpoint(run / "R" / "checkpoint.pt")["identity"]["train"]["beta"] == 0.25


def test_resume_with_another_backbone_width_is_refused(tmp_path, capsys):
    cfg = {"data": {**TINY_DATA, "root": str(tmp_path / "data")}, "model": {"backbone": "resnet26", "width": 0.25},
           "train": {**TINY_TRAIN, "rounds": 1}, "output": str(tmp_path / "R"), "device": "cpu"}  # fmt: skip
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(tmp_path / "c.yaml")]) == 0
    capsys.readouterr()
    code, _, err = cli(capsys, "train", "--config", tmp_path / "c.yaml", "--set", "model.width=0.5")
    one_line_error(code, err, "model.width: 0.25 in the checkpoint, 0.5 now")


# -- 3: non-finite settings and training ---------------------------------------------------------------------
@pytest.mark.parametrize("value", [".nan", "-3", "0", "1.5"])
def test_lr_gamma_outside_its_range_is_refused(capsys, value):
    code, _, err = cli(capsys, "train", "--config", "mini", "--set", f"train.lr_gamma={value}")
    one_line_error(code, err, "lr_gamma")


def test_a_diverging_run_stops_with_a_named_error(tmp_path):
    model = to_multidomain(TinyNet(), [3, 3])
    x, y = torch.randn(8, 3, 8, 8) * 1e6, torch.randint(3, (8,))

    class Loader:
        def __len__(self):
            return 2

        def iterate(self, start=0, resume=False):
            return iter([(x, y)] * (2 - start))

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    cfg = TrainConfig(method="ba2", rounds=1, batch_size=8, lr_domain=1e30)
    with pytest.raises(NonFiniteError, match="NaN or inf.*lower the learning rates"):
        Trainer(model, [Loader(), Loader()], cfg, checkpoint=tmp_path / "c.pt", progress=False, log_every=1).fit()
    assert not (tmp_path / "c.pt").exists()  # nothing was saved from the diverged run


def test_the_equivalence_check_never_passes_on_nan():
    assert not Equivalence(float("nan"), 1.0).holds() and Equivalence(0.0, 1.0).holds()


def test_an_unknown_device_is_refused_before_training(capsys):
    code, _, err = cli(capsys, "demo", "--device", "tpu")
    one_line_error(code, err, "unknown device 'tpu'")


# -- 4: zero rounds is not "the default" -----------------------------------------------------------------
@pytest.mark.parametrize("command", ["demo", "sweep"])
def test_zero_rounds_are_refused(capsys, command):
    code, _, err = cli(capsys, command, "--rounds", "0")
    one_line_error(code, err, "rounds must be an int >= 1")


# -- 5: the mini-decathlon's cache is checked against its manifest --------------------------------------------
@pytest.mark.parametrize("damage", ["short labels", "inverted images", "empty file", "out-of-range labels"])
def test_a_damaged_cache_is_regenerated_and_said_so(tmp_path, capfd, damage):
    size = {"train": 20, "val": 4, "test": 4}
    bench = mini_decathlon(size=size, root=tmp_path, workers=1)
    images, labels = (a.copy() for a in bench["digits"].arrays("train"))
    images_path, labels_path = bench["digits"]._path("train", "images"), bench["digits"]._path("train", "labels")
    if damage == "short labels":
        np.save(labels_path, labels[:5])
    elif damage == "inverted images":
        np.save(images_path, 255 - images)
    elif damage == "empty file":
        images_path.write_bytes(b"")
    else:
        np.save(labels_path, labels + 99)
    capfd.readouterr()
    again = mini_decathlon(size=size, root=tmp_path, workers=1)
    x, y = again["digits"].arrays("train")
    assert "regenerating the cached digits/train" in capfd.readouterr().err
    assert np.array_equal(x, images) and np.array_equal(y, labels)


# -- 6: evaluate checks the model against the benchmark ------------------------------------------------------
def test_evaluate_refuses_a_model_of_other_classes(run, capsys):
    model = load_model(run / "R" / "model.pt")
    bad = to_multidomain(resnet26(width=0.25), [3, 4], domain_names=list(model.domain_names))
    save_model(bad, run / "bad.pt")
    code, _, err = cli(capsys, "evaluate", "--config", run / "tiny.yaml", "--model", run / "bad.pt")
    one_line_error(code, err, "classes", "other data")


def test_an_empty_test_split_is_an_error_not_zero_percent(run, capsys):
    code, _, err = cli(capsys, "evaluate", "--config", run / "tiny.yaml", "--model", run / "R" / "model.pt",
                       "--set", "data.size={train: 32, val: 16, test: 0}")  # fmt: skip
    one_line_error(code, err, "no images")


# -- 7: booleans, unknown keys, nonsense sizes ----------------------------------------------------------------
@pytest.mark.parametrize("override, words", [
    ("train.beta=true", ["beta", "bool"]),
    ("train.rounds=true", ["rounds must be an int"]),
    ("foo=1", ["unknown configuration section 'foo'"]),
    ("model.width=-1", ["model.width"]),
    ("data.image_size=0", ["data.image_size"]),
    ("train.lr_domian=0.1", ["did you mean 'lr_domain'"]),
    ("device=tpu", ["unknown device 'tpu'"]),
    ("train.beta=[0.5", ["cannot parse the value"]),
])  # fmt: skip
def test_bad_settings_are_named(capsys, override, words):
    code, _, err = cli(capsys, "train", "--config", "mini", "--set", override)
    one_line_error(code, err, *words)


def test_the_api_refuses_bools_and_out_of_range_domains():
    model = to_multidomain(TinyNet(), [3, 3])
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(TypeError, match="bool"):
        model(x, True)
    masks = model.binary_masks()
    with pytest.raises(ValueError, match=r"beta must be in \(0, 1\]"):
        IntersectionLoss()(masks, 0)
    with pytest.raises(ValueError, match=r"domain must be an index in 0..1"):
        BudgetLoss(2, 0.5)(masks, -1)


@pytest.mark.parametrize("x, words", [
    (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), ["torch.uint8", "normalise"]),
    (torch.zeros(2, 3, 8, 8, dtype=torch.float64), ["torch.float64"]),
    (np.zeros((2, 3, 8, 8), np.float32), ["torch.Tensor", "ndarray"]),
])  # fmt: skip
def test_inputs_of_the_wrong_type_are_named(x, words):
    model = to_multidomain(TinyNet(), [3, 3])
    with pytest.raises(TypeError) as e:
        model(x, 0)
    assert all(w in str(e.value) for w in words)


# -- 8: loading imports and runs nothing a file names ---------------------------------------------------------
def test_a_file_naming_the_cli_is_refused_without_running_it(tmp_path, monkeypatch):
    fake = types.ModuleType("mdlprune.__main__")

    class X(nn.Module):
        pass

    X.__module__, X.__qualname__ = "mdlprune.__main__", "X"
    fake.X = X
    monkeypatch.setitem(sys.modules, "mdlprune.__main__", fake)
    torch.save(X(), tmp_path / "evil.pt")
    monkeypatch.delitem(sys.modules, "mdlprune.__main__")
    with pytest.raises(CheckpointError, match=r"outside the allowlist.*mdlprune\.__main__\.X"):
        load_model(tmp_path / "evil.pt")
    assert "mdlprune.__main__" not in sys.modules  # never imported, so the CLI never ran
    with pytest.raises(CheckpointError, match="never writes into a checkpoint; refused"):
        load_checkpoint(tmp_path / "evil.pt")


# -- 9, 10: files, paths and models given in the wrong place ---------------------------------------------------
def test_files_given_in_the_wrong_place_get_one_line(run, capsys, tmp_path):
    R = run / "R"
    torch.save(load_model(R / "model.pt").state_dict(), tmp_path / "state.pt")
    save_model(torchvision.models.resnet18(), tmp_path / "resnet18.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    cases = [
        (["prune", "--model", R / "checkpoint.pt", "--out", tmp_path / "p.pt"], ["training checkpoint, not a model"]),
        (["prune", "--model", tmp_path / "state.pt", "--out", tmp_path / "p.pt"], ["state dict, not a model"]),
        (["prune", "--model", tmp_path / "garbage.pt", "--out", tmp_path / "p.pt"], ["not a PyTorch checkpoint"]),
        (["prune", "--model", R / "model.pt", "--out", R], ["is a folder"]),
        (["evaluate", "--config", run / "tiny.yaml", "--model", tmp_path / "resnet18.pt"], ["not a multi-domain model"]),
        (["train", "--config", run / "tiny.yaml", "--set", f"output={R / 'model.pt'}"], ["is a file, not a folder"]),
    ]
    for argv, words in cases:
        code, _, err = cli(capsys, *argv)
        one_line_error(code, err, *words)
    with pytest.raises(SystemExit):  # argparse: a value that is not a positive size
        main(["prune", "--model", str(R / "model.pt"), "--out", str(tmp_path / "p.pt"), "--image-size", "0"])
    assert "--image-size" in capsys.readouterr().err


def test_a_model_file_where_a_checkpoint_belongs_is_named_as_such(run):
    with pytest.raises(CheckpointError, match="is a saved model, not a training checkpoint"):
        load_checkpoint(run / "R" / "model.pt")


def test_a_checkpoint_that_is_a_folder_is_named(run, capsys):
    (run / "R" / "checkpoint.pt").unlink()
    (run / "R" / "checkpoint.pt").mkdir()
    code, _, err = cli(capsys, "train", "--config", run / "tiny.yaml")
    one_line_error(code, err, "checkpoint.pt")


def test_a_full_disk_is_an_os_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = atomic_save({"a": 1}, tmp_path / "c.pt")
    before = path.read_bytes()

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 2217920 vs 2217816")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match="is the disk full"):
        atomic_save({"a": 2}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_stale_temporary_files_are_removed_at_the_next_save(tmp_path):
    (tmp_path / ".c.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    atomic_save({"a": 1}, tmp_path / "c.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_decathlon_labels_out_of_range_and_corrupt_images_are_named(tmp_path):
    make_devkit(tmp_path)
    ann = tmp_path / "annotations" / "aircraft_train.json"
    doc = json.loads(ann.read_text())
    doc["annotations"][0]["category_id"] = 99999
    ann.write_text(json.dumps(doc))
    with pytest.raises(DatasetNotFoundError, match="category ids outside its 3 categories"):
        DecathlonDataset(tmp_path, "aircraft", "train")
    val = DecathlonDataset(tmp_path, "aircraft", "val")
    val.samples[0][0].write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(OSError, match=r"cannot read the image .*0000000\.jpg.*corrupt"):
        val[0]


def test_an_image_folder_class_renamed_in_test_is_named(tmp_path):
    for split, classes in (("train", ("ant", "bee")), ("test", ("ant", "wasp"))):
        for c in classes:
            _jpeg(tmp_path / "sketches" / split / c / "0.jpg", size=(64, 64))
    with pytest.raises(DatasetNotFoundError, match=r"only in train: \['bee'\], only in test: \['wasp'\]"):
        imagenet_to_sketch(tmp_path, ["sketches"])


def test_a_batch_larger_than_the_split_is_named():
    model = to_multidomain(TinyNet(), [3])

    class Empty:
        def __len__(self):
            return 0

    with pytest.raises(ValueError, match=r"smaller than one batch .*train.batch_size is 64"):
        Trainer(model, [Empty()], TrainConfig(batch_size=64), progress=False)


def test_pruning_refuses_nothing_it_should_accept(run):
    """(Sanity: the refusals above are not refusing good input.)"""
    model = load_model(run / "R" / "model.pt")
    assert prune(model) is not None


def test_a_run_killed_with_sigkill_resumes_to_the_same_weights(finished, tmp_path):
    """SIGKILL mid-run (no chance to clean up), then the same command again: the final model is bit-identical
    to an uninterrupted run's."""
    cfg = yaml.safe_load((finished / "tiny.yaml").read_text())
    cfg["train"] = {**cfg["train"], "rounds": 4}
    for name in ("reference", "killed"):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**cfg, "output": str(tmp_path / name)}))
    assert main(["train", "--config", str(tmp_path / "reference.yaml")]) == 0
    command = [sys.executable, "-m", "mdlprune", "train", "--config", str(tmp_path / "killed.yaml")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "killed" / "model.pt").exists(), "the run ended before it could be killed"
    assert main(["train", "--config", str(tmp_path / "killed.yaml")]) == 0
    a = load_model(tmp_path / "reference" / "model.pt").state_dict()
    b = load_model(tmp_path / "killed" / "model.pt").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
