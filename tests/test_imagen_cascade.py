"""Imagen's cascade (dlcourse.systems.cascade): noise-conditioning augmentation and the super-resolution denoiser."""

import math

import numpy as np
import pytest
import torch

from dlcourse.checkpoints import build_model, load_checkpoint, model_config, save_checkpoint
from dlcourse.models import UNetConfig
from dlcourse.schedules import cosine_schedule, get_schedule
from dlcourse.systems.cascade import (SuperResolutionUNet, augment_low_res, detail_energy,
                                      noise_conditioning_augmentation, super_resolution_loss, super_resolve, upsample)

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = UNetConfig(in_channels=6, out_channels=3, base_channels=8, channel_mults=(1, 2), attention=False,
                   num_heads=2, groups=4)


def small_model(seed=0, T=100):
    torch.manual_seed(seed)
    return SuperResolutionUNet(SMALL, T=T)


def test_augmentation_is_the_forward_process_at_each_samples_own_level():
    schedule = get_schedule("cosine", 1000)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 3, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(3, 3, 8, 8, generator=g, dtype=torch.float64)
    s = torch.tensor([0, 250, 900])
    out = noise_conditioning_augmentation(image, s, schedule, noise)
    ab = schedule.alphas_cumprod.double().numpy()
    for b, level in enumerate(s.tolist()):                      # one sample at a time, in numpy
        want = math.sqrt(ab[level]) * image[b].numpy() + math.sqrt(1 - ab[level]) * noise[b].numpy()
        np.testing.assert_allclose(out[b].numpy(), want, rtol=1e-6, atol=1e-6)
    assert out.dtype == image.dtype and out.shape == image.shape
    # an int is the same level for every sample; level 0 leaves the image nearly untouched, the last is noise
    assert torch.equal(noise_conditioning_augmentation(image, 250, schedule, noise),
                       noise_conditioning_augmentation(image, torch.full((3,), 250), schedule, noise))
    assert float((out[0] - image[0]).abs().max()) < 0.05
    last = noise_conditioning_augmentation(image, 999, schedule, noise)
    assert float((last - noise).abs().max()) < 1e-3


@pytest.mark.parametrize("kwargs, match", [
    (dict(image=torch.zeros(2, 3, 8)), "image"),
    (dict(noise=torch.zeros(2, 3, 4, 4)), "noise"),
    (dict(noise_level=1000), "noise_level"),
    (dict(noise_level=-1), "noise_level"),
    (dict(noise_level=torch.tensor([1, 2, 3])), "noise_level"),
    (dict(noise_level=torch.tensor([0.5, 0.2])), "noise_level"),
    (dict(schedule="cosine"), "schedule"),
])
def test_augmentation_bad_input_names_the_argument(kwargs, match):
    args = dict(image=torch.zeros(2, 3, 8, 8), noise_level=torch.tensor([1, 2]), schedule=cosine_schedule(1000),
                noise=torch.zeros(2, 3, 8, 8))
    with pytest.raises((TypeError, ValueError), match=match):
        noise_conditioning_augmentation(**{**args, **kwargs})


def test_the_model_reads_the_upsampled_image_and_starts_blind_to_the_level():
    model = small_model()
    x = torch.randn(2, 3, 16, 16)
    image = torch.randn(2, 3, 8, 8)
    out = model(x, torch.tensor([5, 50]), {"image": image, "noise_level": torch.tensor([0, 0])})
    assert out.shape == (2, 3, 16, 16)
    with torch.no_grad():                                       # every U-Net weight non-zero: an output that
        for q in model.unet.parameters():                       # depends on every input
            q.normal_(0, 0.2)
    a = model(x, 5, {"image": image, "noise_level": 0})
    b = model(x, 5, {"image": image + 1, "noise_level": 0})
    assert not torch.allclose(a, b)                             # the image is read
    # the level's embedding ends in a zero layer: a new model ignores it, a trained one need not
    assert torch.equal(a, model(x, 5, {"image": image, "noise_level": 60}))
    assert torch.equal(a, model(x, 5, {"image": image}))        # no level is level 0
    torch.nn.init.normal_(model.noise_level_embed.mlp[2].weight)
    assert not torch.allclose(a, model(x, 5, {"image": image, "noise_level": 60}))
    assert torch.allclose(upsample(torch.ones(1, 3, 8, 8), 16), torch.ones(1, 3, 16, 16))


