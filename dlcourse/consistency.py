"""Consistency models: one network call from noise to data, or a few (Song et al. 2023; Luo et al. 2023).

A flow's ODE carries every point of a path to the same clean end. A *consistency function* answers that end
directly from any point of the path: ``f(x_t, t) = x_{t_min}`` for every t on one path, so ``f(x_1, 1)`` is a
sample in one call. Time is the course's flow time (``dlcourse.rectified_flow``, noise at t = 1)::

    x_t = (1 - t) x_0 + t eps,   t in [t_min, 1],   x_1 = eps ~ N(0, I)

**The boundary condition built in** (Song et al. 2023, eq. 5 and appendix C). The network F is wrapped as
``f(x, t) = c_skip(t) x + c_out(t) F(x, t)`` with ``c_skip(t_min) = 1`` and ``c_out(t_min) = 0``, so
``f(x, t_min) = x`` exactly, whatever F is. The coefficients are Karras et al.'s (2022, appendix B.6) for the
flow's path on the clock ``tau = (t - t_min) / (1 - t_min)`` (0 at t_min, 1 at t = 1): for data of standard
deviation sigma_data, ``c_skip`` is the least-squares coefficient of x_0 on ``x_tau = (1 - tau) x_0 + tau eps``
and ``c_out`` the standard deviation of what is left, so F's target has unit variance at every t::

    V(tau) = (1 - tau)^2 sigma_data^2 + tau^2
    c_skip = (1 - tau) sigma_data^2 / V,     c_out = sigma_data tau / sqrt(V)

At t = 1, ``c_skip = 0`` and ``c_out = sigma_data``: from pure noise, f is F alone, scaled to the data.

**Consistency distillation** (Song et al. 2023, Algorithm 2). Cut [t_min, 1] into N intervals
``t_min = t_0 < t_1 < ... < t_N = 1``. Draw n, a point ``x_{t_{n+1}}`` of the forward process, take *one*
ODE-solver step of a teacher from it to ``x_hat_{t_n}`` (the same path, one level down), and pull the student's
answer at the upper point towards a target network's answer at the lower one::

    L = d( f_theta(x_{t_{n+1}}, t_{n+1}),  f_theta-(x_hat_{t_n}, t_n) ),   theta- <- mu theta- + (1 - mu) theta

with no gradient through the target theta- (an EMA of the student, decay mu). At ``t_0 = t_min`` the target
answers its input exactly, so the answer is anchored at the clean end and spreads up the levels. For a flow
teacher the solver step is Euler's (the deterministic DDIM step in flow time) or Heun's. d is the squared L2
distance, or the pseudo-Huber distance ``sqrt(|a - b|^2 + c^2) - c`` (Song & Dhariwal 2023).

**LCM's guidance input** (Luo et al. 2023, sec. 4.2). The teacher's step uses classifier-free guidance at a
scale w, and the student takes w as an input (``guidance_input=True``: the network is called with a fourth
argument, w as a (B,) tensor), so a guided sample costs one call per step instead of two. A network without such
an input gets one from ``GuidanceInput``: w's embedding is added to its time embedding, zero at the start.

**Multistep sampling** (Song et al. 2023, Algorithm 1): ``x = f(x_1, 1)``; then for each lower time t, put the
answer back on a path at t with fresh noise and denoise again, ``x = f(x_t, t)``.

    boundary_coefficients(t, t_min)                (c_skip, c_out)
    ConsistencyModel(net, t_min=..., ...)          f = c_skip x + c_out F
    consistency_levels(N)                          t_0 .. t_N for distillation
    flow_teacher(flow_model)                       one Euler (or Heun) step of a flow: the teacher's solver
    FlowFromVP(vp_model, schedule, ...)            a DDPM-style network read as a flow velocity (LCM's teacher)
    consistency_distillation_loss(...)             the loss above, one Monte-Carlo estimate
    train_consistency(student, teacher, data)      ``dlcourse.loop.fit`` on it, with the target's EMA
    multistep_sample(model, x_T, times)            1 call per time
    GuidanceInput(unet)                            LCM's w as an input, for a network that has none
    load_consistency("cm_shapes16_unet")           the shipped one (scripts/train_fewstep.py)

Example (2-D toy; figures in ``bench/README.md`` from ``bench/consistency_toy.py``)::

    data = make_toy("two_moons", 20000)
    flow = train_flow(MLPDenoiser(), data, steps=3000, time_scale=1000).ema_model
    student = ConsistencyModel(copy.deepcopy(flow).requires_grad_(True), sigma_data=1.0, time_scale=1000)
    cm = train_consistency(student, flow_teacher(flow, time_scale=1000), data, N=100, steps=6000).ema_model
    x_0 = multistep_sample(cm, torch.randn(1000, 2), [1.0, 0.3, 0.1, 0.05])     # 4 calls

On the toys one call lands within 1-3x of the data's floor, where the teacher's one Euler step is ~1000x; re-noising
to low times (as above) helps more than evenly spaced ones (``multistep_times``), where the student is less exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .batches import random_batches
from .device import model_device
from .ema import EMA
from .loop import TrainConfig, TrainResult, fit
from .models import MODELS, register_model
from .tensors import expand_like, noise_like, to_device
from .validation import check_choice, check_number, check_positive, check_tensor

__all__ = ["ConsistencyModel", "DISTANCES", "FlowFromVP", "GuidanceInput", "SOLVERS", "T_MIN", "boundary_coefficients",
           "consistency_distillation_loss", "consistency_levels", "flow_teacher", "multistep_sample", "multistep_times",
           "load_consistency", "train_consistency"]

T_MIN = 0.002                      # Song et al.'s epsilon; here a flow time
DISTANCES = ("l2", "pseudo_huber")
PARAMETRIZATIONS = ("skip", "velocity")
SOLVERS = ("euler", "heun")


def _times(name: str, t, t_min: float, like: torch.Tensor) -> torch.Tensor:
    """``t`` (a number, () or (B,)), checked to lie in [t_min, 1] where it is, then as a tensor in ``like``'s
    device and floating dtype."""
    t = torch.as_tensor(t)
    if t.ndim > 1:
        raise ValueError(f"{name}: expected a number or a (B,) tensor of times, got shape {tuple(t.shape)}")
    lo, hi = float(t.min()), float(t.max())
    if lo < t_min or hi > 1:
        raise ValueError(f"{name}: expected flow times in [t_min, 1] = [{t_min:g}, 1], "
                         f"got values from {lo:g} to {hi:g}")
    return t.to(device=like.device, dtype=like.dtype if like.is_floating_point() else torch.float32)


def boundary_coefficients(t, t_min: float = T_MIN, sigma_data: float = 0.5):
    """``(c_skip, c_out)`` at flow time(s) ``t`` (module docstring): ``c_skip(t_min) = 1``, ``c_out(t_min) = 0``.

    Args:
        t: a number or a tensor of flow times in [t_min, 1].
        t_min: where the boundary condition holds, in [0, 1).
        sigma_data: the data's standard deviation per coordinate (0.5 for images in [-1, 1] as Song et al.;
            about 1 for the 2-D toys).

    Returns:
        Two tensors shaped like ``t`` (float32 for a number).
    """
    t_min = check_number("t_min", t_min, minimum=0.0, maximum=1.0)
    if t_min == 1.0:
        raise ValueError("t_min: expected a number below 1 (t = 1 is pure noise), got 1")
    sigma_data = check_number("sigma_data", sigma_data, above=0.0)
    t = _times("t", t, t_min, t if isinstance(t, torch.Tensor) else torch.zeros(()))
    return _coefficients(t, t_min, sigma_data)


def _coefficients(t: torch.Tensor, t_min: float, sigma_data: float):
    """``boundary_coefficients`` unchecked."""
    tau = (t - t_min) / (1 - t_min)                                   # 0 at t_min, 1 at t = 1
    var = (1 - tau) ** 2 * sigma_data ** 2 + tau ** 2                  # V(tau) = Var(x_tau)
    return (1 - tau) * sigma_data ** 2 / var, sigma_data * tau / var.sqrt()


class ConsistencyModel(nn.Module):
    """``f(x_t, t) = c_skip(t) x_t + c_out(t) F(x_t, t)``: a network with the boundary condition built in.

    Args:
        net: the network F, called as ``net(x_t, t * time_scale, cond)``, or with ``w`` as a fourth argument
            when ``guidance_input``; returns a tensor shaped like ``x_t``.
        t_min: where ``f(x, t_min) = x`` exactly. sigma_data: as in ``boundary_coefficients``.
        time_scale: the network sees ``t * time_scale`` (1000 for ``dlcourse.models``, as in training a flow).
        guidance_input: the network takes the guidance scale w (LCM).
        parametrization: "skip" (``c_skip x + c_out F``), or "velocity": ``f = x - (t - t_min) F``, one Euler
            step of a velocity F down to t_min (the boundary condition holds as exactly). A student that starts
            from a flow teacher's weights then starts as the teacher's one-step guess, where "skip" would read the
            teacher's velocity as a clean image: on 16 px shapes "skip" was still at the noise's FD after 1500 steps.
    """

    def __init__(self, net: nn.Module, *, t_min: float = T_MIN, sigma_data: float = 0.5, time_scale: float = 1.0,
                 guidance_input: bool = False, parametrization: str = "skip"):
        super().__init__()
        boundary_coefficients(t_min, t_min, sigma_data)                # checks t_min and sigma_data
        self.parametrization = check_choice("parametrization", parametrization, PARAMETRIZATIONS)
        self.net, self.t_min, self.sigma_data = net, float(t_min), float(sigma_data)
        self.time_scale = check_number("time_scale", time_scale, above=0.0)
        self.guidance_input = bool(guidance_input)

    def forward(self, x_t: torch.Tensor, t, cond=None, w=None) -> torch.Tensor:
        """The consistency function at ``x_t`` (B, ...) and times ``t`` (a number or (B,)); returns (B, ...).

        ``w``: the guidance scale (a number or (B,)), only for a model made with ``guidance_input=True``
        (default 1 there: no guidance).
        """
        check_tensor("x_t", x_t, floating=True)
        B = x_t.shape[0]
        t = _times("t", t, self.t_min, x_t)
        t = t.expand(B) if t.ndim == 0 else check_tensor("t", t, shape=(B,))               # (B,)
        if self.guidance_input:
            w = torch.as_tensor(1.0 if w is None else w, dtype=x_t.dtype, device=x_t.device)
            w = w.expand(B) if w.ndim == 0 else check_tensor("w", w, shape=(B,))            # (B,)
            out = self.net(x_t, t * self.time_scale, cond, w)
        elif w is not None:
            raise ValueError("w: this consistency model takes no guidance scale (made with guidance_input=False)")
        else:
            out = self.net(x_t, t * self.time_scale, cond)
        check_tensor("net output", out, shape=tuple(x_t.shape))
        if self.parametrization == "velocity":                         # one Euler step to t_min: x - (t - t_min) F
            return x_t - expand_like(t - self.t_min, x_t) * out.to(x_t.dtype)
        c_skip, c_out = _coefficients(t, self.t_min, self.sigma_data)
        return expand_like(c_skip, x_t) * x_t + expand_like(c_out, x_t) * out.to(x_t.dtype)


@register_model
class GuidanceInput(nn.Module):
    """LCM's guidance input for a network that cannot take w: ``net(x, t, cond, w)`` for any ``dlcourse.models``
    network with a ``time_embed`` (the U-Net, the DiT).

    w's embedding, ``MLP(w - 1)``, is added to the network's time embedding, which every block reads (the same
    sum as adding it to the class embedding). The MLP's last layer starts at zero, so a new wrapper is exactly the
    wrapped network at every w: distillation starts from the teacher.

    Args:
        net: the network; its ``time_embed`` must return (B, dim) vectors.
        dim: that width; None reads it from the last ``nn.Linear`` of ``net.time_embed``.
    """

    def __init__(self, net: nn.Module, dim: int | None = None):
        super().__init__()
        if dim is None:
            dim = [m for m in net.time_embed.modules() if isinstance(m, nn.Linear)][-1].out_features
        self.net, self.dim = net, dim
        self.w_embed = nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.w_embed[2].weight)
        nn.init.zeros_(self.w_embed[2].bias)

    def forward(self, x_t: torch.Tensor, t, cond=None, w=None) -> torch.Tensor:
        """``net(x_t, t, cond)`` with w's embedding added to the time embedding; w: a number or (B,), default 1."""
        B = x_t.shape[0]
        w = torch.as_tensor(1.0 if w is None else w, dtype=x_t.dtype, device=x_t.device)
        w = w.expand(B) if w.ndim == 0 else check_tensor("w", w, shape=(B,))                # (B,)
        w_emb = self.w_embed((w - 1)[:, None])                                            # (B, 1) -> (B, dim)
        hook = self.net.time_embed.register_forward_hook(lambda module, args, out: out + w_emb.to(out.dtype))
        try:
            return self.net(x_t, t, cond)
        finally:
            hook.remove()

    def get_config(self) -> dict:
        return {"net": type(self.net).__name__, "net_config": self.net.get_config(), "dim": self.dim}

    @classmethod
    def from_config(cls, config: dict) -> "GuidanceInput":
        return cls(MODELS[config["net"]].from_config(config["net_config"]), dim=config["dim"])


