"""Samplers: plain functions that turn noise into data with a trained denoiser.

Every sampler has the same signature::

    sample_x(model, x_T, schedule, steps=None, *, cond=None, guidance_scale=1.0,
             prediction_type="epsilon", spacing="linspace", clip_x0=True,
             generator=None, callback=None, progress=True, **sampler_specific)

so changing sampler means changing one name (``SAMPLERS`` maps names to them):

    ============  ============================================  ============  ==============
    name          method                                        model calls   order
    ============  ============================================  ============  ==============
    "ddpm"        ancestral sampling (Ho et al. 2020)           steps         stochastic
    "ddim"        DDIM with ``eta`` (Song et al. 2021)          steps         1 with eta = 0
    "euler"       Euler on the PF-ODE (Karras et al. 2022)      steps         1
    "heun"        Heun on the PF-ODE (Karras et al. 2022)       2 steps - 2   2
    "dpmpp_2m"    DPM-Solver++(2M) (Lu et al. 2022)             steps         2
    ============  ============================================  ============  ==============

``steps=None`` visits all T timesteps; ``spacing`` picks which ones otherwise
(``timesteps_for``). ``clip_x0`` clamps the model's x_0 guess to [-1, 1]: right
for images, wrong for data outside that range (2-D toys). ``callback(i, t, x, x_0_guess)``
is called after every step, i counting down to 0, with the sample after the step.
Guidance and prediction types are handled once, in ``common.predict_x0_eps``.
"""

from ..validation import check_choice
from .common import model_output, predict_x0_eps
from .ddim import sample_ddim
from .ddpm import sample_ddpm
from .dpmpp_2m import sample_dpmpp_2m
from .euler import sample_euler
from .heun import sample_heun
from ..parameterization import sigma_from_alpha_bar as karras_sigmas  # old name, kept for notebook 09 until it moves
from .spacing import SPACINGS, respace, timesteps_for

SAMPLERS = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "euler": sample_euler,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
}

SAMPLER_LABELS = {"ddpm": "DDPM (ancestral)", "ddim": "DDIM (eta = 0)", "euler": "Euler (PF-ODE)",
                  "heun": "Heun (PF-ODE)", "dpmpp_2m": "DPM-Solver++(2M)"}


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
    "SAMPLERS", "SAMPLER_LABELS", "SPACINGS", "get_sampler", "model_calls", "karras_sigmas", "model_output", "predict_x0_eps", "respace",
    "sample_ddim", "sample_ddpm", "sample_dpmpp_2m", "sample_euler", "sample_heun", "timesteps_for",
]
