"""torchrun / DDP: synchronised BatchNorm, the same result as one process, resume with another world size,
and every shipped configuration builds its model and data pipeline (dry run, on fixtures, no download)."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import yaml
from test_data import make_devkit, _jpeg

from mdlprune.training.config import builtin_configs, load_config
from mdlprune.training.distributed import SyncBatchNorm2d, convert_sync_batchnorm, max_divergence, revert_sync_batchnorm
from mdlprune.experiments.runs import train_from_config
from mdlprune.training.checkpoint import load_checkpoint, load_model

TINY = {"train": 64, "val": 16, "test": 16}


def test_sync_batchnorm_is_batchnorm_in_one_process():
    torch.manual_seed(0)
    bn, sync = nn.BatchNorm2d(4), SyncBatchNorm2d(4)
    x = torch.randn(8, 4, 5, 5)
    torch.testing.assert_close(sync(x), bn(x))
    torch.testing.assert_close(sync.running_var, bn.running_var)


def test_convert_and_revert_keep_the_state():
    from helpers import TinyNet, perturb_batchnorms

    from mdlprune import to_multidomain

    net = TinyNet()
    perturb_batchnorms(net)
    model = to_multidomain(net, [2, 2])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    convert_sync_batchnorm(model)
    assert all(type(b) is SyncBatchNorm2d for b in model.backbone.bn1.bns)
    revert_sync_batchnorm(model)
    assert all(type(b) is nn.BatchNorm2d for b in model.backbone.bn1.bns)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert max_divergence([torch.ones(3)]) == 0.0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path, name, root, **train):
    cfg = {
        "data": {"benchmark": "mini", "size": TINY, "root": str(root)},
        "model": {"backbone": "resnet26", "width": 0.25},
        "train": {"method": "ours", "beta": 0.5, "rounds": 2, "batch_size": 16, "lr_domain": 0.01,
                  "lr_switches": 3e-4, "lr_milestones": [1], "lr_lambda": 1.0, **train},
        "output": str(tmp_path / name),
        "device": "cpu",
    }  # fmt: skip
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train(config, nproc):
    cmd = [sys.executable, "-m", "mdlprune", "train", "--config", str(config)]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               f"--master_port={_free_port()}", "-m", "mdlprune", "train", "--config", str(config)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes on two cores
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    from mdlprune.data import mini_decathlon

    mini_decathlon(size=TINY, root=tmp / "data").generate(include_source=False)
    _train(_config(tmp, "two", tmp / "data"), 2)
    _train(_config(tmp, "one", tmp / "data"), 1)
    # stopped after one round on two processes, resumed for the second round on one process
    _train(_config(tmp, "resumed", tmp / "data", rounds=1), 2)
    _train(_config(tmp, "resumed", tmp / "data"), 1)
    return tmp


def test_ranks_agree_exactly(runs):
    report = json.loads((runs / "two" / "distributed.json").read_text())
    assert report == {"world_size": 2, "max_divergence_between_ranks": 0.0}


def _compare(a_dir, b_dir):
    a, b = load_model(a_dir / "model.pt"), load_model(b_dir / "model.pt")
    masks_a, masks_b = a.layer_masks(), b.layer_masks()
    agree = sum(int((masks_a[k] == masks_b[k]).sum()) for k in masks_a) / sum(m.numel() for m in masks_a.values())
    sa, sb = a.state_dict(), b.state_dict()
    heads = max(float((sa[k] - sb[k]).abs().max()) for k in sa if ".heads." in k)
    return agree, heads, load_checkpoint(a_dir / "checkpoint.pt"), load_checkpoint(b_dir / "checkpoint.pt")


def test_two_processes_match_one_with_the_same_global_batch(runs):
    """The same global batches, synchronised BatchNorm and averaged gradients: two processes compute what one
    does up to the order of float sums. Those ~1e-7 relative differences are amplified by the binary
    switches only when one lands within rounding of the threshold (Adam moves every switch by about its
    learning rate, so some do), and each flip nudges θ̄ and hence λ. Measured on this run: 99.93 % identical
    switches, heads within 1e-4, λ within 0.2 %; we require ≥ 99 %, 1e-3 and 1 %."""
    agree, heads, ca, cb = _compare(runs / "two", runs / "one")
    assert agree >= 0.99 and heads < 1e-3
    torch.testing.assert_close(ca["budget"]["lam"], cb["budget"]["lam"], rtol=1e-2, atol=1e-4)
    assert ca["global_step"] == cb["global_step"]


def test_a_run_stopped_on_two_processes_resumes_on_one(runs):
    agree, heads, resumed, one = _compare(runs / "resumed", runs / "one")
    assert resumed["round"] == one["round"] == 2 and resumed["global_step"] == one["global_step"]
    assert agree >= 0.99 and heads < 1e-3


# -- every shipped configuration builds (dry run on fixtures, no download) ----------------------------------
@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    root = tmp_path_factory.mktemp("fixtures")
    make_devkit(root / "decathlon", "aircraft")
    base = root / "tv" / "dtd" / "dtd"
    (base / "labels").mkdir(parents=True)
    for split in ("train1", "val1", "test1"):
        rows = []
        for cls in ("banded", "dotted"):
            for i in range(2):
                name = f"{cls}/{cls}_{split}_{i}.jpg"
                _jpeg(base / "images" / name, size=(90, 80))
                rows.append(name)
        (base / "labels" / f"{split}.txt").write_text("\n".join(rows) + "\n")
    for split in ("train", "test"):
        for c in ("ant", "bee"):
            for i in range(4):
                _jpeg(root / "sketch" / "sketches" / split / c / f"{i}.jpg", size=(300, 260))
    return root


OVERRIDES = {
    "mini": ["data.size=quick"],
    "mini-quick": [],
    "mini-gpu": ["data.size=quick", "device=cpu"],
    "decathlon-wrn28": ["data.root={root}/decathlon", "data.domains=[aircraft]", "data.num_workers=0", "device=cpu",
                        "model.k=1"],
    "torchvision-resnet18": ["data.root={root}/tv", "data.domains=[dtd]", "data.download=false", "model.weights=null",
                             "data.num_workers=0", "device=cpu"],
    "torchvision-resnet50": ["data.root={root}/tv", "data.domains=[dtd]", "data.download=false", "model.weights=null",
                             "data.num_workers=0", "device=cpu"],
    "sketch-resnet50": ["data.root={root}/sketch", "data.domains=[sketches]", "model.weights=null",
                        "data.num_workers=0", "device=cpu"],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(builtin_configs()))
def test_every_configuration_builds_its_model_and_data(name, fixtures, capsys):
    assert name in OVERRIDES, f"add a dry-run override for the new configuration {name}"
    overrides = [o.format(root=fixtures) for o in OVERRIDES[name]]
    assert train_from_config(load_config(name, overrides), dry_run=True) == 0
    out = capsys.readouterr().out
    assert "dry run:" in out and "→ logits" in out