class FlowFromVP(nn.Module):
    """A network trained on a variance-preserving schedule's timesteps, answering as a flow's velocity network.

    LCM distils a DDPM-style latent model (Luo et al. 2023); the course's consistency models live in flow time.
    The two are the same paths at another scale: a VP point ``z = sqrt(ab) x_0 + sqrt(1 - ab) eps`` divided by
    ``sqrt(ab) + sqrt(1 - ab)`` is the flow's ``x_t`` at ``t = sqrt(1 - ab) / (sqrt(ab) + sqrt(1 - ab))``.
    So at flow time t the wrapper finds the (fractional) timestep whose alpha_bar is
    ``ab = (1 - t)^2 / ((1 - t)^2 + t^2)`` (linear in the table's flow times), calls the network on
    ``z = x_t / sqrt((1 - t)^2 + t^2)``, reads ``(x_0, eps)`` from its prediction and returns ``v = eps - x_0``.
    Euler's step of this velocity between two flow times is DDIM's step between their timesteps.

    Args:
        model: called as ``model(z, timesteps, cond)`` with float (B,) timesteps in [0, T - 1].
        schedule: its ``NoiseSchedule``. prediction_type: "epsilon", "sample" or "v_prediction".

    ``forward(x_t, t, cond=None)``: x_t (B, ...), flow times t (B,) in [0, 1] (clamped to the flow times of
    timesteps 0 and T - 1: ``t_range``); returns the velocity (B, ...).
    """

    def __init__(self, model: nn.Module, schedule, *, prediction_type: str = "epsilon"):
        super().__init__()
        from .parameterization import PREDICTION_TYPES
        from .validation import check_schedule
        check_schedule("schedule", schedule)
        self.model, self.prediction_type = model, check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
        ab = schedule.alphas_cumprod.double().cpu()
        self.flow_times = (1 - ab).sqrt() / (ab.sqrt() + (1 - ab).sqrt())          # (T,) increasing
        self.t_range = (float(self.flow_times[0]), float(self.flow_times[-1]))

    def timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """The fractional timesteps (B,) float64 at flow times ``t`` (B,)."""
        t = t.detach().double().cpu().clamp(*self.t_range)
        hi = torch.searchsorted(self.flow_times, t).clamp(1, len(self.flow_times) - 1)
        t_lo, t_hi = self.flow_times[hi - 1], self.flow_times[hi]
        return (hi - 1) + (t - t_lo) / (t_hi - t_lo)

    def forward(self, x_t: torch.Tensor, t, cond=None) -> torch.Tensor:
        from .parameterization import to_x0_eps
        B = x_t.shape[0]
        t = torch.as_tensor(t, dtype=torch.float64).expand(B).clamp(*self.t_range)                  # (B,)
        s = ((1 - t) ** 2 + t ** 2).sqrt()
        ab = ((1 - t) / s) ** 2
        z = x_t / expand_like(s.to(x_t), x_t)                                           # the VP point
        out = self.model(z, self.timesteps(t).to(device=x_t.device, dtype=x_t.dtype), cond).to(x_t.dtype)
        x_0, eps = to_x0_eps(out, z, ab.to(x_t), self.prediction_type)
        return eps - x_0


