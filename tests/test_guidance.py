"""Tests of dlcourse.guidance: the combination against closed forms, label dropout's rate, and the
shipped conditional model actually following its label more closely under guidance."""

import dataclasses
import math

import pytest
import torch

from dlcourse.data import make_shapes
from dlcourse.guidance import classifier_free_guidance, drop_labels
from dlcourse.judge import load_judge
from dlcourse.metrics import GuidancePoint, class_accuracy, guidance_sweep
from dlcourse.pretrained import load_pretrained
from dlcourse.samplers import model_output, sample_ddim
from dlcourse.schedules import get_schedule, linear_schedule

pytestmark = pytest.mark.usefixtures("one_thread")


def pair(seed=0, shape=(4, 3, 5, 5)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


# --- the combination ----------------------------------------------------------------------------

def test_w_one_and_zero_are_exactly_the_conditional_and_unconditional_outputs():
    u, c = pair()
    assert torch.equal(classifier_free_guidance(u, c, 1.0), c)
    assert torch.equal(classifier_free_guidance(u, c, 0), u)
    assert torch.equal(classifier_free_guidance(u, c, 1), c)         # ints too


@pytest.mark.parametrize("w", [-1.0, 0.5, 2.0, 7.5])
def test_combination_is_ho_and_salimans_eq6_with_w_shifted_by_one(w):
    """Their eq. 6: (1 + w') eps_cond - w' eps_uncond, with our w = 1 + w'."""
    u, c = pair(1)
    w_theirs = w - 1
    torch.testing.assert_close(classifier_free_guidance(u, c, w), (1 + w_theirs) * c - w_theirs * u)
    # an affine combination: the weights 1 - w and w add up to one, so equal inputs come back unchanged
    torch.testing.assert_close(classifier_free_guidance(c, c, w), c)


def exact_class_eps(x_t, ab, mu, s):
    """E[eps | x_t] for data N(mu, s^2 I) at noise level ab (closed form)."""
    return math.sqrt(1 - ab) * (x_t - math.sqrt(ab) * mu) / (ab * s ** 2 + 1 - ab)


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_guiding_two_gaussians_gives_the_gaussian_at_the_extrapolated_mean(w):
    """eps is affine in the data mean, so guiding N(mu_null, s^2) towards N(mu_c, s^2) with scale w gives
    exactly the eps of N(mu_null + w (mu_c - mu_null), s^2)."""
    x_t = torch.linspace(-3, 3, 13, dtype=torch.float64)
    mu_null, mu_c, s = 0.2, 0.5, 0.3
    for ab in (0.99, 0.5, 0.01):
        guided = classifier_free_guidance(exact_class_eps(x_t, ab, mu_null, s), exact_class_eps(x_t, ab, mu_c, s), w)
        torch.testing.assert_close(guided, exact_class_eps(x_t, ab, mu_null + w * (mu_c - mu_null), s))


def test_model_output_uses_the_combination():
    class Affine(torch.nn.Module):
        num_classes = 3

        def forward(self, x_t, t, cond=None):
            label = torch.full((x_t.shape[0],), 3) if cond is None else cond
            return 0.5 * x_t + label.reshape(-1, 1).to(x_t.dtype)

    model, x, labels = Affine(), torch.randn(4, 2), torch.tensor([0, 1, 2, 1])
    out = model_output(model, x, 5, labels, 2.5)
    torch.testing.assert_close(out, classifier_free_guidance(model(x, 5, None), model(x, 5, labels), 2.5))


@pytest.mark.parametrize("kwargs, name", [
    (dict(out_cond=torch.zeros(3, 2)), "out_cond"), (dict(w=float("nan")), "w"), (dict(w=True), "w"),
    (dict(w="2"), "w"), (dict(out_uncond=[0.0]), "out_uncond"),
])
def test_combination_errors_name_the_argument(kwargs, name):
    args = dict(out_uncond=torch.zeros(2, 2), out_cond=torch.ones(2, 2), w=2.0) | kwargs
    with pytest.raises((TypeError, ValueError), match=name):
        classifier_free_guidance(**args)


# --- label dropout ------------------------------------------------------------------------------

def test_drop_labels_with_given_draws():
    labels = torch.tensor([0, 1, 2, 3, 1, 2])
    u = torch.tensor([0.05, 0.5, 0.09, 0.11, 0.99, 0.0])
    got = drop_labels(labels, 0.1, 4, u=u)
    assert got.tolist() == [4, 1, 4, 3, 1, 4]                    # dropped where u < p
    assert got.dtype == torch.long and labels.tolist() == [0, 1, 2, 3, 1, 2], "the input is not modified"
    assert drop_labels(labels, 0.0, 4, u=u).tolist() == labels.tolist()
    assert drop_labels(labels, 1.0, 4, u=u).tolist() == [4] * 6
    assert drop_labels(torch.tensor([4, 0]), 0.0, 4).tolist() == [4, 0], "a null label stays null"


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_rate_is_p_in_every_class(p):
    """40,000 labels: the dropped fraction has standard deviation sqrt(p (1 - p) / N) <= 0.0025
    overall and <= 0.005 per class (10,000 each); allowed: 0.01 and 0.02 (4 standard deviations)."""
    labels = torch.arange(4).repeat(10_000)
    got = drop_labels(labels, p, 4, generator=torch.Generator().manual_seed(0))
    dropped = got == 4
    assert abs(dropped.float().mean().item() - p) < 0.01
    for c in range(4):
        assert abs(dropped[labels == c].float().mean().item() - p) < 0.02
    assert torch.equal(got[~dropped], labels[~dropped]), "kept labels are unchanged"
    again = drop_labels(labels, p, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(got, again), "the same generator gives the same draws"


def test_training_draws_the_same_dropout_as_drop_labels():
    """train() replaces labels with drop_labels, drawing u from the global RNG it seeds."""
    from dlcourse.models import MLPDenoiser
    from dlcourse.training import train

    seen = []

    def loss_fn(model, x_0, cond):
        seen.append(cond.clone())
        return model(x_0, torch.zeros(x_0.shape[0], dtype=torch.long), cond).pow(2).mean()

    torch.manual_seed(0)
    model = MLPDenoiser(hidden=16, layers=1, time_dim=8, num_classes=3)
    labels = torch.full((256,), 2)
    train(model, torch.randn(256, 2), None, steps=3, batch_size=64, labels=labels, p_uncond=0.3, loss_fn=loss_fn,
          seed=5, progress=False, ema_decay=None, device="cpu", precision="fp32")
    assert len(seen) == 3
    with torch.random.fork_rng(devices=[]):      # replay train's draws of each step: the batch, then u
        torch.manual_seed(5)
        for cond in seen:
            torch.randint(0, 256, (64,))
            assert torch.equal(cond, drop_labels(torch.full((64,), 2), 0.3, 3))


@pytest.mark.parametrize("kwargs, name", [
    (dict(labels=torch.zeros(3)), "labels"), (dict(labels=torch.zeros(2, 2, dtype=torch.long)), "labels"),
    (dict(labels=torch.tensor([0, 5])), "labels"), (dict(p_uncond=1.5), "p_uncond"),
    (dict(null_label=-1), "null_label"), (dict(null_label=2.0), "null_label"),
    (dict(u=torch.zeros(5)), "u"),
])
def test_dropout_errors_name_the_argument(kwargs, name):
    args = dict(labels=torch.tensor([0, 1, 2]), p_uncond=0.1, null_label=4) | kwargs
    with pytest.raises((TypeError, ValueError), match=name):
        drop_labels(**args)


# --- the shipped conditional model --------------------------------------------------------------

@pytest.fixture(scope="module")
def cond_model():
    model, info = load_pretrained("shapes16_unet_cond", device="cpu")
    return model, get_schedule(info["schedule"], info["T"])


def test_guidance_makes_the_shipped_model_follow_its_label(cond_model):
    """Requested-shape accuracy (among valid samples) at w = 0 (unconditional: chance is 25%) against w = 3.

    32 samples (8 of each shape), 10 DDIM steps, the same noise for both. Measured with noise seeds
    0-4: 0.29, 0.12, 0.19, 0.19, 0.32 at w = 0 and 1.00 for all five at w = 3 (5-7 s on one CPU thread).
    """
    model, schedule = cond_model
    judge = load_judge()
    labels = torch.arange(4).repeat(8)
    x_T = torch.randn(32, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    acc = {w: class_accuracy(judge, sample_ddim(model, x_T, schedule, 10, cond=labels, guidance_scale=w,
                                                progress=False), labels) for w in (0.0, 3.0)}
    assert acc[0.0] < 0.5 and acc[3.0] > 0.9, acc


def test_sweep_scores_an_oracle_sampler_as_the_real_data_it_returns():
    """A known answer: a "sampler" that hands back unseen real images of the requested shape when w >= 1,
    and an even mix of all four shapes when w = 0. The sweep must then find the real data's figures
    (the judge's accuracy on real images, log2(6) bits of colour, a spread of about 1, an FD near the
    floor) at w = 2, and an accuracy of 1/4 at w = 0."""
    n = 24
    reference = make_shapes(800, seed=11)
    unseen = make_shapes(800, seed=12)

    def oracle(model, x_T, schedule, steps, *, cond, guidance_scale, progress):
        c = int(cond[0])
        if guidance_scale >= 1:
            return unseen.images[unseen.labels == c][:n]
        return torch.cat([unseen.images[unseen.labels == k][:n // 4] for k in range(4)])

    model = torch.nn.Linear(1, 1)
    model.num_classes = 4
    points = guidance_sweep(model, linear_schedule(50), load_judge(), reference, [0, 2], n=n, steps=2,
                            sampler=oracle)
    mixed, real = points
    assert real.valid_fraction > 0.95 and real.accuracy > 0.95
    assert abs(mixed.accuracy - 0.25) < 0.05, "a quarter of an even mix shows the requested shape"
    assert abs(real.color_bits - math.log2(6)) < 0.4 and abs(real.scale_bits - 1) < 0.15
    assert 0.7 < real.feature_spread < 1.3
    assert real.fd < 1.5 * real.fd_floor and mixed.fd > 4 * real.fd, (real, mixed)


def test_sweep_on_a_tiny_model_returns_one_point_per_w():
    """Wiring only (the notebook and scripts/measure_guidance.py measure the real model)."""
    from dlcourse.models import UNet, UNetConfig

    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), num_heads=2, groups=4, num_classes=2)).eval()
    reference = make_shapes(64, seed=1)
    reference = dataclasses.replace(reference, labels=reference.labels % 2)           # two classes
    points = guidance_sweep(model, linear_schedule(50), load_judge(), reference, [0, 2], n=4, steps=2)
    assert [p.w for p in points] == [0.0, 2.0] and all(isinstance(p, GuidancePoint) and p.n == 4 for p in points)
    assert all(p.fd_floor == points[0].fd_floor and p.fd > 0 for p in points), "one floor for every w"
    with pytest.raises(ValueError, match="reference"):
        guidance_sweep(model, linear_schedule(50), load_judge(), reference, [1], n=40, steps=2)
