"""Samplers: plain functions that turn noise into data with a trained denoiser.

Every sampler has the same signature::

    sample_x(model, x_T, schedule, steps=None, *, cond=None, guidance_scale=1.0,
             prediction_type="epsilon", spacing="linspace", clip_x0=True,
             generator=None, callback=None, progress=True, **sampler_specific)

so changing sampler means changing one name (``SAMPLERS`` maps names to them):

    =================  ==========================================  ============  ==============
    name               method                                      model calls   order
    =================  ==========================================  ============  ==============
    "ddpm"             ancestral sampling (Ho et al. 2020)         steps         stochastic
    "ddim"             DDIM with ``eta`` (Song et al. 2021)        steps         1 with eta = 0
    "euler"            Euler on the PF-ODE (Karras et al. 2022)    steps         1
    "euler_ancestral"  Euler with fresh noise, ``eta``             steps         stochastic
    "heun"             Heun on the PF-ODE (Karras et al. 2022)     2 steps - 2   2
    "dpmpp_2m"         DPM-Solver++(2M) (Lu et al. 2022)           steps         2
    =================  ==========================================  ============  ==============

``steps=None`` visits all T timesteps; ``spacing`` picks which ones otherwise
(``timesteps_for``). ``clip_x0`` clamps the model's x_0 guess to [-1, 1]: right
for images, wrong for data outside that range (2-D toys). ``callback(i, t, x, x_0_guess)``
is called after every step, i counting down to 0, with the sample after the step.
``x_T`` is moved to the model's device and the samples come back on ``x_T``'s.

Each sampler has three layers (``common.py``): ``<name>_step``, the update of its paper
that notebook 04's learner writes; ``<name>_loop(denoiser, x_T, times, ...)``, the loop
that calls it with any ``Denoiser`` (``denoiser.py``: a network with its time
parametrisation, prediction type, guidance and clipping, answering "x_0 and eps at this
noise level"); and ``sample_<name>``, which builds a ``VPDenoiser`` and the timesteps for a
discrete-time model. The same loops sample a rectified flow::

    denoiser = FlowDenoiser(model, prediction_type="velocity")
    x_0 = euler_loop(denoiser, x_T, flow_times(4))
"""

from ..validation import check_choice
from .common import run_loop
from .ddim import ddim_loop, ddim_step, sample_ddim
from .ddpm import ddpm_loop, ddpm_step, sample_ddpm
from .denoiser import Denoiser, FlowDenoiser, VPDenoiser, flow_times, model_output, vp_times
from .dpmpp_2m import dpmpp_2m_loop, dpmpp_2m_step, sample_dpmpp_2m
from .euler import euler_loop, euler_step, sample_euler
from .euler_ancestral import ancestral_sigmas, euler_ancestral_loop, euler_ancestral_step, sample_euler_ancestral
from .heun import heun_loop, heun_step, sample_heun
from .spacing import SPACINGS, respace, timesteps_for

# sample_<name>(model, x_T, schedule, steps, ...): a discrete-time model and its schedule
SAMPLERS = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "euler": sample_euler,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
    "euler_ancestral": sample_euler_ancestral,
}

# <name>_loop(denoiser, x_T, times, ...): any Denoiser, VP or flow
LOOPS = {"ddpm": ddpm_loop, "ddim": ddim_loop, "euler": euler_loop, "heun": heun_loop, "dpmpp_2m": dpmpp_2m_loop,
         "euler_ancestral": euler_ancestral_loop}

SAMPLER_LABELS = {"ddpm": "DDPM (ancestral)", "ddim": "DDIM (eta = 0)", "euler": "Euler (PF-ODE)",
                  "heun": "Heun (PF-ODE)", "dpmpp_2m": "DPM-Solver++(2M)", "euler_ancestral": "Euler ancestral"}


def model_calls(name: str, steps: int) -> int:
    """Network evaluations (NFE) of sampler ``name`` with ``steps`` steps: ``2 steps - 2`` for Heun
    (its first and last steps are Euler steps), ``steps`` for the others."""
    check_choice("name", name, SAMPLERS)
    return max(1, 2 * steps - 2) if name == "heun" else steps


def get_sampler(name: str):
    """The sampler function called ``name``, one of ``SAMPLERS``."""
    check_choice("name", name, SAMPLERS)
    return SAMPLERS[name]


__all__ = [
    "Denoiser", "FlowDenoiser", "LOOPS", "SAMPLERS", "SAMPLER_LABELS", "SPACINGS", "VPDenoiser", "ancestral_sigmas",
    "ddim_loop", "ddim_step", "ddpm_loop", "ddpm_step", "dpmpp_2m_loop", "dpmpp_2m_step", "euler_ancestral_loop",
    "euler_ancestral_step", "euler_loop", "euler_step",
    "flow_times", "get_sampler", "heun_loop", "heun_step", "model_calls", "model_output",
    "respace", "run_loop", "sample_ddim", "sample_ddpm", "sample_dpmpp_2m", "sample_euler",
    "sample_euler_ancestral", "sample_heun",
    "timesteps_for", "vp_times",
]