def load_consistency(name: str, device=None):
    """A shipped consistency model (``dlcourse.pretrained``): ``(ConsistencyModel, info)``, eval mode.

    Its checkpoint holds the network F (a ``GuidanceInput`` when it takes w); ``info["consistency"]`` has the
    wrapper's t_min, sigma_data, time_scale and guidance_input.
    """
    from .pretrained import load_pretrained
    net, info = load_pretrained(name, device=device)
    if "consistency" not in info:
        raise ValueError(f"name: {name!r} is not a consistency model (its info has no 'consistency' settings)")
    return ConsistencyModel(net, **info["consistency"]).eval(), info


def consistency_levels(N: int, *, t_min: float = T_MIN, t_max: float = 1.0) -> torch.Tensor:
    """The N + 1 levels ``t_min = t_0 < t_1 < ... < t_N = t_max`` of distillation, evenly spaced (float64, (N + 1,)).

    Even spacing in flow time matches ``flow_times``: a flow's Euler steps are equally long in t.
    """
    check_positive("N", N, integer=True)
    t_min = check_number("t_min", t_min, minimum=0.0)
    t_max = check_number("t_max", t_max, above=t_min, maximum=1.0)
    return torch.linspace(t_min, t_max, N + 1, dtype=torch.float64)


def flow_teacher(model, *, time_scale: float = 1.0, solver: str = "euler"):
    """One ODE-solver step of a flow (velocity) model: the teacher's step of consistency distillation.

    Returns ``step(x_t, t, s, cond=None, w=1.0) -> x_s``, for x_t (B, ...) at times t (B,) and lower times
    s (B,), without gradients. With ``v`` the guided velocity ``v_u + w (v_c - v_u)`` (``v_u`` the model's
    answer with ``cond=None``; just ``model(x, t, cond)`` when cond is None or w = 1)::

        euler:  x_s = x_t + (s - t) v(x_t, t)                                     (DDIM in flow time)
        heun:   x'  = x_t + (s - t) v(x_t, t);   x_s = x_t + (s - t) (v(x_t, t) + v(x', s)) / 2

    Args:
        model: a velocity network (``dlcourse.rectified_flow``), called as ``model(x, t * time_scale, cond)``.
        time_scale: as in its training. solver: "euler" (1 call) or "heun" (2 calls).
    """
    check_choice("solver", solver, SOLVERS)
    time_scale = check_number("time_scale", time_scale, above=0.0)

    def velocity(x, t, cond, w):
        t = t.to(x.device)
        if cond is None or (not isinstance(w, torch.Tensor) and w == 1):
            return model(x, t * time_scale, cond).to(x.dtype)
        v_u, v_c = model(x, t * time_scale, None).to(x.dtype), model(x, t * time_scale, cond).to(x.dtype)
        return v_u + expand_like(torch.as_tensor(w), x) * (v_c - v_u)

    @torch.no_grad()
    def step(x_t, t, s, cond=None, w=1.0):
        h = expand_like(s - t, x_t)                                     # (B, 1, ...), negative
        v = velocity(x_t, t, cond, w)
        x_s = x_t + h * v
        return x_s if solver == "euler" else x_t + h * (v + velocity(x_s, s, cond, w)) / 2

    return step


