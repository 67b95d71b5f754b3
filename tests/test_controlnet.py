"""ControlNet: zero convolutions, the residual injection, equality with the base at initialisation, the shipped model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlcourse.conditioning import load_text_to_image
from dlcourse.conditioning.controlnet import (ControlledModel, ControlNet, add_control, check_control,
                                              control_following, controlnet_parameters, load_controlnet, mask_iou,
                                              shape_masks, train_controlnet, zero_conv)
from dlcourse.data import make_shapes
from dlcourse.loop import TrainConfig
from dlcourse.models import UNet, UNetConfig
from dlcourse.samplers import sample_ddim
from dlcourse.schedules import get_schedule


@pytest.fixture(scope="module")
def pipe():
    return load_text_to_image("shapes16_unet_text", device="cpu")[0]


@pytest.fixture(scope="module")
def data():
    return make_shapes(4, size=16, seed=11)


def _inputs(pipe, data):
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 16, 16, generator=g), torch.tensor([10, 300, 600, 900]), pipe.cond(data.captions)


def _perturb(controlnet, std=0.1):
    """Make the zero convs and the hint's last conv non-zero, as training would."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for z in [*controlnet.zero_convs, controlnet.mid_zero_conv, controlnet.hint[-1]]:
            z.weight.copy_(torch.randn(z.weight.shape, generator=g) * std)
            z.bias.copy_(torch.randn(z.bias.shape, generator=g) * std)


def test_zero_conv_is_a_zero_1x1_conv_whose_weight_still_gets_a_gradient():
    z = zero_conv(5)
    assert isinstance(z, nn.Conv2d) and tuple(z.kernel_size) == (1, 1) and z.in_channels == z.out_channels == 5
    x = torch.randn(2, 5, 3, 3)
    assert torch.equal(z(x), torch.zeros(2, 5, 3, 3))
    upstream = torch.randn(2, 5, 3, 3)
    (z(x) * upstream).sum().backward()
    # dL/dW[o, i] = sum over positions of upstream[o] * x[i]: the input, not the (zero) weight
    expected = torch.einsum("bohw,bihw->oi", upstream, x)
    torch.testing.assert_close(z.weight.grad[:, :, 0, 0], expected)
    with pytest.raises(ValueError, match="channels"):
        zero_conv(0)


def test_add_control_adds_each_residual_to_its_own_skip_and_leaves_the_inputs():
    skips = [torch.randn(1, 2, 4, 4) for _ in range(3)]
    res = [torch.randn(1, 2, 4, 4) for _ in range(3)]
    h, mid = torch.randn(1, 2, 2, 2), torch.randn(1, 2, 2, 2)
    kept = [s.clone() for s in skips] + [h.clone()]
    new_skips, new_h = add_control(skips, h, res, mid, 0.5)
    for s, r, n in zip(skips, res, new_skips):
        torch.testing.assert_close(n, s + 0.5 * r)
    torch.testing.assert_close(new_h, h + 0.5 * mid)
    assert all(torch.equal(a, b) for a, b in zip(skips + [h], kept))
    with pytest.raises(ValueError, match="down_residuals: expected 3"):
        add_control(skips, h, res[:2], mid)


def test_the_copy_starts_from_the_base_weights(pipe):
    controlnet = ControlNet.from_base(pipe.unet)
    base = pipe.unet.state_dict()
    keys = controlnet.copied_keys()
    assert keys and all(torch.equal(controlnet.state_dict()[k], base[k]) for k in keys)
    assert not any(k.startswith(("up.", "conv_out", "norm_out")) for k in controlnet.state_dict())
    assert len(controlnet.zero_convs) == len(pipe.unet.skip_channels)


def test_at_initialisation_the_controlled_model_equals_the_base_exactly(pipe, data):
    x, t, cond = _inputs(pipe, data)
    model = ControlledModel(pipe, ControlNet.from_base(pipe.unet), control=data.edges)
    with torch.no_grad():
        assert torch.equal(model(x, t, cond), pipe(x, t, cond))
        assert torch.equal(model(x, t, None), pipe(x, t, None))          # the empty prompt too


def test_a_class_conditional_base_works_the_same_way():
    torch.manual_seed(0)
    unet = UNet(UNetConfig(base_channels=16, channel_mults=(1, 2), num_classes=4, groups=4))
    with torch.no_grad():                                             # a fresh U-Net's output conv is zero
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model = ControlledModel(unet, ControlNet.from_base(unet), control=-torch.ones(1, 1, 8, 8))
    x, t, labels = torch.randn(3, 3, 8, 8), torch.tensor([1, 50, 900]), torch.tensor([0, 2, 4])
    with torch.no_grad():
        assert torch.equal(model(x, t, labels), unet(x, t, labels))
        _perturb(model.controlnet)
        assert not torch.allclose(model(x, t, labels), unet(x, t, labels))