@pytest.mark.parametrize("cond, match", [
    (None, "cond"), ({"noise_level": 0}, "image"), ({"image": torch.zeros(2, 3, 8, 8), "label": 1}, "label"),
    ({"image": torch.zeros(2, 1, 8, 8)}, "image"),
    ({"image": torch.zeros(2, 3, 8, 8), "noise_level": 100}, "noise_level"),
])
def test_the_model_refuses_a_bad_cond(cond, match):
    with pytest.raises((TypeError, ValueError), match=match):
        small_model()(torch.zeros(2, 3, 16, 16), 1, cond)


def test_a_config_that_cannot_hold_the_image_is_refused():
    with pytest.raises(ValueError, match="in_channels"):
        SuperResolutionUNet(UNetConfig(in_channels=3, base_channels=8, groups=4, num_heads=2))


def test_the_loss_augments_with_its_own_stream_and_without_augmentation_passes_the_clean_image():
    schedule = cosine_schedule(100)
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x_t, t, cond=None):
            seen.append((x_t.clone(), t.clone(), {k: v.clone() for k, v in cond.items()}))
            return torch.zeros_like(x_t) + self.anchor

    x_0, image = torch.rand(6, 3, 8, 8) * 2 - 1, torch.rand(6, 3, 4, 4) * 2 - 1
    for max_level in (None, 60):
        super_resolution_loss(Probe(), x_0, image, schedule, max_noise_level=max_level,
                              generator=torch.Generator().manual_seed(0),
                              aug_generator=torch.Generator().manual_seed(1))
    (x_a, t_a, c_a), (x_b, t_b, c_b) = seen
    assert torch.equal(x_a, x_b) and torch.equal(t_a, t_b)       # same t and noise of x_t with and without
    assert torch.equal(c_a["image"], image) and not c_a["noise_level"].any()
    s = c_b["noise_level"]
    assert int(s.min()) >= 0 and int(s.max()) <= 60 and len(set(s.tolist())) > 1
    ab = schedule.alphas_cumprod[s].view(-1, 1, 1, 1)
    eps = (c_b["image"] - ab.sqrt() * image) / (1 - ab).sqrt()    # the noise it used, standard normal
    assert 0.5 < float(eps.std()) < 1.5
    with pytest.raises(ValueError, match="max_noise_level"):
        super_resolution_loss(Probe(), x_0, image, schedule, max_noise_level=100)


def test_training_a_few_steps_lowers_the_loss():
    schedule = cosine_schedule(100)
    model = small_model()
    g = torch.Generator().manual_seed(0)
    hi = torch.rand(8, 3, 16, 16, generator=g).round() * 2 - 1
    lo = torch.nn.functional.avg_pool2d(hi, 2)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)

    def loss(seed):
        return super_resolution_loss(model, hi, lo, schedule, max_noise_level=30,
                                     generator=torch.Generator().manual_seed(seed),
                                     aug_generator=torch.Generator().manual_seed(seed + 1))

    with torch.no_grad():
        before = sum(float(loss(k)) for k in range(4))
    for step in range(80):
        opt.zero_grad()
        loss(step).backward()
        opt.step()
    with torch.no_grad():
        after = sum(float(loss(k)) for k in range(4))
    assert after < 0.85 * before


