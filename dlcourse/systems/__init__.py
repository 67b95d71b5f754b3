"""Landmark systems rebuilt small (notebook 10): each one's key idea, from the course's own parts."""

from .sd1 import StableDiffusionMini, guided_prediction, training_loss  # noqa: E402  (notebook 10a)
