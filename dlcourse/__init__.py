"""dlcourse: the building blocks of the diffusion course, as small tested modules.

Learn to denoise, and you learn to generate. Each module holds one concept; in course order:

The forward process (notebooks 01-02)
- ``dlcourse.schedules``: noise schedules as precomputed tensors (linear, cosine, shifted)
- ``dlcourse.learned_schedule``: a VDM-style learned monotone log-SNR schedule
- ``dlcourse.forward``: the forward process q(x_t | x_0) and its exact posterior

Learning to denoise (notebook 03)
- ``dlcourse.parameterization``: eps, x_0, v and score, the conversions, and the training loss
- ``dlcourse.models``: the MLP, U-Net and DiT denoisers, one call signature, a model registry; the VAE (notebook 06)
- ``dlcourse.loop``: a training loop that takes any loss
- ``dlcourse.batches``: where the loop's batches come from, and transforms such as label dropout
- ``dlcourse.training``: denoiser training on that loop
- ``dlcourse.ema``: the exponential moving average of the weights
- ``dlcourse.checkpoints``: saving and loading models, atomically and checked by SHA-256
- ``dlcourse.pretrained``: the trained models that ship with the course

Sampling and guidance (notebooks 04-05)
- ``dlcourse.samplers``: DDPM, DDIM, Euler, Heun, DPM-Solver++(2M) over one denoiser interface
- ``dlcourse.guidance``: classifier-free guidance

Latent diffusion (notebook 06)
- ``dlcourse.latent``: diffusion in the latent space of a small VAE (``dlcourse.models.VAE``):
  the VAE's loss, the latent scale factor, encoding, the latent training loss, generation

Conditioning (notebook 07)
- ``dlcourse.conditioning``: text conditioning: a word tokenizer, a small CLIP (text and image encoders,
  contrastive loss), cross-attention with a padding mask

Few-step generation (notebook 08)
- ``dlcourse.rectified_flow``: flow matching (uniform or SD3's logit-normal t), sampling and paths with the
  shared samplers, straightness, reflow pairs
- ``dlcourse.consistency``: consistency models: the boundary-preserving parametrisation, distillation from a
  flow teacher (optionally guided, with w as an input), multistep sampling

The score view (notebook 09)
- ``dlcourse.score``: exact scores of Gaussian mixtures, Langevin and annealed Langevin

Systems in miniature (notebook 10)
- ``dlcourse.systems``: landmark systems rebuilt from the course's parts, one idea each: Stable Diffusion 1.x behind
  one call (``sd1``), Imagen's thresholding and cascade (``imagen``, ``cascade``), guidance distillation (``flux``),
  SDXL's micro-conditions, refiner and two text encoders (``sdxl``, ``sdxl_text``), SD3's MM-DiT (``sd3``), DALL-E 3's
  recaptioning (``dalle3``), and one prompt through all of them (``side_by_side``)

Measuring (notebooks 03-05)
- ``dlcourse.judge``: a small CNN that says whether a shapes image is real, and what it shows
- ``dlcourse.metrics``: Frechet and energy distances, baselines, the guidance sweep

Data, figures and exercises
- ``dlcourse.data``: 2-D toys, the procedural shapes set, a photograph, MNIST on request
- ``dlcourse.plotting``: image grids, 2-D scatter plots, vector fields
- ``dlcourse.widgets``: the interactive explorers, one module per notebook
- ``dlcourse.checks``: friendly checks used by the exercises' test cells
- ``dlcourse.claims``: figures the prose states, with their ranges, checked in full mode (``make check-full``)
- ``dlcourse.grading``: autograding (nbgrader) that goes on when a submission kills its kernel

Shared helpers
- ``dlcourse.device``: the device (CUDA, then MPS, then CPU) and the precision
- ``dlcourse.background``: a second training beside the first, each on its share of the CPU (fair equal-time comparisons)
- ``dlcourse.fast``: fast mode for tests and grading
- ``dlcourse.tensors``: broadcasting, seeded noise, eval mode
- ``dlcourse.validation``: argument checks whose errors name the argument
- ``dlcourse.files``: a file's SHA-256, atomic writes, the asset folder

Tools the Makefile runs
- ``dlcourse.release``: generates the student notebooks from the solutions (nbgrader)
- ``dlcourse.workspace``: copies the notebooks into a working folder, never over a learner's work

Installs
- ``dlcourse.__main__``: ``python -m dlcourse notebooks DIR``, the student notebooks for a pip install
- ``dlcourse.colab``: the first code cell of every notebook, which installs the package where it is missing (Colab)
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