def test_trained_residuals_go_where_the_unet_itself_puts_them(pipe, data):
    """Against the U-Net's own injection path (cond['down_residuals'], cond['mid_residual'])."""
    x, t, cond = _inputs(pipe, data)
    controlnet = ControlNet.from_base(pipe.unet)
    _perturb(controlnet)
    model = ControlledModel(pipe, controlnet, control=data.edges, conditioning_scale=0.7)
    with torch.no_grad():
        down, mid = controlnet(x, t, data.edges, cond)
        want = pipe.unet(x, t, {**cond, "down_residuals": [0.7 * r for r in down], "mid_residual": 0.7 * mid})
        got = model(x, t, cond)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(got, pipe(x, t, cond), atol=1e-3)
        # the control acts on the empty prompt's prediction too (both halves of guidance)
        assert not torch.allclose(model(x, t, None), pipe(x, t, None), atol=1e-3)
        model.conditioning_scale = 0
        assert torch.equal(model(x, t, cond), pipe(x, t, cond))


def test_gradients_reach_the_zero_convs_and_not_the_base(pipe, data):
    x, t, cond = _inputs(pipe, data)
    controlnet = ControlNet.from_base(pipe.unet)
    model = ControlledModel(pipe, controlnet, control=data.edges).train()
    assert not any(p.requires_grad for p in pipe.parameters())
    (model(x, t, cond) ** 2).mean().backward()
    for z in [*controlnet.zero_convs, controlnet.mid_zero_conv]:
        assert z.weight.grad is not None and float(z.weight.grad.abs().sum()) > 0
    # behind the zero convs nothing moves at the first step
    assert float(controlnet.hint[-1].weight.grad.abs().sum()) == 0
    assert all(p.grad is None for p in pipe.parameters())
    assert not pipe.training                                          # the frozen base stays in eval mode


def test_controlnet_parameters_freezes_the_base_and_returns_the_controlnet(pipe):
    model = ControlledModel(pipe, ControlNet.from_base(pipe.unet))
    pipe.unet.requires_grad_(True)
    model.controlnet.hint.requires_grad_(False)
    try:
        params = controlnet_parameters(model)
        assert {id(p) for p in params} == {id(p) for p in model.controlnet.parameters()}
        assert all(p.requires_grad for p in params)
        assert not any(p.requires_grad for p in pipe.parameters())
    finally:
        pipe.requires_grad_(False)


def test_training_changes_the_controlnet_and_not_the_base(pipe):
    data = make_shapes(64, size=16, seed=12)
    torch.manual_seed(0)
    model = ControlledModel(pipe, ControlNet.from_base(pipe.unet))
    base_before = {k: v.clone() for k, v in pipe.state_dict().items()}
    config = TrainConfig(steps=3, lr=1e-3, ema_decay=None, seed=0, precision="fp32", device="cpu", progress=False)
    result = train_controlnet(model, data.images, data.edges, data.captions, get_schedule("cosine", 1000),
                              batch_size=8, config=config)
    assert result.steps == 3 and model.control is None
    assert all(torch.equal(base_before[k], v) for k, v in pipe.state_dict().items())
    assert float(model.controlnet.mid_zero_conv.weight.detach().abs().sum()) > 0


def test_samplers_and_guidance_run_unchanged(pipe, data):
    schedule = get_schedule("cosine", 1000)
    controlnet = ControlNet.from_base(pipe.unet)
    model = ControlledModel(pipe, controlnet, control=data.edges)
    x_T = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    kw = dict(cond=pipe.cond(data.captions), guidance_scale=3.0, prediction_type="v_prediction", progress=False)
    with torch.no_grad():
        assert torch.equal(sample_ddim(model, x_T, schedule, 3, **kw), sample_ddim(pipe, x_T, schedule, 3, **kw))
        _perturb(controlnet)
        assert not torch.allclose(sample_ddim(model, x_T, schedule, 3, **kw), sample_ddim(pipe, x_T, schedule, 3, **kw))


