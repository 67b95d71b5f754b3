"""Landmark systems rebuilt small (notebook 10): each one's key idea, from the course's own parts."""

from .sd1 import StableDiffusionMini, guided_prediction, training_loss  # noqa: E402  (notebook 10a)
from .imagen import dynamic_threshold, saturation, static_threshold  # noqa: E402  (notebook 10b)
from .flux import guidance_distillation_loss, guidance_distillation_target, load_guidance_distilled  # noqa: E402  (10b)
from .sd3 import MMDiT, MMDiTConfig, joint_attention  # noqa: E402  (notebook 10c)
from .sdxl import MicroConditioning, crop_embedding, cut_off, random_crops  # noqa: E402  (notebook 10)
