"""MACs (THOP + our rules), parameter memory, S-score: against hand counts and the paper's Table 1."""

import pytest
import torch
import torchvision
from helpers import TinyNet
from test_prune import tiny_model
from torch.utils.flop_counter import FlopCounterMode

from mdlprune import count_macs, param_bits, prune, randomize_switches, relative_param_bits, s_score, to_multidomain
from mdlprune.method.macs import relative_macs, switch_costs
from mdlprune.method.metrics import DECATHLON_BASELINE, s_o, s_p, s_score_terms

# Hand counts for tiny_model() on one 8×8 image (THOP's conventions: a conv output element costs
# C_in·k² MACs, a BatchNorm element 4 ops (2, doubled when affine), the 8×8 adaptive average pool
# (64 + 1)·6, a linear layer in_features per output).
#   conv1: 4 filters × 64 positions;  domain 0 reads {0, 2}, domain 1 reads {0}
#   conv2: 6 filters × 64 positions;  domain 0 reads {1, 3}, domain 1 reads {1, 2}
POOL, BN1, BN2 = 65 * 6, 4 * 4 * 64, 4 * 6 * 64


def test_switch_model_mask_aware_hand_count():
    model = tiny_model()
    d0 = 4 * 64 * 2 * 9 + BN1 + 6 * 64 * 2 * 9 + BN2 + POOL + 6 * 5
    d1 = 4 * 64 * 1 * 9 + BN1 + 6 * 64 * 2 * 9 + BN2 + POOL + 6 * 7
    dense = 4 * 64 * 3 * 9 + BN1 + 6 * 64 * 4 * 9 + BN2 + POOL + 6 * 5
    assert count_macs(model, (3, 8, 8), 0) == d0
    assert count_macs(model, (3, 8, 8), 1) == d1
    assert count_macs(model, (3, 8, 8), 0, mask_aware=False) == dense
    assert count_macs(TinyNet(num_classes=5), (3, 8, 8)) == dense  # the single-domain backbone
    assert count_macs(model, (4, 3, 8, 8), 0) == 4 * d0


def test_pruned_model_hand_count():
    pruned = prune(tiny_model())
    # conv1 keeps inputs {0, 2} and 3 filters (conv2 never reads channel 0); bn1 keeps 3 channels;
    # conv2 keeps inputs {1, 2, 3}, with per-domain masks (domain 0 uses 2 of them).
    bn1 = 4 * 3 * 64
    mask_aware_d0 = 3 * 64 * 2 * 9 + bn1 + 6 * 64 * 2 * 9 + BN2 + POOL + 6 * 5
    # an eval pass convolves conv2 over domain 0's two channels alone: executed = needed for an ungrouped layer
    assert count_macs(pruned, (3, 8, 8), 0, mask_aware=False) == count_macs(pruned, (3, 8, 8), 0) == mask_aware_d0
    total, per_layer = count_macs(pruned, (3, 8, 8), 0, mask_aware=False, by_layer=True)
    assert per_layer == {"conv1": 3 * 64 * 2 * 9, "conv2": 6 * 64 * 2 * 9, "fc.heads.0": 6 * 5}
    _, per_layer = count_macs(pruned, (3, 8, 8), 1, mask_aware=False, by_layer=True)
    assert per_layer["conv1"] == 3 * 64 * 1 * 9  # domain 1 reads one input channel of conv1


def flop_counter_macs(model, x, *args):
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, *args)
    counts = counter.get_flop_counts()["Global"]
    return sum(v for op, v in counts.items() if "convolution" in str(op) or "mm" in str(op)) // 2  # 2 FLOPs per MAC


def test_conv_macs_agree_with_torch_flop_counter():
    model = randomize_switches(to_multidomain(torchvision.models.resnet18(), [10, 20]), 0.5, seed=4).eval()
    pruned = prune(model)
    x = torch.zeros(1, 3, 64, 64)
    for m in (model, pruned):  # the dense kernels, as FlopCounterMode sees them
        _, per_layer = count_macs(m, (3, 64, 64), 1, mask_aware=False, by_layer=True)
        assert sum(per_layer.values()) == flop_counter_macs(m, x, 1)
    backbone = torchvision.models.resnet18()
    _, per_layer = count_macs(backbone, (3, 64, 64), by_layer=True)
    assert sum(per_layer.values()) == flop_counter_macs(backbone, x)


def test_count_macs_does_not_mutate_the_model():
    model = tiny_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, (3, 8, 8), 1)
    assert model.training
    after = model.state_dict()
    assert before.keys() == after.keys()  # no THOP buffers left behind
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics untouched
    assert all(not m._forward_hooks for m in model.modules())


def test_relative_macs_and_switch_costs():
    model = tiny_model()
    backbone = TinyNet(num_classes=5)
    expected = (count_macs(model, (3, 8, 8), 0) + count_macs(model, (3, 8, 8), 1)) / (2 * count_macs(backbone, (3, 8, 8)))
    assert relative_macs(model, backbone, (3, 8, 8)) == pytest.approx(expected)
    assert switch_costs(model, "params").tolist() == [36.0] * 3 + [54.0] * 4  # O·k² per input channel
    assert switch_costs(model, "macs", (3, 8, 8)).tolist() == [36.0 * 64] * 3 + [54.0 * 64] * 4
    with pytest.raises(ValueError, match="need the input_size"):
        switch_costs(model, "macs")


