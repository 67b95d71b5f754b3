"""Rectified flow and reflow: straight paths from noise to data, and sampling in a few steps (notebook 08).

The flow joins data and noise by straight lines (the course's time: noise at t = 1)::

    x_t = (1 - t) x_0 + t eps,   eps ~ N(0, I),   t in [0, 1];   dx_t / dt = eps - x_0

A network ``v(x_t, t)`` trained by flow matching, ``E || v(x_t, t) - (eps - x_0) ||^2`` (Liu, Gong &
Liu 2023, "Flow Straight and Fast"; Lipman et al. 2023, "Flow Matching for Generative Modeling", with
sigma_min = 0), learns the average velocity ``E[eps - x_0 | x_t]``; the ODE ``dx/dt = v(x, t)``, run
from t = 1 down to 0, carries N(0, I) to the data. Lines from different pairs cross, the average
bends, and the ODE's paths curve: Euler's method needs many steps. *Reflow* (Liu et al. 2023) draws
pairs ``(eps, x_0 = ODE(eps))`` from the trained flow and trains again on the lines between *those*
pairs: they do not cross (ODE paths never do), so the new flow's paths are straighter and one Euler
step lands close to where fifty do.

    flow_matching_loss(model, x_0)             the training loss (any coupling of x_0 and eps)
    sample_times(n, "logit_normal")            t for training: uniform, or SD3's logit-normal
    train_flow(model, data or pairs, ...)      ``dlcourse.loop.fit`` on that loss
    sample_flow(model, x_T, steps)             the ODE, solved by the shared samplers
    trajectories(model, x_T, steps)            the points of the ODE's path, (steps + 1, B, ...)
    straightness(path)                         Liu et al.'s S: 0 for a straight path at constant speed
    reflow_pairs(model, n, steps=50)           the coupling (eps, x_0) that reflow trains on
    one_step_distillation_loss(model, eps, x_0)  train one Euler step to land on the pair's x_0 (k = 1)

A network is called as ``model(x_t, t * time_scale, cond)``: the course's networks embed timesteps
0..999 (``dlcourse.models.embeddings``), so train and sample them with ``time_scale=1000``, the same in
both. Liu et al. run time the other way (their X_0 is noise, X_1 data); here t = 0 is data, as in SD3
(Esser et al. 2024). Figures (quality at 1-50 Euler steps before and after reflow, straightness,
uniform against logit-normal t): ``bench/README.md``, from ``bench/reflow_toy.py``.

Example (2-D toy)::

    flow = train_flow(MLPDenoiser(), make_toy("two_moons", 8000), steps=2000, time_scale=1000).model
    pairs = reflow_pairs(flow, 8000, steps=50, time_scale=1000)
    flow2 = train_flow(copy.deepcopy(flow), pairs, steps=2000, time_scale=1000).model   # reflow: a copy
    x_0 = sample_flow(flow2, torch.randn(1000, 2), steps=1, time_scale=1000)
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .batches import random_batches
from .device import model_device
from .loop import TrainConfig, TrainResult, fit
from .samplers import LOOPS, FlowDenoiser, flow_times
from .tensors import expand_like, seeded_noise, to_device
from .validation import check_choice, check_int, check_number, check_positive, check_tensor

__all__ = ["Coupling", "SOLVERS", "T_SAMPLINGS", "flow_matching_loss", "one_step_distillation_loss", "reflow_pairs",
           "sample_flow", "sample_times", "straightness", "train_flow", "trajectories"]

T_SAMPLINGS = ("uniform", "logit_normal")
SOLVERS = ("euler", "heun", "dpmpp_2m")          # deterministic: a flow's sample is a function of its noise


class Coupling(NamedTuple):
    """Noise and data paired row by row: ``eps`` (N, ...) where each path starts, ``x_0`` (N, ...) where it ends."""

    eps: torch.Tensor
    x_0: torch.Tensor


def sample_times(n: int, sampling: str = "uniform", *, logit_mean: float = 0.0, logit_std: float = 1.0,
                 generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """``n`` training times t in (0, 1): uniform, or logit-normal (Esser et al. 2024, sec. 3.1).

    Logit-normal: ``t = sigmoid(u)``, ``u ~ N(logit_mean, logit_std^2)`` (SD3's m and s; they train
    with m = 0, s = 1). Its median is ``sigmoid(m)``: more training at middle times, where the
    velocity is hardest to guess, less near t = 0 and 1.

    Args:
        n: how many. sampling: "uniform" or "logit_normal". logit_mean, logit_std: m and s.
        generator: draws the times (on its own device).
        device: where they are returned; the generator's (or the CPU) if None.

    Returns:
        (n,) float32 times.
    """
    check_positive("n", n, integer=True)
    check_choice("sampling", sampling, T_SAMPLINGS)
    logit_mean = check_number("logit_mean", logit_mean)
    logit_std = check_number("logit_std", logit_std, above=0)
    rng_device = generator.device if generator is not None else device
    if sampling == "uniform":
        t = torch.rand(n, generator=generator, device=rng_device)
    else:
        t = torch.sigmoid(logit_mean + logit_std * torch.randn(n, generator=generator, device=rng_device))
    return t if device is None else t.to(device)


def flow_matching_loss(model, x_0: torch.Tensor, *, eps: torch.Tensor | None = None, t=None, cond=None,
                       time_scale: float = 1.0, t_sampling: str = "uniform", logit_mean: float = 0.0,
                       logit_std: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """The flow-matching loss, one Monte-Carlo estimate (Liu et al. 2023; Lipman et al. 2023).

    ``x_t = (1 - t) x_0 + t eps`` and the mean squared error between ``model(x_t, t * time_scale, cond)``
    and the velocity ``eps - x_0``, averaged over all elements. Without ``eps`` the noise is drawn
    afresh, independent of ``x_0`` (the first rectified flow); with it, ``(eps, x_0)`` is a coupling
    such as ``reflow_pairs``'s (reflow). ``t`` is drawn first, then ``eps``.

    Args:
        model: called as ``model(x_t, t, cond)``; predicts the velocity. cond: passed through to it.
        x_0: (B, ...) data; moved to the model's device. eps: (B, ...) its paired noise, or None to draw it.
        t: (B,) times in [0, 1] (or one number for all), or None to draw them by ``t_sampling``.
        time_scale: the network sees ``t * time_scale`` (1000 for ``dlcourse.models``).
        t_sampling, logit_mean, logit_std: how t is drawn (``sample_times``).
        generator: draws ``t`` and ``eps`` (on its own device).

    Returns:
        Scalar loss tensor, on the model's device.
    """
    check_tensor("x_0", x_0, floating=True)
    time_scale = check_number("time_scale", time_scale, above=0)
    device = model_device(model)
    x_0, cond = x_0.to(device), to_device(cond, device)
    B = x_0.shape[0]
    if t is None:
        t = sample_times(B, t_sampling, logit_mean=logit_mean, logit_std=logit_std, generator=generator)
    t = torch.as_tensor(t, dtype=x_0.dtype).to(device)
    t = t.expand(B) if t.ndim == 0 else check_tensor("t", t, shape=(B,))                # (B,)
    if eps is None:
        rng_device = generator.device if generator is not None else device
        eps = torch.randn(x_0.shape, generator=generator, device=rng_device, dtype=x_0.dtype)
    eps = check_tensor("eps", eps, shape=tuple(x_0.shape)).to(device=device, dtype=x_0.dtype)
    tt = expand_like(t, x_0)                                                            # (B, 1, ...)
    x_t = (1 - tt) * x_0 + tt * eps
    output = model(x_t, t * time_scale, cond)
    return F.mse_loss(output.float(), (eps - x_0).float())


def one_step_distillation_loss(model, eps: torch.Tensor, x_0: torch.Tensor, *, cond=None,
                               time_scale: float = 1.0) -> torch.Tensor:
    """Liu et al.'s distillation with k = 1: one Euler step of the flow from ``eps`` should land on ``x_0``.

    The pair ``(eps, x_0)`` comes from one ODE path (``reflow_pairs``). The prediction is exactly what
    ``sample_flow(model, eps, 1)`` returns, but with gradient: the sampler starts at
    ``x = scale(t_max) eps`` (t_max = 0.999, ``flow_times(1)``) and steps to t = 0,
    ``x_0_hat = x - t_max v(x, t_max)``. The loss is the mean squared error to ``x_0``. Where
    ``flow_matching_loss`` on the same pairs spreads the network over every t, this spends it all on
    the one time a one-step sampler asks about (Liu et al. 2023, sec. 2.3, with an L2 distance).

    Args:
        model: a velocity network ``model(x_t, t, cond)``, e.g. a copy of a reflowed flow.
        eps: (B, ...) noise, each row the start of ``x_0``'s ODE path. x_0: (B, ...) where the path ends.
        cond: passed through to the model. time_scale: as in training.

    Returns:
        Scalar loss tensor, on the model's device.
    """
    check_tensor("x_0", x_0, floating=True)
    eps = check_tensor("eps", eps, shape=tuple(x_0.shape), floating=True)
    time_scale = check_number("time_scale", time_scale, above=0)
    device = model_device(model)
    x_0, cond = x_0.to(device), to_device(cond, device)
    t_max = flow_times(1)[0]
    x = FlowDenoiser.scale(t_max) * eps.to(device=device, dtype=x_0.dtype)          # (B, ...) the sampler's start
    t = torch.full((x.shape[0],), t_max * time_scale, device=device, dtype=x_0.dtype)
    x_0_hat = x - t_max * model(x, t, cond)
    return F.mse_loss(x_0_hat.float(), x_0.float())


def _coupling_batches(pairs: Coupling, batch_size: int):
    """Endless random batches ``{"x_0", "eps"}`` of a coupling, rows kept together (global random state)."""
    while True:
        idx = torch.randint(0, pairs.x_0.shape[0], (batch_size,), device=pairs.x_0.device)  # (batch_size,)
        yield {"x_0": pairs.x_0[idx], "eps": pairs.eps[idx.to(pairs.eps.device)]}


def train_flow(model, data, *, steps: int | None = None, seconds: float | None = None, batch_size: int = 256,
               lr: float = 1e-3, time_scale: float = 1.0, t_sampling: str = "uniform", logit_mean: float = 0.0,
               logit_std: float = 1.0, ema_decay: float | None = 0.999, seed: int = 0, device=None,
               precision: str = "auto", progress: bool = True) -> TrainResult:
    """Train ``model`` (in place) with AdamW on ``flow_matching_loss``: ``dlcourse.loop.fit`` with that loss.

    Args:
        model: a velocity network ``model(x_t, t, cond)``, trained unconditionally.
        data: (N, ...) examples, each batch paired with fresh noise (the first flow); or a ``Coupling``
            ``(eps, x_0)`` (``reflow_pairs``), rows drawn together (reflow). For reflow, train a copy
            of the flow that made the pairs, so both stay at hand: ``copy.deepcopy(flow)``, and
            ``.requires_grad_(True)`` if it is a ``TrainResult.ema_model`` (whose weights are frozen).
        steps, seconds, lr, ema_decay, seed, device, precision, progress: as in ``TrainConfig``.
        batch_size: examples per step. time_scale, t_sampling, logit_mean, logit_std: as in the loss.

    Returns:
        ``fit``'s ``TrainResult`` (``.model``, ``.ema_model``, ``.losses``, ...).
    """
    check_positive("batch_size", batch_size, integer=True)
    check_choice("t_sampling", t_sampling, T_SAMPLINGS)
    config = TrainConfig(steps=steps, seconds=seconds, lr=lr, ema_decay=ema_decay, seed=seed,
                         device=device, precision=precision, progress=progress)
    if isinstance(data, tuple):
        pairs = Coupling(*data)
        check_tensor("data.x_0", pairs.x_0, floating=True)
        check_tensor("data.eps", pairs.eps, shape=tuple(pairs.x_0.shape), floating=True)
        batches = _coupling_batches(pairs, batch_size)
    else:
        batches = random_batches(data, batch_size=batch_size)

    def loss_fn(model, batch):
        return flow_matching_loss(model, batch["x_0"], eps=batch.get("eps"), time_scale=time_scale,
                                  t_sampling=t_sampling, logit_mean=logit_mean, logit_std=logit_std)

    return fit(model, batches, loss_fn, config)


def sample_flow(model, x_T: torch.Tensor, steps: int, *, solver: str = "euler", time_scale: float = 1.0,
                shift: float = 1.0, cond=None, guidance_scale: float = 1.0, callback=None,
                progress: bool = False) -> torch.Tensor:
    """Solve the flow's ODE from noise ``x_T`` to data in ``steps`` steps: a ``FlowDenoiser`` and a shared loop.

    The loop (``dlcourse.samplers.LOOPS[solver]``) visits ``flow_times(steps, shift=shift)`` (from
    t_max = 0.999), then t = 0. It reads ``x_T`` in the variance-preserving form: the flow's own point
    at the first time t_1 is ``scale(t_1) x_T``, ``scale(t) = sqrt((1 - t)^2 + t^2)`` (0.999 at
    t_max). Each Euler step from t to the next time t' is ``x_t' = x_t + (t' - t) v(x_t, t)``.

    Args:
        model: a velocity network trained with ``flow_matching_loss``.
        x_T: (B, ...) noise ~ N(0, I); the samples come back on its device.
        steps: steps (network calls; Heun: 2 steps - 2). solver: "euler", "heun" or "dpmpp_2m".
        time_scale: as in training. shift: SD3's time shift (``flow_times``); 1 spaces times evenly.
        cond, guidance_scale: conditioning and classifier-free guidance (``FlowDenoiser``).
        callback: ``callback(i, t, x, x_0_guess)`` after every step, i counting down to 0, t the time the
            step left; ``x`` is the flow's own point at the next time (not the loops' scaled form).
        progress: show a progress bar.

    Returns:
        (B, ...) the samples x_0.
    """
    check_choice("solver", solver, SOLVERS)
    denoiser = FlowDenoiser(model, cond=cond, guidance_scale=guidance_scale, time_scale=time_scale)
    times = flow_times(steps, shift=shift)
    loop_callback = None
    if callback is not None:
        ends = times[1:] + [0.0]

        def loop_callback(i, t, x, x_0):            # x: the loops' x_s / scale(s)
            callback(i, t, FlowDenoiser.scale(ends[len(times) - 1 - i]) * x, x_0)

    return LOOPS[solver](denoiser, x_T, times, callback=loop_callback, progress=progress)


def trajectories(model, x_T: torch.Tensor, steps: int, *, solver: str = "euler", time_scale: float = 1.0,
                 shift: float = 1.0, cond=None, guidance_scale: float = 1.0, progress: bool = False) -> torch.Tensor:
    """The points of the ODE's path from each ``x_T``: where ``sample_flow`` starts and the end of every step.

    Args: as in ``sample_flow``.

    Returns:
        (steps + 1, B, ...) on ``x_T``'s device: point k is the flow's x at time
        ``(flow_times(steps, shift=shift) + [0])[k]``; point 0 is ``scale(t_1) x_T``, the last the sample.
    """
    points = [FlowDenoiser.scale(flow_times(steps, shift=shift)[0]) * x_T]
    sample_flow(model, x_T, steps, solver=solver, time_scale=time_scale, shift=shift, cond=cond,
                guidance_scale=guidance_scale, progress=progress,
                callback=lambda i, t, x, x_0: points.append(x.to(x_T.device)))
    return torch.stack(points)                                        # (steps + 1, B, ...)


def straightness(path: torch.Tensor, times=None) -> float:
    """How far a path's velocity strays from the straight line between its ends: Liu et al. 2023's S.

    For a path Z on [0, 1], ``S(Z) = int_0^1 || (Z_1 - Z_0) - dZ/dtau ||^2 dtau`` (Liu et al. 2023, with
    their result that reflow straightens), averaged over the paths. S = 0 exactly for a straight line
    run at constant speed, the path one Euler step follows exactly; a straight line run at varying
    speed is not 0. Here tau runs from the first point (0) to the last (1), linear in ``times``, and
    the velocity is constant on each segment (as on an Euler path, where it is the network's)::

        S = mean over paths of  sum_k (tau_{k+1} - tau_k) || d - (x_{k+1} - x_k) / (tau_{k+1} - tau_k) ||^2,
        d = x_K - x_0,   || . ||^2 summed over the coordinates.

    Examples: a line: 0; (0, 0) -> (1, 0) -> (1, 1) at tau 0, 1/2, 1: 2; a half circle of radius 1:
    pi^2 - 4. A path of one segment is always 0: measure on many steps (``trajectories(..., 50)``).

    Args:
        path: (K + 1, B, ...) K + 1 points of B paths (``trajectories``), K >= 1.
        times: the K + 1 times of the points, increasing or decreasing (for ``trajectories`` with
            ``shift``: ``flow_times(steps, shift=shift) + [0]``); None for evenly spaced.

    Returns:
        S >= 0, a float.
    """
    check_tensor("path", path, floating=True)
    if path.ndim < 2 or path.shape[0] < 2:
        raise ValueError(f"path: expected (K + 1, B, ...) points with K >= 1, got shape {tuple(path.shape)}")
    K = path.shape[0] - 1
    x = path.double().reshape(K + 1, path.shape[1], -1)                # (K + 1, B, D)
    if times is None:
        tau = torch.linspace(0, 1, K + 1, dtype=torch.float64)
    else:
        t = torch.as_tensor(times, dtype=torch.float64).cpu()
        check_tensor("times", t, shape=(K + 1,))
        tau = (t - t[0]) / (t[-1] - t[0])
        if not bool((tau[1:] > tau[:-1]).all()):
            raise ValueError("times: expected strictly increasing or strictly decreasing times")
    dtau = (tau[1:] - tau[:-1]).to(x.device)                           # (K,)
    u = (x[1:] - x[:-1]) / dtau[:, None, None]                         # (K, B, D) segment velocities
    d = x[-1] - x[0]                                                   # (B, D)
    per_path = (dtau[:, None] * (d - u).square().sum(-1)).sum(0)       # (B,)
    return float(per_path.mean())


def reflow_pairs(model, n: int, *, steps: int = 50, seed: int = 0, shape=None, solver: str = "euler",
                 time_scale: float = 1.0, shift: float = 1.0, batch_size: int = 4096,
                 progress: bool = False) -> Coupling:
    """The coupling reflow trains on: noise, and where the flow's ODE takes it (Liu et al. 2023's reflow).

    ``eps`` is drawn from ``seed`` on the CPU (``seeded_noise``: the same pairs on any device);
    ``x_0 = sample_flow(model, eps, steps, ...)``, in batches of ``batch_size``. Each pair comes
    from one ODE path: a fresh noise for ``x_0`` would be the independent coupling again.

    Args:
        model: the trained flow. n: number of pairs. seed: seeds the noise.
        steps, solver, time_scale, shift, progress: as in ``sample_flow`` (steps enough to follow the ODE).
        shape: the shape of one example, e.g. (2,) or (3, 16, 16); None for ``(model.data_dim,)``.
        batch_size: examples per ``sample_flow`` call.

    Returns:
        ``Coupling(eps, x_0)``, each (n, *shape), on the CPU.
    """
    check_positive("n", n, integer=True)
    check_int("seed", seed)
    check_positive("batch_size", batch_size, integer=True)
    if shape is None:
        if not isinstance(getattr(model, "data_dim", None), int):
            raise ValueError("shape: give the shape of one example (the model has no data_dim)")
        shape = (model.data_dim,)
    eps = seeded_noise((n, *shape), seed)                                # (n, *shape) on the CPU
    x_0 = torch.cat([sample_flow(model, chunk, steps, solver=solver, time_scale=time_scale, shift=shift,
                                 progress=progress) for chunk in eps.split(batch_size)])
    return Coupling(eps, x_0)
