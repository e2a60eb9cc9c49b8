"""Trained runs ship as their domain-specific parameters: the rebuilt model is the trained one, bit for bit."""

import pytest
import torch
import torchvision
from helpers import perturb_batchnorms

from mdlprune import prune, randomize_switches, to_multidomain
from mdlprune.method.backbones import resnet26
from mdlprune.training.checkpoint import CheckpointError
from mdlprune.training.domain_state import load_domain_state, save_domain_state


def trained_like(backbone):
    model = to_multidomain(backbone, [10, 40, 16], domain_names=["digits", "glyphs", "textures"])
    randomize_switches(model, keep=0.5, seed=3)
    perturb_batchnorms(model, seed=1)
    with torch.no_grad():
        for p in model.heads.parameters():
            p.normal_()
    return model.eval()


def test_the_rebuilt_model_computes_exactly_what_the_trained_one_did(tmp_path):
    torch.manual_seed(0)
    backbone = resnet26(width=0.25)
    model = trained_like(backbone)
    path = save_domain_state(model, tmp_path / "run.pt", backbone, method="ours", beta=0.5, accuracies={"digits": 90.0})
    rebuilt, meta = load_domain_state(path, backbone)
    assert meta == {"method": "ours", "beta": 0.5, "accuracies": {"digits": 90.0}}
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        for d in range(3):
            assert torch.equal(rebuilt(x, d), model(x, d))
            assert torch.equal(prune(rebuilt)(x, d), prune(model)(x, d))
    whole = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert path.stat().st_size < 0.3 * whole  # the frozen backbone is not in the file


def test_another_backbone_or_a_pruned_model_is_refused(tmp_path):
    torch.manual_seed(0)
    backbone = resnet26(width=0.25)
    path = save_domain_state(trained_like(backbone), tmp_path / "run.pt", backbone)
    with pytest.raises(CheckpointError, match="another backbone"):
        load_domain_state(path, resnet26(width=0.5))
    with pytest.raises(CheckpointError, match="another backbone"):
        load_domain_state(path, resnet26(width=0.25))  # same shapes, other weights
    with pytest.raises(ValueError, match="is it pruned"):
        save_domain_state(prune(trained_like(backbone)), tmp_path / "p.pt", backbone)


def test_a_model_with_excluded_layers_is_rebuilt_with_them(tmp_path):
    backbone = torchvision.models.mobilenet_v2(weights=None)
    grouped = [n for n, m in backbone.named_modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    model = to_multidomain(backbone, [3, 4], exclude=grouped).eval()
    randomize_switches(model, 0.5, seed=1)
    rebuilt, _ = load_domain_state(save_domain_state(model, tmp_path / "m.pt", backbone), backbone)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert all(torch.equal(rebuilt(x, d), model(x, d)) for d in range(2))
