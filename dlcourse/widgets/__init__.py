"""Interactive explorers for the notebooks, one line each: ``from dlcourse.widgets import ...``."""

from ._base import png_bytes, show
from .denoise import denoise_explorer, denoise_preview, denoise_strip
from .forward import (SKIPPED, ForwardReverseFrames, Frame, collect_schedules, forward_reverse_frames,
                      forward_reverse_player, schedule_curves, schedule_explorer, schedule_figure)
from .guidance import guidance_explorer, guided_grid
from .samplers import sampler_explorer, sampler_preview
from .score import ScoreFrame, score_explorer, score_frame_png, score_frames

__all__ = [
    "SKIPPED", "png_bytes", "show",
    "Frame", "ForwardReverseFrames", "forward_reverse_frames", "forward_reverse_player",
    "collect_schedules", "schedule_curves", "schedule_explorer", "schedule_figure",
    "denoise_explorer", "denoise_preview", "denoise_strip",
    "sampler_explorer", "sampler_preview",
    "guidance_explorer", "guided_grid",
    "ScoreFrame", "score_explorer", "score_frame_png", "score_frames",
]
