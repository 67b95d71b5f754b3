"""Conditioning a denoiser on text (notebook 07).

- ``Tokenizer``: captions to word ids and a padding mask; the empty prompt is the token ``<empty>``.
- ``TextEncoder``, ``ImageEncoder``, ``CLIP``, ``clip_loss``, ``train_clip``, ``retrieval_top1``:
  a small CLIP, trained contrastively on (image, caption) pairs (``text_encoder.py``).
- ``cross_attention``, ``CrossAttention``, ``SpatialCrossAttention``, ``attention_maps``: image
  tokens query text tokens, padding masked (``cross_attention.py``).
- ``TextToImage``, ``train_text_to_image``, ``load_text_to_image``, ``prompt_accuracy``, ``held_out``:
  a U-Net reading the frozen text encoder, caption dropout for guidance by the empty prompt, and how
  well samples follow their prompts (``text_to_image.py``).
- ``ControlNet``, ``ControlledModel``, ``train_controlnet``, ``load_controlnet``, ``control_following``: spatial
  control of the frozen text model by an edge map, and how well samples follow it (``controlnet.py``).
- ``IPAdapter``, ``IPAdapterModel``, ``decoupled_cross_attention``, ``train_ip_adapter``, ``load_ip_adapter``:
  a reference image as the prompt, read by a second, decoupled cross-attention (``ip_adapter.py``).
"""

from .controlnet import (ControlFollowing, ControlledModel, ControlNet, control_following, load_controlnet,
                         train_controlnet)
from .cross_attention import CrossAttention, SpatialCrossAttention, attention_maps, cross_attention
from .text_encoder import (CLIP, ImageEncoder, ImageEncoderConfig, TextEncoder, TextEncoderConfig, TextEncoding,
                           caption_batches, clip_loss, retrieval_top1, train_clip)
from .text_to_image import (PromptAccuracy, TextToImage, caption_attributes, drop_captions, held_out,
                            load_text_to_image, prompt_accuracy, read_positions, train_text_to_image)
from .ip_adapter import IPAdapter, IPAdapterModel, decoupled_cross_attention, load_ip_adapter, train_ip_adapter
from .tokenizer import Tokenizer

__all__ = [
    "Tokenizer",
    "TextEncoder", "TextEncoderConfig", "TextEncoding", "ImageEncoder", "ImageEncoderConfig", "CLIP",
    "clip_loss", "caption_batches", "train_clip", "retrieval_top1",
    "cross_attention", "CrossAttention", "SpatialCrossAttention", "attention_maps",
    "TextToImage", "train_text_to_image", "load_text_to_image", "PromptAccuracy", "prompt_accuracy",
    "caption_attributes", "read_positions", "drop_captions", "held_out",
    "ControlNet", "ControlledModel", "train_controlnet", "load_controlnet", "ControlFollowing", "control_following",
    "IPAdapter", "IPAdapterModel", "decoupled_cross_attention", "train_ip_adapter", "load_ip_adapter",
]
