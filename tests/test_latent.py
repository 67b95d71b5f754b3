"""dlcourse.latent against answers that can be checked independently: the KL's closed form against a
Monte-Carlo estimate and torch.distributions, the reparameterised sample's moments, unit-variance latents,
the latent loss against a computation by hand on the same draws, generation with the exact denoiser of
Gaussian latents, the model fed on its own device, bad inputs, and the shipped latent model."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlcourse.latent import (VAELoss, compression_factor, decode, encode, generate, kl_to_standard_normal,
                             latent_diffusion_loss, latent_scale_factor, reparameterize, vae_loss)
from dlcourse.models import VAE, VAEConfig
from dlcourse.schedules import cosine_schedule, linear_schedule

from conftest import MetaProbe

pytestmark = pytest.mark.usefixtures("one_thread")


def small_vae() -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(base_channels=8, channel_mults=(1, 2, 2), groups=4)).eval()


def images(n, seed=0):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


class LinearVAE(nn.Module):
    """A stand-in VAE with known latents: mean = gain * (4x4 average of x, and its first channel again),
    logvar = -2; decode = the first 3 latent channels, nearest-upsampled 4x."""

    latent_shape, image_shape = (4, 8, 8), (3, 32, 32)

    def __init__(self, gain=5.0):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(gain))

    def encode(self, x):
        m = self.gain * F.avg_pool2d(x, 4)                                 # (B, 3, 8, 8)
        mean = torch.cat([m, m[:, :1]], dim=1)                              # (B, 4, 8, 8)
        return mean, torch.full_like(mean, -2.0)

    def decode(self, z):
        return F.interpolate(z[:, :3], scale_factor=4, mode="nearest")


# --- the VAE's pieces --------------------------------------------------------------------------------------

def test_reparameterised_samples_have_the_mean_and_std_asked_for():
    n = 200_000
    mean, logvar = torch.full((n, 2), 1.5), torch.tensor([math.log(0.25), math.log(4.0)]).expand(n, 2)
    z = reparameterize(mean, logvar, torch.randn(n, 2, generator=torch.Generator().manual_seed(0)))
    # std 0.5 and 2: the standard error of the mean is std / sqrt(n), of the std about std / sqrt(2n)
    torch.testing.assert_close(z.mean(0), torch.tensor([1.5, 1.5]), atol=4 * 2 / math.sqrt(n), rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([0.5, 2.0]), rtol=4 / math.sqrt(2 * n), atol=0)


def test_kl_closed_form_against_monte_carlo_and_torch_distributions():
    g = torch.Generator().manual_seed(1)
    mean, logvar = torch.randn(3, 2, 2, 2, generator=g), torch.randn(3, 2, 2, 2, generator=g) * 0.5
    kl = kl_to_standard_normal(mean, logvar)                                # (3,)
    assert kl.shape == (3,)
    q = torch.distributions.Normal(mean, torch.exp(logvar / 2))
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    exact = torch.distributions.kl_divergence(q, p).flatten(1).sum(1)
    torch.testing.assert_close(kl, exact, rtol=1e-5, atol=1e-6)
    # Monte Carlo: KL = E_q[log q(z) - log p(z)], 100,000 draws per example
    z = q.sample((100_000,))                                                # (S, 3, 2, 2, 2)
    estimate = (q.log_prob(z) - p.log_prob(z)).flatten(2).sum(2)            # (S, 3)
    se = estimate.std(0) / math.sqrt(z.shape[0])
    assert ((estimate.mean(0) - kl).abs() < 4 * se).all(), (estimate.mean(0), kl, se)
    # the prior itself is at distance 0; half the variance costs 0.5 (0.5 - 1 + log 2) per dimension
    assert float(kl_to_standard_normal(torch.zeros(1, 5), torch.zeros(1, 5))) == 0.0
    torch.testing.assert_close(kl_to_standard_normal(torch.zeros(1, 4), torch.full((1, 4), math.log(0.5))),
                               torch.tensor([4 * 0.5 * (0.5 - 1 + math.log(2))]))


def test_vae_loss_is_reconstruction_plus_beta_times_kl_per_dimension():
    vae, x = small_vae(), images(4)
    eps = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    out = vae_loss(vae, x, 0.01, eps=eps)
    assert isinstance(out, VAELoss)
    with torch.no_grad():
        mean, logvar = vae.encode(x)
        x_rec = vae.decode(mean + torch.exp(logvar / 2) * eps)
    rec = ((x_rec - x) ** 2).sum() / x.numel()                              # per pixel value
    kl = (0.5 * (mean ** 2 + logvar.exp() - 1 - logvar)).sum() / (4 * 256)  # per latent dimension and image
    torch.testing.assert_close(out.reconstruction.detach(), rec)
    torch.testing.assert_close(out.kl.detach(), kl)
    torch.testing.assert_close(out.loss.detach(), rec + 0.01 * kl)
    out.loss.backward()                                                      # differentiable: it trains the VAE
    assert vae.encoder[0].weight.grad is not None


def test_latent_scale_factor_gives_unit_variance_latents():
    vae, x = LinearVAE(gain=5.0), images(64)
    scale = latent_scale_factor(vae, x)
    means = vae.encode(x)[0]
    assert scale == pytest.approx(1 / float(means.detach().std()), rel=1e-6)          # independent: 1 / std of the means
    assert float(encode(vae, x, scale).std()) == pytest.approx(1.0, rel=1e-5)
    # a real (small, untrained) VAE as well
    vae = small_vae()
    assert float(encode(vae, x, latent_scale_factor(vae, x)).std()) == pytest.approx(1.0, rel=1e-5)


def test_encode_and_decode_scale_and_unscale():
    vae, x = LinearVAE(gain=2.0), images(3) * 0.4
    z = encode(vae, x, 0.5)
    torch.testing.assert_close(z, 0.5 * vae.encode(x)[0])
    torch.testing.assert_close(decode(vae, z, 0.5), vae.decode(z / 0.5).clamp(-1, 1))
    assert decode(vae, 10 * z, 0.5).abs().max() <= 1                       # clamped to the image range
    # sample=True draws mean + exp(logvar / 2) eps with the generator's eps (logvar = -2 here)
    eps = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    sampled = encode(vae, x, 0.5, sample=True, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(sampled, 0.5 * (vae.encode(x)[0] + math.exp(-1.0) * eps))
    assert compression_factor(vae) == 12.0


# --- latent diffusion --------------------------------------------------------------------------------------

class EchoModel(nn.Module):
    """A fixed (untrained) latent denoiser: a 1x1 conv of z_t, plus t / T."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, z_t, t, cond=None):
        return self.conv(z_t) + t.float().view(-1, 1, 1, 1) / 100


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_latent_diffusion_loss_equals_a_computation_by_hand_on_the_same_draws(prediction_type):
    vae, model, schedule, x_0, scale = small_vae(), EchoModel(), linear_schedule(100), images(5), 0.7
    loss = latent_diffusion_loss(model, vae, x_0, schedule, scale, prediction_type=prediction_type,
                                 generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        z_0 = scale * vae.encode(x_0)[0]                                     # the mean, scaled
    g = torch.Generator().manual_seed(9)
    t = torch.randint(0, 100, (5,), generator=g)                             # t first, then eps
    eps = torch.randn(z_0.shape, generator=g)
    ab = schedule.alphas_cumprod[t].view(-1, 1, 1, 1)
    z_t = ab.sqrt() * z_0 + (1 - ab).sqrt() * eps
    target = eps if prediction_type == "epsilon" else ab.sqrt() * eps - (1 - ab).sqrt() * z_0
    expected = ((model(z_t, t) - target) ** 2).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()                                                           # gradients reach the model ...
    assert model.conv.weight.grad is not None
    assert all(p.grad is None for p in vae.parameters())                     # ... not the frozen VAE


class GaussianLatentDenoiser(nn.Module):
    """The exact eps-prediction when every latent number is N(mu, s^2), independently:
    E[eps | z_t] = sqrt(1 - ab) (z_t - sqrt(ab) mu) / (ab s^2 + 1 - ab)."""

    def __init__(self, schedule, mu, s):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))                           # gives the model a device
        self.ab, self.mu, self.s = schedule.alphas_cumprod, mu, s

    def forward(self, z_t, t, cond=None):
        ab = self.ab.to(z_t.device)[t.long()].view(-1, 1, 1, 1)
        return (1 - ab).sqrt() * (z_t - ab.sqrt() * self.mu) / (ab * self.s ** 2 + 1 - ab)


