"""dlcourse: the building blocks of the diffusion course, as small tested modules.

Learn to denoise, and you learn to generate. Each module holds one concept:

- ``dlcourse.schedules``: noise schedules (linear, cosine, shifted)
- ``dlcourse.learned_schedule``: a VDM-style learned monotone log-SNR schedule
- ``dlcourse.forward``: the forward process and its exact posterior
- ``dlcourse.data``: 2-D toys, the procedural shapes set, a photograph, MNIST on request
- ``dlcourse.plotting`` and ``dlcourse.widgets``: figures and interactive explorers
- ``dlcourse.checks``: friendly checks used by the exercises' test cells
- ``dlcourse.device`` and ``dlcourse.fast``: device choice and fast mode
"""

from .device import get_device
from .fast import fast_mode, pick
from .forward import add_noise, q_posterior, q_posterior_sample, q_sample, q_step
from .schedules import NoiseSchedule, cosine_schedule, get_schedule, linear_schedule, shift_schedule

__version__ = "0.1.0"

__all__ = [
    "NoiseSchedule", "add_noise", "cosine_schedule", "fast_mode", "get_device", "get_schedule",
    "linear_schedule", "pick", "q_posterior", "q_posterior_sample", "q_sample", "q_step",
    "shift_schedule",
]
