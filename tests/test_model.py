"""UNet: shapes for any input size, parameter counts, gradients, and input validation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unetseg.model import DoubleConv, UNet, UNetConfig, Up

SIZES = [(1, 1), (17, 17), (64, 64), (100, 37), (256, 256)]


def closed_form_parameter_count(base: int, depth: int, upsample: str, in_channels: int,
                                num_classes: int) -> int:
    """Parameters of the seed design counted by hand, independent of the module code.

    DoubleConv(i -> o) = two bias-free 3x3 convs (9*i*o + 9*o*o) and two BatchNorms (2*o each).
    Up with "bilinear" keeps the channels (concat = skip + x); with "transpose" a 2x2
    ConvTranspose halves them and has 4*x*(x/2) weights + x/2 biases. The head is a 1x1 conv.
    """
    def double_conv(i: int, o: int) -> int:
        return 9 * i * o + 2 * o + 9 * o * o + 2 * o

    widths = [base * 2**i for i in range(depth + 1)]
    total = double_conv(in_channels, widths[0])
    total += sum(double_conv(widths[i], widths[i + 1]) for i in range(depth))
    for i in reversed(range(depth)):
        x = widths[i + 1]
        if upsample == "transpose":
            total += 4 * x * (x // 2) + x // 2
            x //= 2
        total += double_conv(widths[i] + x, widths[i])
    return total + widths[0] * num_classes + num_classes


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_count_of_the_seed_configuration():
    """base 32, depth 4, 3 in, 2 classes: the exact figures, also derived by hand above."""
    bilinear = UNet(in_channels=3, num_classes=2, base=32, depth=4, upsample="bilinear")
    transpose = UNet(in_channels=3, num_classes=2, base=32, depth=4, upsample="transpose")
    assert count(bilinear) == 7_849_634
    assert count(transpose) == 7_763_074
    assert count(bilinear) == closed_form_parameter_count(32, 4, "bilinear", 3, 2)
    assert count(transpose) == closed_form_parameter_count(32, 4, "transpose", 3, 2)


@pytest.mark.parametrize("base,depth,upsample", [(64, 4, "transpose"), (16, 3, "bilinear"),
                                                 (8, 5, "transpose"), (12, 2, "bilinear")])
def test_parameter_count_matches_closed_form(base, depth, upsample):
    model = UNet(in_channels=1, num_classes=5, base=base, depth=depth, upsample=upsample)
    assert count(model) == closed_form_parameter_count(base, depth, upsample, 1, 5)


def test_base_64_transpose_is_the_paper_sized_network():
    # The original paper's network (base 64, learned up-convolutions) has about 31.0M weights.
    assert count(UNet(base=64, upsample="transpose")) == 31_037_698


@pytest.mark.parametrize("upsample", ["bilinear", "transpose"])
@pytest.mark.parametrize("norm", ["batch", "group", "instance", "none"])
def test_output_has_input_size_for_any_size(upsample, norm):
    model = UNet(in_channels=3, num_classes=4, base=8, upsample=upsample, norm=norm).eval()
    with torch.no_grad():
        for height, width in SIZES:
            for batch in (1, 2):
                out = model(torch.randn(batch, 3, height, width))
                assert out.shape == (batch, 4, height, width)
                assert torch.isfinite(out).all()


def test_train_mode_works_on_tiny_inputs():
    """BatchNorm needs more than one value per channel in training: two 1x1 images suffice.
    One image whose bottleneck is 1x1 is torch's documented limit; the other norms take it."""
    model = UNet(in_channels=1, num_classes=2, base=4).train()
    assert model(torch.randn(2, 1, 1, 1)).shape == (2, 2, 1, 1)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        model(torch.randn(1, 1, 3, 5))
    for norm in ("group", "instance", "none"):
        model = UNet(in_channels=1, num_classes=2, base=4, norm=norm).train()
        assert model(torch.randn(1, 1, 3, 5)).shape == (1, 2, 3, 5)


@pytest.mark.parametrize("upsample", ["bilinear", "transpose"])
@pytest.mark.parametrize("norm", ["batch", "group", "instance", "none"])
def test_gradient_reaches_every_parameter(upsample, norm):
    torch.manual_seed(0)
    model = UNet(in_channels=3, num_classes=3, base=4, upsample=upsample, norm=norm,
                 dropout=0.1).train()
    logits = model(torch.randn(2, 3, 36, 28))
    F.cross_entropy(logits, torch.randint(0, 3, (2, 36, 28))).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_instance_norm_equals_torch_instance_norm():
    """Our "instance" norm (GroupNorm, one channel per group) is InstanceNorm2d(affine=True)."""
    torch.manual_seed(0)
    ours = UNet(in_channels=2, num_classes=2, base=4, norm="instance").inc[1]
    oracle = nn.InstanceNorm2d(4, affine=True)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2.0)
        ours.bias.uniform_(-1, 1)
        oracle.weight.copy_(ours.weight)
        oracle.bias.copy_(ours.bias)
    x = torch.randn(3, 4, 9, 7)
    torch.testing.assert_close(ours(x), oracle(x), atol=1e-5, rtol=1e-5)