def consistency_distillation_loss(student, target, teacher_step, x_0: torch.Tensor, *, levels=None, cond=None, w=None,
                                  distance: str = "l2", huber_c: float | None = None, n=None, eps=None,
                                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Consistency distillation, one Monte-Carlo estimate (Song et al. 2023, Algorithm 2; LCM with ``w``).

    Draws n uniformly in 0..N-1 (first) and eps (then); ``x_{t_{n+1}} = (1 - t_{n+1}) x_0 + t_{n+1} eps``;
    ``x_hat_{t_n} = teacher_step(x_{t_{n+1}}, t_{n+1}, t_n, cond, w)``, one solver step from that same point;
    then d(student(x_{t_{n+1}}, t_{n+1}), target(x_hat_{t_n}, t_n)), the target without gradient.

    Args:
        student: called as ``student(x, t, cond)`` with flow times t (B,), or ``student(x, t, cond, w)`` when it
            has ``guidance_input`` (a ``ConsistencyModel``); target: the same kind (the student's EMA).
        teacher_step: ``step(x_t, t, s, cond, w) -> x_s`` (``flow_teacher``).
        x_0: (B, ...) data, moved to the student's device. cond: its conditioning, or None.
        levels: (N + 1,) increasing times (``consistency_levels``); default ``consistency_levels(50)`` from the
            student's t_min.
        w: the teacher's guidance scale, a number or (B,) (None: 1, no guidance); passed to the student and target
            too when they take it.
        distance: "l2" (mean squared error over all elements) or "pseudo_huber" (per example
            ``sqrt(|a - b|^2 + c^2) - c`` with ``c = huber_c``, default ``0.00054 sqrt(D)`` for D numbers per
            example, averaged over the batch).
        n: (B,) int level indices in 0..N-1, or None to draw them. eps: (B, ...) noise, or None to draw it.
        generator: draws n and eps (on its own device).

    Returns:
        Scalar loss tensor, on the student's device.
    """
    check_tensor("x_0", x_0, floating=True)
    check_choice("distance", distance, DISTANCES)
    device = model_device(student)
    x_0, cond = x_0.to(device), to_device(cond, device)
    B = x_0.shape[0]
    if levels is None:
        levels = consistency_levels(50, t_min=getattr(student, "t_min", T_MIN))
    levels = check_tensor("levels", torch.as_tensor(levels), ndim=1, floating=True)
    N = levels.shape[0] - 1
    if N < 1 or not bool((levels[1:] > levels[:-1]).all()):
        raise ValueError(f"levels: expected at least 2 strictly increasing times, got {levels.tolist()[:6]}")
    rng_device = generator.device if generator is not None else device
    if n is None:
        n = torch.randint(0, N, (B,), generator=generator, device=generator.device if generator is not None else "cpu")
    n = check_tensor("n", torch.as_tensor(n), shape=(B,)).long().cpu()       # the levels stay on the CPU
    if int(n.min()) < 0 or int(n.max()) > N - 1:
        raise ValueError(f"n: expected level indices in 0..{N - 1}, got values from {int(n.min())} to {int(n.max())}")
    if eps is None:
        eps = torch.randn(x_0.shape, generator=generator, device=rng_device, dtype=x_0.dtype)
    eps = check_tensor("eps", eps, shape=tuple(x_0.shape)).to(device=device, dtype=x_0.dtype)
    levels = levels.cpu().to(x_0.dtype)
    t_next, t_cur = levels[n + 1], levels[n]                           # (B,) each: t_{n+1} > t_n
    tt = expand_like(t_next, x_0)
    x_next = (1 - tt) * x_0 + tt * eps                                 # a point of the forward process
    w_teacher = 1.0 if w is None else (w.to(device) if isinstance(w, torch.Tensor) else w)
    takes_w = {"w": w_teacher} if getattr(student, "guidance_input", False) else {}
    with torch.no_grad():
        x_hat = teacher_step(x_next, t_next, t_cur, cond, w_teacher)   # one step down the SAME path
        wanted = target(x_hat, t_cur, cond, **takes_w)
    got = student(x_next, t_next, cond, **takes_w)
    if distance == "l2":
        return F.mse_loss(got.float(), wanted.float())
    D = got[0].numel()
    c = 0.00054 * math.sqrt(D) if huber_c is None else check_number("huber_c", huber_c, above=0.0)
    sq = (got.float() - wanted.float()).reshape(B, D).square().sum(1)  # (B,)
    return ((sq + c ** 2).sqrt() - c).mean()


def train_consistency(student: ConsistencyModel, teacher_step, data: torch.Tensor, *, labels=None,
                      guidance_range=None, N: int = 50, target_decay: float = 0.95, distance: str = "l2",
                      steps: int | None = None, seconds: float | None = None, batch_size: int = 256,
                      lr: float = 1e-3, lr_schedule: str = "constant", ema_decay: float | None = 0.999, seed: int = 0,
                      device=None, precision: str = "fp32", progress: bool = True) -> TrainResult:
    """Distil ``teacher_step`` into ``student`` (trained in place): ``dlcourse.loop.fit`` on the distillation loss.

    The target network is an EMA of the student with decay ``target_decay`` (mu; Song et al. use 0.95 for
    distillation; 0 makes it the student itself, without gradient). ``fit``'s own EMA (``ema_decay``) is the
    separate, slower average to sample with. ``fit`` has no hook after its optimiser step, so the loss
    updates the target first thing at each step, with the weights the previous step left: the same
    sequence. "auto" precision is not offered: its timing steps would move the target.

    Args:
        student: a ``ConsistencyModel``; to start from the teacher's weights, wrap a copy of its network.
        teacher_step: ``flow_teacher(flow)``. data: (N_data, ...) examples.
        labels: (N_data,) class labels for a conditional teacher, or None.
        guidance_range: ``(w_min, w_max)``: each example's w drawn uniformly in it (LCM), or None (w = 1).
        N: intervals of the discretisation (``consistency_levels(N, t_min=student.t_min)``). distance: as in
            the loss.
        steps, seconds, batch_size, lr, lr_schedule, ema_decay, seed, device, progress: as in ``TrainConfig``.
        precision: "fp32" or "bf16".

    Returns:
        ``fit``'s ``TrainResult`` (``.model`` the student, ``.ema_model`` its slow EMA).
    """
    if not isinstance(student, ConsistencyModel):
        raise TypeError(f"student: expected a ConsistencyModel, got {type(student).__name__}")
    check_number("target_decay", target_decay, minimum=0.0, maximum=0.9999)
    check_choice("distance", distance, DISTANCES)
    check_choice("precision", precision, ("fp32", "bf16"))
    if guidance_range is not None:
        w_min, w_max = (check_number("guidance_range", v) for v in guidance_range)
        if labels is None or w_max < w_min:
            raise ValueError(f"guidance_range: expected (w_min, w_max) with w_min <= w_max and labels given, "
                             f"got {tuple(guidance_range)} with labels {'given' if labels is not None else 'None'}")
    levels = consistency_levels(N, t_min=student.t_min)
    config = TrainConfig(steps=steps, seconds=seconds, lr=lr, lr_schedule=lr_schedule, ema_decay=ema_decay, seed=seed,
                         device=device, precision=precision, progress=progress)
    target = []                                                        # made at the first step, on the device

    def loss_fn(model, batch):
        if not target:
            target.append(EMA(model, target_decay, warmup=False))
        target[0].update(model)                                        # theta- <- mu theta- + (1 - mu) theta
        x_0, cond, w = batch["x_0"], batch.get("labels"), None
        if guidance_range is not None:
            w = w_min + (w_max - w_min) * torch.rand(x_0.shape[0], device=x_0.device)    # (B,)
        return consistency_distillation_loss(model, target[0].model, teacher_step, x_0, levels=levels, cond=cond,
                                             w=w, distance=distance)

    return fit(student, random_batches(data, labels, batch_size=batch_size), loss_fn, config)


def multistep_times(steps: int, *, t_max: float = 1.0) -> list[float]:
    """``steps`` evenly spaced times from ``t_max`` down: ``t_max (1 - k / steps)``, k = 0 .. steps - 1.

    One step is ``[1.0]``; two ``[1.0, 0.5]``; four ``[1.0, 0.75, 0.5, 0.25]``. Lower times after the first
    (``[1.0, 0.3, 0.1, 0.05]``) did better on the 2-D toys (``bench/README.md``).
    """
    check_positive("steps", steps, integer=True)
    t_max = check_number("t_max", t_max, above=0.0, maximum=1.0)
    return [t_max * (1 - k / steps) for k in range(steps)]


@torch.no_grad()
def multistep_sample(model, x_T: torch.Tensor, times, *, cond=None, w=None, generator: torch.Generator | None = None,
                     callback=None, progress: bool = False) -> torch.Tensor:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1): one call of ``model`` per time.

    ``x = f(x_T, times[0])``; for each next time t, put x back on a path at t and denoise::

        x_t = a x + sqrt(t^2 - a^2 t_min^2) z,   a = (1 - t) / (1 - t_min),   z ~ N(0, I);   x = f(x_t, t)

    (x is a point at t_min, ``(1 - t_min) x_0 + t_min eps``; that ``x_t`` is ``(1 - t) x_0 + t eps'`` with
    eps' ~ N(0, I), the forward process at t.)

    Args:
        model: a ``ConsistencyModel`` (or any ``model(x, t, cond)`` with a ``t_min``).
        x_T: (B, ...) the point at ``times[0]``: noise ~ N(0, I) for ``times[0] = 1``. Samples come back on its device.
        times: strictly decreasing flow times in [t_min, 1] (``multistep_times(steps)``).
        cond: conditioning. w: guidance scale, for a model with ``guidance_input``.
        generator: draws the fresh noise (on its own device). callback: ``callback(k, t, x)`` after call k.
        progress: show a progress bar.

    Returns:
        (B, ...) the samples.
    """
    check_tensor("x_T", x_T, floating=True)
    t_min = getattr(model, "t_min", T_MIN)
    times = times.tolist() if isinstance(times, torch.Tensor) else list(times)
    if not times or any(b >= a for a, b in zip(times, times[1:])):
        raise ValueError(f"times: expected at least one time, strictly decreasing, got {times[:6]}")
    if min(times) < t_min or max(times) > 1:
        raise ValueError(f"times: expected flow times in [t_min, 1] = [{t_min:g}, 1], got values from "
                         f"{min(times):g} to {max(times):g}")
    device = model_device(model)
    x, cond = x_T.to(device), to_device(cond, device)
    kw = {} if w is None else {"w": w}
    for k, t in enumerate(tqdm(times, disable=not progress, desc="consistency", leave=False)):
        if k > 0:
            a = (1 - t) / (1 - t_min)
            x = a * x + math.sqrt(max(t ** 2 - a ** 2 * t_min ** 2, 0.0)) * noise_like(x, generator)
        x = model(x, t, cond, **kw)
        if callback is not None:
            callback(k, t, x)
    return x.to(x_T.device)
