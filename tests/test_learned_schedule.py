"""The VDM-style learned schedule: monotone, fixed endpoints, and learning lowers the loss variance."""

import pytest
import torch
from torch import nn

from dlcourse.learned_schedule import LearnedSchedule, vdm_loss, vdm_step

pytestmark = pytest.mark.usefixtures("one_thread")


class TinyDenoiser(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 2))

    def forward(self, x_t, t):
        return self.net(torch.cat([x_t, t[:, None]], dim=1))


def test_monotone_with_fixed_endpoints_even_after_random_weights():
    torch.manual_seed(0)
    sched = LearnedSchedule(log_snr_min=-8.0, log_snr_max=6.0)
    with torch.no_grad():
        for p in sched.parameters():
            p.normal_(0, 3)
    t = torch.linspace(0, 1, 501)
    log_snr = sched.log_snr(t)
    assert bool((log_snr.diff() < 0).all())
    assert log_snr[0].item() == pytest.approx(6.0, abs=1e-4)
    assert log_snr[-1].item() == pytest.approx(-8.0, abs=1e-4)
    s = sched.to_schedule(100)
    assert s.name == "learned" and s.T == 100 and bool((s.alphas_cumprod.diff() < 0).all())


def test_continuous_loss_gradient_uses_gamma_prime():
    """With a zero denoiser, E||eps||^2 = D, so the loss is D/2 * gamma'(t): check against finite differences."""
    torch.manual_seed(0)
    sched = LearnedSchedule()
    zero = lambda x_t, t: torch.zeros_like(x_t)  # noqa: E731
    x_0 = torch.zeros(20_000, 2)
    loss = vdm_loss(zero, sched, x_0).mean()
    # E_t[gamma'(t)] = gamma(1) - gamma(0); with D = 2 the expected loss is gamma_1 - gamma_0
    expected = (sched.gamma_1 - sched.gamma_0).item()
    assert loss.item() == pytest.approx(expected, rel=0.03)


def test_learning_the_schedule_lowers_loss_variance():
    torch.manual_seed(0)
    data = torch.randn(4000, 2) * torch.tensor([1.0, 0.2]) + torch.tensor([0.5, 0.0])
    model, sched = TinyDenoiser(), LearnedSchedule()
    frozen_model, frozen_sched = TinyDenoiser(), LearnedSchedule()
    frozen_model.load_state_dict(model.state_dict())
    opt_m = torch.optim.Adam(model.parameters(), 2e-3)
    opt_s = torch.optim.Adam(sched.parameters(), 1e-2)
    opt_fm = torch.optim.Adam(frozen_model.parameters(), 2e-3)
    for _ in range(200):
        batch = data[torch.randint(0, 4000, (128,))]
        vdm_step(model, sched, batch, opt_m, opt_s)
        # same denoiser training with the schedule held at its initial shape
        opt_fm.zero_grad()
        vdm_loss(frozen_model, frozen_sched, batch).mean().backward()
        opt_fm.step()
    learned = vdm_loss(model, sched, data).detach()
    fixed = vdm_loss(frozen_model, frozen_sched, data).detach()
    assert learned.var() < 0.7 * fixed.var()
    # the expectation is (nearly) schedule-independent: means stay within 25%
    assert learned.mean().item() == pytest.approx(fixed.mean().item(), rel=0.25)


def test_vdm_loss_runs_on_the_denoisers_device(meta_probe):
    # denoiser and schedule on "meta" (as on a GPU), x_0 on the CPU: x_0 must be moved to them
    denoiser = meta_probe(output=lambda shape: torch.zeros(shape, device="meta"))
    loss = vdm_loss(denoiser, LearnedSchedule().to("meta"), torch.randn(4, 2))
    assert loss.device.type == "meta" and loss.shape == (4,) and denoiser.calls == 1


def test_bad_input():
    with pytest.raises(ValueError, match="log_snr_min"):
        LearnedSchedule(log_snr_min=5.0, log_snr_max=1.0)
    with pytest.raises(ValueError, match="x_0: expected a tensor with 2 dimensions"):
        vdm_loss(lambda x, t: x, LearnedSchedule(), torch.zeros(3, 2, 2))