@pytest.mark.parametrize("sampler,steps", [("dpmpp_2m", 20), ("ddim", 50)])
def test_generate_with_the_exact_denoiser_of_gaussian_latents(sampler, steps):
    # scaled latents N(0.5, 1) (unit variance, as latent_scale_factor makes them); LinearVAE decodes
    # z_0 / scale, scale 5: pixels N(0.1, 0.2^2). Measured with seed 1: DPM-Solver++(2M)-20 gives
    # std 0.206, DDIM-50 0.196 (the solvers' error; the sampling error of the std is about 0.001).
    schedule = cosine_schedule(1000)
    model = GaussianLatentDenoiser(schedule, mu=0.5, s=1.0)
    x = generate(model, LinearVAE(), schedule, 5.0, 300, steps=steps, sampler=sampler, seed=1)
    assert x.shape == (300, 3, 32, 32) and x.device.type == "cpu"
    values = x[:, :, ::4, ::4]                                              # one per latent number: 57,600
    assert abs(float(values.mean()) - 0.1) < 0.003
    assert abs(float(values.std()) - 0.2) < 0.01
    torch.testing.assert_close(generate(model, LinearVAE(), schedule, 5.0, 4, steps=steps, sampler=sampler, seed=1),
                               x[:4])                                       # the seed fixes the images