def test_bad_controls_get_clear_errors(pipe, data):
    model = ControlledModel(pipe, ControlNet.from_base(pipe.unet))
    x, t, cond = _inputs(pipe, data)
    with pytest.raises(ValueError, match=r"control: expected an edge map of shape \(4 or 1, 1, 16, 16\)"):
        model.controlnet(x, t, data.images, cond)                      # an RGB image, not an edge map
    with pytest.raises(ValueError, match="control: expected an edge map"):
        model.set_control(data.edges[:2])(x, t, cond)                  # 2 controls for 4 images
    with pytest.raises(ValueError, match="control: expected an edge map"):
        model.set_control(-torch.ones(1, 1, 8, 8))(x, t, cond)
    with pytest.raises(ValueError, match=r"got values in \[0, 1.5\]$"):
        model.set_control(data.masks * 1.5)
    with pytest.raises(ValueError, match=r"background of -1.*2 \* m - 1"):
        model.set_control(data.masks)                                  # a [0, 1] map: the message says how
    with pytest.raises(ValueError, match=r"values in \[-1, 1\]"):
        model.set_control(data.edges * 3)
    model.set_control(-torch.ones(1, 1, 16, 16))                      # a blank control is fine
    with pytest.raises(TypeError, match="control: expected a torch.Tensor"):
        check_control([[0.0]], (1, 3, 16, 16))
    with pytest.raises(ValueError, match="dimensions"):
        model.set_control(data.edges[0])
    other = UNet(UNetConfig(base_channels=16, channel_mults=(1, 2), groups=4))
    with pytest.raises(ValueError, match="controlnet: built for a U-Net of another config"):
        ControlledModel(pipe, ControlNet.from_base(other))
    with pytest.raises(TypeError, match="controlnet: expected a ControlNet"):
        ControlledModel(pipe, other)
    # one control for the whole batch is broadcast
    with torch.no_grad():
        model.set_control(data.edges[:1])(x, t, cond)


def test_mask_iou_and_shape_masks():
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    b = torch.zeros(2, 4, 4, dtype=torch.bool)
    a[0, :2, :2], b[0, :2, :] = True, True                             # 4 of 8 pixels shared
    torch.testing.assert_close(mask_iou(a, b), torch.tensor([0.5, 1.0]))  # two empty masks count as equal
    data = make_shapes(50, size=16, seed=3)
    masks = shape_masks(data.images)
    # the mask read from the pixels covers the shape: at least as many pixels as are half covered
    assert bool(((masks & (data.masks[:, 0] > 0.5)).sum((1, 2)) == (data.masks[:, 0] > 0.5).sum((1, 2))).all())
    assert float(mask_iou(masks, data.masks[:, 0] > 0.5).mean()) > 0.8


def test_control_following_reads_the_real_images_as_perfect():
    from dlcourse.judge import load_judge

    data = make_shapes(32, size=16, seed=5)
    r = control_following(load_judge(16), data.images, data, data.colors)
    assert r.iou == 1.0 and r.position == 1.0 and r.color > 0.95 and r.shape > 0.95
    with pytest.raises(ValueError, match="data: expected 8 controls"):
        control_following(load_judge(16), data.images[:8], data)


def test_shipped_controlnet_loads_verified_and_beats_no_control():
    from dlcourse.judge import load_judge
    from dlcourse.pretrained import pretrained_path

    path = pretrained_path("controlnet_shapes16")
    assert path.stat().st_size <= 2_000_000
    model, info = load_controlnet(device="cpu")
    assert info["base"] == "shapes16_unet_text" and info["stored_dtype"] == "float16"
    assert not any(p.requires_grad for p in model.base.parameters())
    data = make_shapes(48, size=16, seed=21)
    data_idx = torch.arange(24)
    from dataclasses import replace
    data = replace(data, **{k: getattr(data, k)[data_idx] for k in
                            ("images", "labels", "colors", "scales", "positions", "edges", "masks", "centers", "radii")},
                   captions=data.captions[:24])
    schedule = get_schedule(info["schedule"], info["T"])
    x_T = torch.randn(24, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    cond = model.pipe.cond([""] * 24)
    kw = dict(cond=cond, prediction_type=info["prediction_type"], progress=False)
    judge = load_judge(16)
    with torch.no_grad():
        without = control_following(judge, sample_ddim(model.set_control(None), x_T, schedule, 10, **kw), data)
        with_control = control_following(judge, sample_ddim(model.set_control(data.edges), x_T, schedule, 10, **kw),
                                         data)
    assert with_control.iou > without.iou + 0.3, (with_control, without)
    assert with_control.position > without.position + 0.3, (with_control, without)