def test_count_macs_rejects_bad_sizes():
    with pytest.raises(ValueError, match=r"input_size must be \(C, H, W\)"):
        count_macs(TinyNet(), (8, 8))


# -- parameter memory -----------------------------------------------------------------------------------
def test_param_bits_hand_count():
    # backbone without its head: conv1 3·4·9, bn1 4 floats × 4 channels, conv2 4·6·9 + 6 bias, bn2 4 × 6
    assert param_bits(TinyNet()) == 32 * (108 + 16 + 222 + 24)
    # two domains: kernels once, BN per domain, 1 bit per switch (2 × (3 + 4)), heads excluded
    model = tiny_model()
    assert param_bits(model) == 32 * (108 + 222 + 2 * (16 + 24)) + 14
    # pruned: conv1 3·2·9, its 3-bit input gather and 2×2 mask bits; bn1 3 channels × 4 × 2 domains;
    # conv2 6·3·9 + 6 bias and 2×3 mask bits; bn2 6 × 4 × 2
    assert param_bits(prune(model)) == 32 * (54 + 24 + 168 + 48) + 3 + 4 + 6
    assert relative_param_bits(prune(model), TinyNet()) == pytest.approx((32 * 294 + 13) / (32 * 370))


def test_ba2_style_model_costs_about_one_backbone():
    backbone = torchvision.models.resnet18()
    model = to_multidomain(backbone, [10] * 10)  # one backbone + 10 × (switches + BN), as BA² (≈ 1.03)
    assert 1.0 < relative_param_bits(model, backbone) < 1.03


# -- S-score --------------------------------------------------------------------------------------------
# ICIAP'23 Table 1 (accuracies %, in the order of DECATHLON_BASELINE) and its S column.
TABLE1 = {
    "Feature": ([59.7, 23.3, 63.1, 80.3, 45.4, 68.2, 73.7, 58.8, 43.5, 26.8], 544),
    "Finetune": ([59.9, 60.3, 82.1, 92.8, 55.5, 97.5, 81.4, 87.7, 96.6, 51.2], 2500),
    "BA2 b=1.00": ([56.9, 49.9, 78.1, 95.5, 55.1, 99.4, 86.1, 88.7, 96.9, 50.2], 3199),
    "BA2 b=0.75": ([56.9, 47.0, 78.4, 95.3, 55.0, 99.2, 85.6, 88.8, 96.8, 48.7], 3063),
    "BA2 b=0.50": ([56.9, 45.7, 76.6, 95.0, 55.2, 99.4, 83.3, 88.9, 96.9, 46.8], 2999),
    "BA2 b=0.25": ([56.9, 42.2, 71.0, 93.4, 52.4, 99.1, 82.0, 88.5, 96.9, 43.9], 2538),
    "Ours b=1.00": ([56.9, 37.3, 80.2, 95.1, 57.9, 98.6, 84.6, 83.8, 96.0, 45.8], 2512),
    "Ours b=0.75": ([56.9, 42.6, 75.3, 95.0, 56.1, 98.6, 82.8, 87.2, 96.0, 44.7], 2444),
    "Ours b=0.50": ([56.9, 42.1, 73.7, 96.8, 51.3, 98.7, 81.4, 87.1, 96.1, 45.4], 2552),
    "Ours b=0.25": ([56.9, 33.6, 67.9, 95.3, 44.9, 98.2, 75.1, 87.4, 96.1, 43.0], 1942),
}


@pytest.mark.parametrize("row", list(TABLE1))
def test_s_score_reproduces_table_1(row):
    accuracies, paper_s = TABLE1[row]
    s = s_score(accuracies, list(DECATHLON_BASELINE.values()))
    assert s == pytest.approx(paper_s, rel=0.02)


def test_s_score_terms_and_ratios():
    assert s_score_terms([50.0, 90.0, 0.0], [50.0, 80.0, 80.0]) == pytest.approx([250.0, 562.5, 0.0])
    named = s_score({"a": 90.0, "b": 50.0}, {"b": 50.0, "a": 80.0})  # matched by name, not position
    assert named == pytest.approx(562.5 + 250.0)
    assert s_o(3000.0, 0.5) == 6000.0 and s_p(3000.0, 0.75) == 4000.0
    # the paper's S_O and S_P columns, e.g. Ours β = 0.50: S 2552, FLOP 0.447, Params 0.783
    assert s_o(2552, 0.447) == pytest.approx(5709, rel=1e-3)
    assert s_p(2552, 0.783) == pytest.approx(3259, rel=1e-3)


def test_s_score_bad_input():
    with pytest.raises(ValueError, match="2 accuracies but 3 baseline accuracies"):
        s_score([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="accuracy 120.0 is not a percentage"):
        s_score([120.0], [80.0])
    with pytest.raises(ValueError, match="baseline accuracy -1.0 is not a percentage"):
        s_score([50.0], [-1.0])
    with pytest.raises(ValueError, match=r"no baseline accuracy for domains \['c'\]"):
        s_score({"c": 50.0}, {"a": 50.0})