def test_generate_feeds_the_model_on_its_device():
    probe = MetaProbe(output=lambda shape: torch.empty(shape, device="meta"))
    try:
        generate(probe, LinearVAE(), linear_schedule(50), 1.0, 2, steps=3)
    except AssertionError:               # the probe's: z_T or t reached it on the CPU
        raise
    except Exception:                    # after the first call: meta tensors hold no values
        pass
    assert probe.calls > 0


def test_generate_with_a_tiny_unet_gives_images_in_range():
    from dlcourse.models import UNet, UNetConfig

    torch.manual_seed(0)
    model = UNet(UNetConfig(in_channels=4, base_channels=8, channel_mults=(1, 2), groups=4))
    x = generate(model, small_vae(), linear_schedule(100), 1.0, 3, steps=4, sampler="ddpm")
    assert x.shape == (3, 3, 32, 32) and x.abs().max() <= 1


# --- bad input ---------------------------------------------------------------------------------------------

def test_bad_inputs_name_the_argument_and_what_was_expected():
    vae = small_vae()
    with pytest.raises(ValueError, match=r"x: expected images of shape \(B, 3, 32, 32\) for this VAE, "
                                         r"got \(2, 3, 16, 16\)"):
        encode(vae, torch.zeros(2, 3, 16, 16), 1.0)
    with pytest.raises(ValueError, match=r"x: expected values in \[-1, 1\].*from 0 to 255.*x / 127.5 - 1"):
        encode(vae, torch.linspace(0, 255, 2 * 3 * 32 * 32).view(2, 3, 32, 32), 1.0)
    with pytest.raises(ValueError, match=r"z_0: expected latents of shape \(B, 4, 8, 8\) for this VAE, "
                                         r"got \(2, 3, 8, 8\)"):
        decode(vae, torch.zeros(2, 3, 8, 8), 1.0)
    with pytest.raises(ValueError, match=r"x_0: expected values in \[-1, 1\]"):
        latent_diffusion_loss(EchoModel(), vae, images(2) * 2, linear_schedule(10), 1.0)
    with pytest.raises(ValueError, match="scale: expected a number > 0"):
        encode(vae, images(1), 0.0)
    with pytest.raises(ValueError, match="beta: expected a number >= 0"):
        vae_loss(vae, images(1), -1.0)
    with pytest.raises(ValueError, match=r"logvar: expected shape \(2, 3\)"):
        reparameterize(torch.zeros(2, 3), torch.zeros(3, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"images: expected at least 2 images"):
        latent_scale_factor(vae, images(1))
    with pytest.raises(ValueError, match="sampler: expected one of"):
        generate(EchoModel(), vae, linear_schedule(10), 1.0, 2, sampler="euler_a")
    with pytest.raises(TypeError, match="vae: expected a VAE"):
        encode(nn.Conv2d(3, 4, 4, stride=4), images(1), 1.0)


# --- the shipped latent model ------------------------------------------------------------------------------

def test_shipped_latent_model_makes_valid_images():
    import dlcourse.pretrained as pretrained
    from dlcourse.data import make_shapes
    from dlcourse.judge import load_judge
    from dlcourse.metrics import quality_report
    from dlcourse.schedules import get_schedule

    names = ("vae_shapes32", "latent_shapes32_unet")
    if not all(n in pretrained.PRETRAINED and pretrained.pretrained_path(n).is_file() for n in names):
        pytest.skip("the latent checkpoints are not in dlcourse/assets (scripts/train_latent.py trains them)")
    vae, vae_info = pretrained.load_pretrained("vae_shapes32", device="cpu")
    model, info = pretrained.load_pretrained("latent_shapes32_unet", device="cpu")
    assert info["scale_factor"] == vae_info["scale_factor"] and info["vae_sha256"] == vae_info["sha256"]
    x = generate(model, vae, get_schedule(info["schedule"], info["T"]), info["scale_factor"], 300,
                 steps=20, prediction_type=info["prediction_type"], seed=12)
    # measured: 0.987 valid, FD 12.78 against a real-vs-real floor of 10.82 at n = 300 (1000 samples:
    # 0.983 and 3.57 against 3.42, scripts/train_latent.py --evaluate-only)
    report = quality_report(load_judge(16), x, make_shapes(600, size=32, seed=3).images, seed=3)
    assert report.valid_fraction >= 0.95, f"{report.valid_fraction:.3f} of 300 samples valid"
    assert report.fd <= 3 * report.fd_floor, f"FD {report.fd:.2f} against the floor {report.fd_floor:.2f}"
    assert report.noise_fd > 30 * report.fd_floor                           # the judge tells noise apart