def test_super_resolve_is_seeded_and_the_level_matters(tmp_path):
    model = small_model()
    torch.nn.init.normal_(model.unet.conv_out.weight, std=0.1)
    torch.nn.init.normal_(model.noise_level_embed.mlp[2].weight)
    image = torch.rand(2, 3, 8, 8) * 2 - 1
    schedule = cosine_schedule(100)
    a = super_resolve(model, image, schedule, noise_level=10, num_inference_steps=3, seed=4)
    assert a.shape == (2, 3, 16, 16) and float(a.abs().max()) <= 1
    assert torch.equal(a, super_resolve(model, image, schedule, noise_level=10, num_inference_steps=3, seed=4))
    assert not torch.equal(a, super_resolve(model, image, schedule, noise_level=0, num_inference_steps=3, seed=4))
    with pytest.raises(ValueError, match="noise_level"):
        super_resolve(model, image, schedule, noise_level=100)
    # the model saves and loads as any registered model
    digest = save_checkpoint(tmp_path / "sr.pt", model, model_config(model))
    back = build_model(load_checkpoint(tmp_path / "sr.pt", sha256=digest))
    assert torch.equal(a, super_resolve(back, image, schedule, noise_level=10, num_inference_steps=3, seed=4))


def test_detail_energy_is_zero_for_flat_images_and_grows_with_sharp_edges():
    assert detail_energy(torch.full((2, 3, 8, 8), 0.3)) == pytest.approx(0.0, abs=1e-12)
    edge = -torch.ones(1, 3, 8, 8)
    edge[..., 3:] = 1                                            # an edge inside a 2x2 block: detail to add
    assert detail_energy(edge) > 0.01
    smooth = upsample(torch.nn.functional.avg_pool2d(edge, 2), 8)
    assert detail_energy(smooth) < detail_energy(edge)
    with pytest.raises(ValueError, match="images"):
        detail_energy(torch.zeros(1, 3, 7, 7))


def test_augment_low_res_draws_a_level_per_sample_in_training_and_uses_one_at_sampling():
    schedule = cosine_schedule(1000)
    image = torch.rand(64, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cond = augment_low_res(image, schedule, max_noise_level=300, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)                         # the documented draws: levels, then noise
    s = torch.randint(0, 301, (64,), generator=g)
    noise = torch.randn(image.shape, generator=g)
    assert torch.equal(cond["noise_level"], s) and len(set(s.tolist())) > 30
    assert torch.allclose(cond["image"], noise_conditioning_augmentation(image, s, schedule, noise))
    fixed = augment_low_res(image, schedule, noise_level=120, generator=torch.Generator().manual_seed(1))
    assert torch.equal(fixed["noise_level"], torch.full((64,), 120))
    noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(1))
    want = noise_conditioning_augmentation(image, 120, schedule, noise)
    assert torch.allclose(fixed["image"], want)
    # the largest level is drawn too (randint's bound is exclusive)
    small = augment_low_res(image, schedule, max_noise_level=1, generator=torch.Generator().manual_seed(2))
    assert set(small["noise_level"].tolist()) == {0, 1}
    for kwargs in (dict(), dict(noise_level=3, max_noise_level=4), dict(noise_level=1000), dict(max_noise_level=-1)):
        with pytest.raises((TypeError, ValueError), match="noise_level"):
            augment_low_res(image, schedule, **kwargs)


def test_a_residual_model_starts_at_the_bilinear_enlargement_and_keeps_its_flag_when_saved(tmp_path):
    torch.manual_seed(0)
    model = SuperResolutionUNet(SMALL, T=100, residual=True)
    image = torch.rand(2, 3, 8, 8) * 2 - 1
    out = model(torch.randn(2, 3, 16, 16), 50, {"image": image, "noise_level": 3})
    assert torch.allclose(out, upsample(image, 16))               # conv_out starts at zero
    x = super_resolve(model, image, cosine_schedule(100), num_inference_steps=4, prediction_type="sample")
    assert torch.allclose(x, upsample(image, 16).clamp(-1, 1), atol=1e-5)
    save_checkpoint(tmp_path / "r.pt", model, model_config(model))
    assert build_model(load_checkpoint(tmp_path / "r.pt")).residual is True
    with pytest.raises(TypeError, match="residual"):
        SuperResolutionUNet(SMALL, residual=1)
