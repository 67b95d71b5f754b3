"""Landmark systems rebuilt small (notebook 10): each one's key idea, from the course's own parts."""

from .sd1 import StableDiffusionMini, guided_prediction, training_loss  # noqa: E402  (notebook 10a)
from .imagen import dynamic_threshold, saturation, static_threshold  # noqa: E402  (notebook 10b)
from .flux import guidance_distillation_loss, guidance_distillation_target, load_guidance_distilled  # noqa: E402  (10b)
from .sd3 import MMDiT, MMDiTConfig, joint_attention, race_sample, train_race  # noqa: E402  (notebook 10d)
from .sdxl import (MicroConditioning, RefinerSwitch, crop_embedding, cut_off, high_frequency_energy,  # noqa: E402
                   random_crops, sample_with_refiner, shrink, size_embedding)  # (notebook 10c)
from .sdxl_text import DualTextUNet, SDXLTextToImage, dual_text_embeddings, load_sdxl_text_to_image  # noqa: E402  (10c)
from .cascade import ImagenCascade, SuperResolutionUNet, noise_conditioning_augmentation, super_resolve  # noqa: E402  (10b)
from .dalle3 import (Captioner, caption_quality, corrupt_captions, load_recaptioning, recaption,  # noqa: E402
                     terse_captions)  # (notebook 10e)
