"""SwitchConv2d: binary forward, straight-through backward, frozen kernel (METHOD §2)."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mdlprune import SwitchConv2d, binarize


def make(num_domains=3, bias=True):
    conv = nn.Conv2d(5, 4, 3, padding=1, bias=bias)
    return conv, SwitchConv2d(conv, num_domains)


def test_initial_state_matches_the_paper():
    conv, sc = make()
    assert sc.switches.shape == (3, 5)
    assert torch.all(sc.switches == 1e-3)
    assert sc.threshold == 0.0
    assert sc.channel_mask(0).dtype == torch.bool and sc.channel_mask(0).all()
    assert not sc.weight.requires_grad and not sc.bias.requires_grad
    assert sc.switches.requires_grad
    assert torch.equal(sc.weight, conv.weight)  # a copy of the pretrained kernel ...
    assert sc.weight.data_ptr() != conv.weight.data_ptr()  # ... not a view of it


def test_all_on_equals_the_wrapped_conv():
    conv, sc = make()
    x = torch.randn(2, 5, 7, 7)
    for d in range(3):
        torch.testing.assert_close(sc(x, d), conv(x), rtol=0, atol=0)


def test_forward_masks_input_channels_per_domain():
    conv, sc = make()
    with torch.no_grad():
        sc.switches[1] = torch.tensor([0.5, -0.1, 0.0, 2.0, -3.0])  # 0.0 is off: the test is s > 0
    assert sc.channel_mask(1).tolist() == [True, False, False, True, False]
    x = torch.randn(2, 5, 6, 6)
    keep = torch.tensor([1.0, 0, 0, 1, 0]).view(1, -1, 1, 1)
    torch.testing.assert_close(sc(x, 1), F.conv2d(x * keep, conv.weight, conv.bias, padding=1))
    torch.testing.assert_close(sc(x, 0), conv(x))  # other domains untouched
    sc.active_domain = 1
    torch.testing.assert_close(sc(x), sc(x, 1), rtol=0, atol=0)


def test_straight_through_gradient():
    """∂L/∂s_{d,c} = ∂L/∂b_{d,c} = Σ_{o,i,j} ∂L/∂W̃[o,c,i,j] · K[o,c,i,j] with W̃ = K·b; the kernel gets none."""
    conv, sc = make()
    with torch.no_grad():
        sc.switches[2] = torch.tensor([0.3, -0.2, 0.1, -0.5, 0.4])
    x = torch.randn(3, 5, 6, 6)
    g_out = torch.randn(3, 4, 6, 6)
    (sc(x, 2) * g_out).sum().backward()

    b = (sc.switches[2] > 0).float().detach().requires_grad_(True)
    (F.conv2d(x, conv.weight.detach() * b.view(1, -1, 1, 1), conv.bias.detach(), padding=1) * g_out).sum().backward()
    torch.testing.assert_close(sc.switches.grad[2], b.grad)
    assert torch.all(sc.switches.grad[[0, 1]] == 0)  # other domains get no gradient from this batch
    assert sc.weight.grad is None and sc.bias.grad is None


def test_binarize_values_and_gradient():
    s = torch.tensor([-1.0, 0.0, 1e-9, 2.0], requires_grad=True)
    b = binarize(s)
    assert b.tolist() == [0.0, 0.0, 1.0, 1.0]
    (b * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert s.grad.tolist() == [1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("groups, out_channels", [(2, 6), (6, 6), (6, 12)])  # grouped, depthwise, depthwise ×2
def test_a_grouped_switch_removes_its_input_channel(groups, out_channels):
    """Eq. 3 unchanged for grouped and depthwise convolutions: switching channel c off in a domain computes the
    convolution of the input with channel c zeroed, and its gradient flows straight through."""
    conv = nn.Conv2d(6, out_channels, 3, padding=1, groups=groups)
    sc = SwitchConv2d(conv, 2)
    with torch.no_grad():
        sc.switches.copy_(torch.tensor([[1, -1, 1, 1, -1, 1], [-1, 1, 1, -1, 1, 1.0]]))
    x = torch.randn(2, 6, 5, 5)
    for d in range(2):
        on = (sc.switches[d] > 0).float().view(1, -1, 1, 1)
        torch.testing.assert_close(sc(x, d), conv(x * on))
    sc(x, 0).square().sum().backward()
    assert sc.switches.grad[0].ne(0).all() and sc.switches.grad[1].eq(0).all()


def test_non_zero_padding_modes_are_supported():
    conv = nn.Conv2d(3, 2, 3, padding=1, padding_mode="reflect")
    sc = SwitchConv2d(conv, 2)
    x = torch.randn(1, 3, 5, 5)
    torch.testing.assert_close(sc(x, 0), conv(x))
