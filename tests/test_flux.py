"""Guidance distillation (dlcourse.systems.flux): the target, the loss, the shipped weights' round trip."""

import copy

import pytest
import torch

from dlcourse.checkpoints import build_model, load_checkpoint, save_checkpoint
from dlcourse.consistency import GuidanceInput
from dlcourse.models import UNet, UNetConfig
from dlcourse.schedules import cosine_schedule
from dlcourse.systems.flux import (FixedGuidance, TunedWeights, guidance_distillation_loss,
                                   guidance_distillation_target, tuned_parameter_names)

pytestmark = pytest.mark.usefixtures("one_thread")


class LinearTeacher(torch.nn.Module):
    """out = 0.5 x + t / 1000 (+ the label, when there is one): conditional and unconditional differ by cond."""

    def forward(self, x, t, cond=None):
        out = 0.5 * x + (t.to(x.dtype) / 1000).view(-1, 1, 1, 1)
        return out if cond is None else out + cond.to(x.dtype).view(-1, 1, 1, 1)


def test_the_target_is_the_teachers_guided_output_at_each_samples_own_w():
    x = torch.randn(3, 1, 2, 2)
    t = torch.tensor([10, 500, 990])
    cond = torch.tensor([1.0, -2.0, 0.5])
    w = torch.tensor([0.0, 1.0, 4.0])
    out = guidance_distillation_target(LinearTeacher(), x, t, cond, w)
    u, c = LinearTeacher()(x, t, None), LinearTeacher()(x, t, cond)
    assert torch.allclose(out[0], u[0]) and torch.allclose(out[1], c[1])          # w = 0, w = 1
    assert torch.allclose(out[2], u[2] + 4 * (c[2] - u[2]))
    assert not out.requires_grad


def tiny_unet():
    torch.manual_seed(0)
    return UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), attention=False, groups=4, num_classes=3))


def test_the_loss_starts_at_zero_at_w_1_and_teaches_w_elsewhere():
    teacher = tiny_unet().eval().requires_grad_(False)
    with torch.no_grad():             # weights like a trained network's (the output conv starts at zero)
        for q in teacher.parameters():
            q.add_(0.2 * torch.randn_like(q))
    student = GuidanceInput(copy.deepcopy(teacher).requires_grad_(True))
    x_0, labels, schedule = torch.rand(8, 3, 8, 8) * 2 - 1, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]), cosine_schedule(100)
    g = torch.Generator().manual_seed(1)
    at_one = guidance_distillation_loss(student, teacher, x_0, schedule, cond=labels, w_min=1, w_max=1, generator=g)
    assert float(at_one.detach()) < 1e-10                               # the student starts as the conditional teacher
    loss = guidance_distillation_loss(student, teacher, x_0, schedule, cond=labels, w_min=3, w_max=6, generator=g)
    assert float(loss.detach()) > 1e-4
    loss.backward()
    assert student.w_embed[2].weight.grad.abs().sum() > 0     # w's embedding gets a gradient


@pytest.mark.parametrize("kwargs, match", [
    (dict(w_min=3.0, w_max=2.0), "w_max"), (dict(w_min=-1.0), "w_min"), (dict(x_0=torch.zeros(2, 3)), "x_0"),
])
def test_bad_arguments_name_themselves(kwargs, match):
    teacher = tiny_unet()
    args = {"x_0": torch.zeros(2, 3, 8, 8), "cond": torch.tensor([0, 1]), **kwargs}
    with pytest.raises((TypeError, ValueError), match=match):
        guidance_distillation_loss(GuidanceInput(copy.deepcopy(teacher)), teacher, schedule=cosine_schedule(10),
                                   **args)


def test_the_tuned_weights_round_trip_through_a_file(tmp_path):
    base = tiny_unet().eval()
    names = tuned_parameter_names(base)
    assert any(n.startswith("time_embed.") for n in names) and any(".emb." in n for n in names)
    assert not any("conv1" in n or "conv_in" in n for n in names)
    student = GuidanceInput(copy.deepcopy(base))
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.01 * torch.randn_like(p))
    weights = TunedWeights.from_student(student, names)
    save_checkpoint(tmp_path / "w.pt", weights)
    rebuilt = build_model(load_checkpoint(tmp_path / "w.pt")).student(base)
    x, t, y = torch.randn(2, 3, 8, 8), torch.tensor([3, 70]), torch.tensor([0, 2])
    # the tuned parameters and w's MLP come from the file, the rest from the base (not the student's noise)
    expected = GuidanceInput(copy.deepcopy(base))
    state = {**expected.state_dict(), **{f"net.{n}": p for n, p in student.net.named_parameters() if n in names},
             **{f"w_embed.{k}": v for k, v in student.w_embed.state_dict().items()}}
    expected.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(rebuilt(x, t, y, 2.5), expected(x, t, y, 2.5))
        assert torch.equal(FixedGuidance(rebuilt, 2.5)(x, t, y), rebuilt(x, t, y, torch.tensor([2.5, 2.5])))


def test_the_shipped_student_follows_true_guidance_closer_than_the_unguided_teacher():
    from dlcourse.conditioning.text_to_image import load_text_to_image
    from dlcourse.pretrained import pretrained_path
    from dlcourse.samplers import sample_ddim
    from dlcourse.schedules import get_schedule
    from dlcourse.systems.flux import load_guidance_distilled
    from dlcourse.tensors import seeded_noise

    assert pretrained_path("guidance_distilled_shapes16").stat().st_size <= 1e6
    student, info = load_guidance_distilled(device="cpu")
    teacher, _ = load_text_to_image(info["base"], device="cpu")
    assert not student.training and info["w_min"] == 1 and info["w_max"] == 7.5
    schedule = get_schedule(info["schedule"], info["T"])
    prompts = ["a large red circle at the top left", "a small green square in the centre",
               "a large yellow cross at the bottom right", "a small magenta triangle on the left"]
    x_T = seeded_noise((4, 3, 16, 16), 0)

    def sample(model, w):
        return sample_ddim(model, x_T, schedule, 10, cond=teacher.cond(prompts), guidance_scale=w,
                           prediction_type=info["prediction_type"], progress=False)

    guided, unguided = sample(teacher, 3.0), sample(teacher, 1.0)
    distilled = sample(student.at_guidance_scale(3.0), 1.0)
    rms = lambda x: float((x - guided).square().mean().sqrt())       # noqa: E731
    assert rms(distilled) < 0.7 * rms(unguided)                       # it learned what w does, not only the prompt