def test_group_norm_equals_torch_where_torch_accepts_the_input():
    from unetseg.model import GroupNorm
    torch.manual_seed(0)
    ours, oracle = GroupNorm(4, 8), nn.GroupNorm(4, 8)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2.0)
        ours.bias.uniform_(-1, 1)
        oracle.load_state_dict(ours.state_dict())
    x = torch.randn(2, 8, 5, 3)
    torch.testing.assert_close(ours(x), oracle(x))
    # One value per group: normalised to 0, so the output is the shift.
    single = GroupNorm(8, 8)(torch.randn(1, 8, 1, 1))
    torch.testing.assert_close(single, torch.zeros(1, 8, 1, 1), atol=1e-4, rtol=0)


def test_group_norm_uses_a_divisor_of_the_channels():
    model = UNet(base=12, norm="group")
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and all(m.num_channels % m.num_groups == 0 for m in norms)
    assert norms[0].num_groups == 4    # gcd(32, 12)


def test_bilinear_up_is_a_x2_upsample_when_the_skip_is_twice_as_large():
    up = Up(in_channels=8, skip_channels=4, out_channels=4, upsample="bilinear")
    x, skip = torch.randn(1, 8, 5, 6), torch.randn(1, 4, 10, 12)
    expected_input = torch.cat(
        [skip, F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)], dim=1)
    torch.testing.assert_close(up(x, skip), up.conv(expected_input))


def test_up_resizes_to_the_skip_when_sizes_differ():
    up = Up(in_channels=8, skip_channels=4, out_channels=4, upsample="transpose")
    assert up(torch.randn(1, 8, 3, 3), torch.randn(1, 4, 5, 7)).shape == (1, 4, 5, 7)


def test_up_channel_mismatch_names_both_shapes():
    up = Up(in_channels=8, skip_channels=4, out_channels=4)
    with pytest.raises(ValueError, match=r"total 12.*\(1, 6, 10, 10\).*\(1, 8, 10, 10\)"):
        up(torch.randn(1, 8, 5, 5), torch.randn(1, 6, 10, 10))


def test_channels_last_input_gives_the_same_logits():
    torch.manual_seed(0)
    model = UNet(base=4).eval()
    x = torch.randn(2, 3, 40, 24)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        found = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(found, expected, atol=1e-5, rtol=1e-5)


def test_dropout_acts_in_training_only():
    torch.manual_seed(0)
    model = UNet(base=4, dropout=0.5)
    x = torch.randn(1, 3, 32, 32)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_config_round_trip_rebuilds_the_same_architecture():
    model = UNet(in_channels=1, num_classes=5, base=8, depth=3, upsample="transpose",
                 norm="group", dropout=0.2)
    rebuilt = UNet.from_config(model.config)
    assert rebuilt.config == model.config
    assert rebuilt.load_state_dict(model.state_dict()) is not None
    assert UNet.from_config(vars(model.config)).config == model.config


@pytest.mark.parametrize("bad, message", [
    (torch.randn(3, 32, 32), r"4-D float.*found 3-D"),
    (torch.randint(0, 255, (1, 3, 32, 32)), r"4-D float.*torch.int64"),
    (torch.randn(1, 1, 32, 32), r"expects 3 input channels, found 1"),
    (torch.randn(1, 4, 32, 32), r"expects 3 input channels, found 4"),
])
def test_bad_input_names_expected_and_found(bad, message):
    with pytest.raises(ValueError, match=message):
        UNet(base=4)(bad)


@pytest.mark.parametrize("kwargs, message", [
    ({"upsample": "nearest"}, r"upsample must be one of .*'nearest'"),
    ({"norm": "layer"}, r"norm must be one of .*'layer'"),
    ({"depth": 0}, r"depth must be a positive integer, found 0"),
    ({"num_classes": 0}, r"num_classes must be a positive integer"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\), found 1.0"),
])
def test_bad_configuration_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UNetConfig(**kwargs)
    with pytest.raises(ValueError, match=message):
        UNet(**kwargs)


def test_double_conv_has_no_bias_when_a_norm_follows():
    assert all(m.bias is None for m in DoubleConv(3, 8, "batch") if isinstance(m, nn.Conv2d))
    assert all(m.bias is not None for m in DoubleConv(3, 8, "none") if isinstance(m, nn.Conv2d))
