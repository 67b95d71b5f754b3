"""Interactive explorers for the notebooks, one line each: ``from dlcourse.widgets import ...``.

Every widget is a thin shell around a plain function that does the computation and is
tested on its own; one module per notebook:

    forward     (01)  forward_reverse_frames -> forward_reverse_player    an image into noise and back, with its
                      pixel_histogram, forward_reverse_stats_pngs          histogram against N(0, 1) and its SNR
    schedules   (02)  schedule_curves, schedule_figure -> schedule_explorer   alpha_bar_t and log-SNR, toggled
    denoise     (03)  denoise_preview, denoise_strip -> denoise_explorer   the model's guess of x_0 at each t
    samplers    (04)  sampler_preview, sampler_verdict -> sampler_explorer  sampler, steps and spacing, timed, judged
    guidance    (05)  guided_grid -> guidance_explorer                     the guidance scale w, slid
    latent      (06)  latent_interpolation -> latent_explorer              pixel against latent interpolation
    text        (07a, 10a) prompt_samples -> prompt_box                    a prompt, w and a Generate button
    text        (07a) word_attention, attention_image -> attention_viewer  where each word of a prompt is read
    image_prompt (07b) image_prompt_samples -> image_prompt_explorer       a reference image and lambda (IP-Adapter)
    control     (07b) drawn_controls, controlled_samples -> control_explorer   an edge map, with and without ControlNet
    fewstep     (08)  few_step_samples, few_step_figure -> few_step_explorer   samplers side by side at 1-8 calls
    score       (09)  score_frames, score_frame_png -> score_explorer      the score field over noise levels
    systems     (10)  run_systems, systems_rows -> systems_prompt_box      one prompt through every system, timed, judged

What they share lives in ``_base``: a computation that takes a model runs it on the model's
device (``dlcourse.device.model_device``) and gives back CPU tensors; seeded noise is drawn
on the CPU and moved, so a seed shows the same picture on every device. Pictures are
enlarged by whole pixels and shown at their own size (``_base.image_widget``), never stretched
to the output's width; figures are ``matplotlib.figure.Figure``s, never pyplot's, so nothing is
left open for the kernel to display a second time. Notebooks are also
executed without a browser (tests, nbgrader): the builders never block, and while nbgrader
executes a notebook (``dlcourse.fast.grading()``) they build nothing, print ``SKIPPED`` and
return None.
"""

from ._base import SKIPPED, png_bytes, show
from .denoise import denoise_explorer, denoise_preview, denoise_strip
from .fewstep import few_step_explorer, few_step_figure, few_step_samples
from .forward import (HIST_EDGES, ForwardReverseFrames, Frame, forward_reverse_frames, forward_reverse_player,
                      forward_reverse_stats_pngs, pixel_histogram)
from .control import control_explorer, controlled_samples, drawn_controls, outline
from .guidance import guidance_explorer, guided_grid
from .image_prompt import image_prompt_explorer, image_prompt_samples
from .latent import Interpolation, latent_explorer, latent_interpolation
from .samplers import sampler_explorer, sampler_preview, sampler_verdict
from .schedules import collect_schedules, schedule_curves, schedule_explorer, schedule_figure
from .score import ScoreFrame, score_explorer, score_frame_png, score_frames
from .systems import systems_prompt_box, systems_rows
from .text import (WordAttention, attention_image, attention_viewer, check_prompt, prompt_box, prompt_samples,
                   word_attention)

__all__ = [
    "SKIPPED", "png_bytes", "show",
    "Frame", "ForwardReverseFrames", "HIST_EDGES", "forward_reverse_frames", "forward_reverse_player",
    "forward_reverse_stats_pngs", "pixel_histogram",
    "collect_schedules", "schedule_curves", "schedule_explorer", "schedule_figure",
    "denoise_explorer", "denoise_preview", "denoise_strip",
    "sampler_explorer", "sampler_preview", "sampler_verdict",
    "guidance_explorer", "guided_grid",
    "Interpolation", "latent_explorer", "latent_interpolation",
    "drawn_controls", "controlled_samples", "control_explorer", "outline",
    "few_step_explorer", "few_step_figure", "few_step_samples",
    "ScoreFrame", "score_explorer", "score_frame_png", "score_frames",
    "systems_prompt_box", "systems_rows",
    "check_prompt", "prompt_samples", "prompt_box", "WordAttention", "word_attention", "attention_image",
    "attention_viewer",
    "image_prompt_samples", "image_prompt_explorer",
]
