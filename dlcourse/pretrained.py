"""The trained models that ship with the course, checked before they are loaded.

    model, info = load_pretrained("shapes16_unet")      # EMA weights, eval mode, best device
    schedule = get_schedule(info["schedule"], info["T"])
    x_0 = sample_ddpm(model, torch.randn(16, 3, 16, 16), schedule, steps=50)

A notebook that is about sampling, guidance or evaluation should not have to train
a model first, so a few small ones are in ``dlcourse/assets/``. Each entry of
``PRETRAINED`` names its file, the file's SHA-256 *written here in the code*, what the
model is, and the one command that trains it again
(``python scripts/train_checkpoints.py NAME``).

Why the digest lives in the code and not only in the ``.sha256`` file next to the
checkpoint: whoever can replace the checkpoint can replace that file too. A digest
in the package itself catches a swapped file even when its sidecar was swapped
with it. It is checked before a byte is unpickled, and the file is then read with
``torch.load(weights_only=True)`` (see ``dlcourse.checkpoints``).

Retraining gives a file with a new digest, even with identical weights
(``torch.save`` writes a random serialization id, and the file records the training
time), so after ``scripts/train_checkpoints.py`` paste the printed digest here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from .checkpoints import build_model, load_checkpoint
from .device import get_device
from .files import ASSET_DIR

__all__ = ["ASSET_DIR", "PRETRAINED", "PretrainedEntry", "list_pretrained", "load_pretrained", "pretrained_path"]


@dataclass(frozen=True)
class PretrainedEntry:
    """One shipped checkpoint.

    Attributes:
        name: the name passed to ``load_pretrained``.
        filename: the file in ``ASSET_DIR``.
        sha256: hex SHA-256 of that file, checked before loading.
        description: one line: the model, its data and how good it is.
        command: the command (from the repository root) that trains it again.
    """

    name: str
    filename: str
    sha256: str
    description: str
    command: str


def _entry(name: str, sha256: str, description: str, script: str = "train_checkpoints") -> PretrainedEntry:
    return PretrainedEntry(name, f"{name}.pt", sha256, description, f"python scripts/{script}.py {name}")


PRETRAINED: dict[str, PretrainedEntry] = {e.name: e for e in (
    _entry("toy2d_mlp",
           "dd2caa455d27f2233806754f593699d4491398873c4a13adfc72fe6045fa1eff",
           "MLPDenoiser on two moons, linear schedule T=1000, epsilon prediction; "
           "samples within 2x of the real-vs-real energy distance"),
    _entry("shapes16_unet",
           "5c97bffc96d579ad456bf60adfda14d56f70cedce3e02b13f5f9a8e1ec5717e9",
           "unconditional U-Net (0.81M, default UNetConfig) on 16 px shapes, cosine T=1000, v-prediction; "
           ">= 95% valid samples by the judge, with DDPM and with the deterministic samplers"),
    _entry("shapes16_unet_cond",
           "6b7e9a3d5c000917ca3c6fba0d6baa2c4973e9776eb16eef9eae014767e385f1",
           "class-conditional U-Net (4 shapes + null label, p_uncond 0.1) on 16 px shapes, cosine T=1000, "
           "epsilon; >= 90% of samples show the requested shape without guidance"),
    _entry("vae_shapes32",
           "3cf020efeab6a6bc990ecd95c38901032ad784db2bdcfcc71ed5633c01ae58f0",
           "KL-regularised VAE, 32x32x3 shapes -> 4x8x8 latents (12x fewer numbers); info has its "
           "scale_factor and beta; reconstructions keep shape, colour and scale for >= 99% of held-out images",
           script="train_latent"),
    _entry("ae_shapes32",
           "36a6d02be6d5bd3de77924740d6028fcd1d0d649d96930f30aeb038799e8dd4d",
           "plain autoencoder: vae_shapes32's network and recipe with beta = 0 (no KL term), for notebook 06's "
           "comparison of a regularised and an unregularised latent space; info has its scale_factor",
           script="train_latent"),
    _entry("latent_shapes32_unet",
           "e80629784898b53c6cbace2bad1beae358a39186af52b15c303062a671eda832",
           "U-Net (1.23M) on the scaled 4x8x8 latents of vae_shapes32, cosine T=1000, v-prediction; info has "
           "the scale_factor; sample with clip_x0=False and decode (dlcourse.latent.generate); >= 95% valid "
           "and FD within 3x the real-vs-real floor with DPM-Solver++(2M) at 20 steps",
           script="train_latent"),
    _entry("clip_shapes16",
           "05dc9f94e98cb3e68e0493ef013a3bf0427f1a9aea1490a54d5b7fed0450a4bd",
           "small CLIP (0.23M, stored in float16: TextEncoder width 64, 2 blocks; ImageEncoder 32-64-64 -> 64) trained "
           "contrastively on 16 px shapes captions, every blue triangle held out; info has its tokenizer; "
           "caption -> image top-1 100% (an image with the query's caption) among 100 held-out pairs",
           script="train_conditioning"),
    _entry("shapes16_unet_text",
           "0867ca50ac06955893c97dbd5567d73b56264fc3c118494d606f8b28fe42352e",
           "text-conditioned U-Net (0.90M, stored in float16) reading clip_shapes16's frozen tokens by "
           "cross-attention at 4x4 and 8x8, started from shapes16_unet, caption dropout 0.15 to the empty prompt, "
           "cosine T=1000, v-prediction, every blue triangle held out; load with "
           "dlcourse.conditioning.load_text_to_image; "
           ">= 99% of held-in prompts followed in shape, colour and size with DDIM-20 at w = 1 and 3",
           script="train_conditioning"),
    _entry("ip_adapter_shapes16",
           "0d8c50c450e168f3d1e993a9647be80b8c58b5c5a7506bfeab0a5dc4befbc601",
           "IP-Adapter for shapes16_unet_text (58K parameters, stored in float16): clip_shapes16's frozen image "
           "embedding projected to 4 tokens, decoupled key/value projections in every cross-attention block, the "
           "base frozen; load with dlcourse.conditioning.ip_adapter.load_ip_adapter; with the empty prompt at "
           "lambda = 1 the judge reads the reference's shape and colour in >= 95% of samples",
           script="train_ip_adapter"),
    _entry("flow_shapes16_unet",
           "7eb921e95acd50b835a7d60ee63271762b56c1c3f0777f3620d5e402ef99fd2e",
           "rectified flow (1-RF): class-conditional U-Net (0.21M, stored in float16; 4 shapes + null label) on "
           "16 px shapes, velocity, flow time x time_scale 1000, SD3's logit-normal t; sample with "
           "dlcourse.rectified_flow.sample_flow; >= 97% valid with Euler at 8 steps, FD at the floor at 50",
           script="train_fewstep"),
    _entry("flow_shapes16_unet_2rf",
           "23302dbbcb079a3f7f497ee31bc4d4954113179f8bb712373bef6d8ff73ca9bc",
           "flow_shapes16_unet after one reflow (2-RF) on 6000 pairs of its 50-step ODE: straighter paths "
           "(straightness 7x lower), 1-step Euler FD 2.4x below 1-RF's but still far above its own 50 steps",
           script="train_fewstep"),
    _entry("cm_shapes16_unet",
           "226d7a2d836c51b6448d1406b2eb039ef5d73e6e17e72ec7c4096fde8dca1d6d",
           "consistency model distilled from flow_shapes16_unet, with the guidance scale w as an input (LCM, "
           "GuidanceInput); load with dlcourse.consistency.load_consistency; ~94% valid in 4 calls (N = 20 levels)",
           script="train_fewstep"),
    _entry("flow_shapes16_unet_1step",
           "478f4b34f0a30acee8723925d9094d7bb1c7325a58829385502465d92371abf9",
           "one-step model: flow_shapes16_unet_2rf's weights trained only at t = 0.999 so that one Euler step lands "
           "where flow_shapes16_unet's 50-step ODE does, on 40,000 such pairs (Liu et al.'s distillation with k = 1, "
           "dlcourse.rectified_flow.one_step_distillation_loss); sample with sample_flow(..., 1, cond=label); "
           "the best single network call of notebook 08, still far above the flows' 50 steps",
           script="train_fewstep"),
    _entry("lcm_shapes32",
           "43e7e34506e0dc0d3af6f1416ca7511d64c5a9d95fdf53b329288c375e0151e1",
           "latent consistency model (LCM): a U-Net (0.55M, stored in float16) on vae_shapes32's 4x8x8 latents, "
           "distilled from latent_shapes32_unet (read in flow time by dlcourse.consistency.FlowFromVP, DDIM's step "
           "as the teacher's); load with dlcourse.consistency.load_consistency, sample with multistep_sample and "
           "decode; 1 call beats the teacher's 1-2 DDIM steps, 4 calls do not reach its 4",
           script="train_lcm"),
    _entry("controlnet_shapes16",
           "85e3a62911f5314f7be76a3cc21ed36c8328fa3273ce19bebcc63b54c3c68c47",
           "ControlNet (0.55M, stored in float16) over the frozen shapes16_unet_text: a copy of its encoder and middle "
           "block reading the edge map, zero convs into its skips and middle; load with "
           "dlcourse.conditioning.load_controlnet; with the empty prompt, samples overlap the control's shape at "
           "IoU 0.95 (0.16 without the control) with DDIM-20",
           script="train_controlnet"),
    _entry("sd1_shapes32",
           "da33cdd63901974806652af5aa32b170c2cd6eb6c5ccee8226dea5eaf6368b13",
           "Stable Diffusion 1.x in miniature: a U-Net (0.94M, stored in float16) on vae_shapes32's scaled 4x8x8 "
           "latents reading clip_shapes16's frozen tokens by cross-attention at 8x8 and 4x4, caption dropout 0.15 to "
           "the empty prompt, cosine T=1000, v-prediction; load with "
           "dlcourse.systems.StableDiffusionMini.from_pretrained; >= 99% of prompts followed in shape, colour and "
           "size with DPM-Solver++(2M)-20 at w = 1 and 3",
           script="train_sd1"),
    _entry("sdxl_shapes16_plain",
           "55f09993673ea2752e8e4bef2b1825612245aaa62003e81ebea44167feeaace4",
           "shapes16_unet fine-tuned (float16) on a third each of whole 16 px shapes, 16 px crops of 24 px ones and "
           "8 px originals upsampled to 16, without micro-conditions: the SDXL miniature's baseline (notebook 10c)",
           script="train_sdxl_crops"),
    _entry("sdxl_shapes16_micro",
           "759fbf6f5bb074cf9213bca35dd3e19fe6dec51a63d3c7408b561a50605a5078",
           "shapes16_unet fine-tuned (float16) on the same data with SDXL's micro-conditions, original size and crop "
           "corner, added to its time embedding (dlcourse.systems.sdxl.MicroConditioning; import that module "
           "before loading); asked for (0, 0) at size 16 it cuts off 0.6-0.8% of its shapes against "
           "sdxl_shapes16_plain's 14-16%, and asked for size 8 it draws blurry ones (notebook 10c)",
           script="train_sdxl_crops"),
    _entry("sdxl_shapes16_refiner",
           "e4df2db3d7adce90ef21a0a2df4651ff2e9dec2759ca874ccd4c6572cbff0317",
           "SDXL's refiner in miniature: a 0.20M U-Net (float16) trained from scratch on whole 16 px shapes at t < 200 "
           "only, cosine T=1000, v-prediction; dlcourse.systems.sdxl.sample_with_refiner hands it the last steps "
           "(notebook 10c)",
           script="train_sdxl_crops"),
    _entry("guidance_distilled_shapes16",
           "1f3509add11bcf175e910606f77ea16a0595fc9ac09049c8392d333f3751c4de",
           "guidance-distilled student of shapes16_unet_text (Meng et al. 2023, stage one; Flux's guidance as an "
           "input): w's MLP added to the time embedding (GuidanceInput) and 0.24M tuned U-Net parameters, stored in "
           "float16 apart from the frozen base; load with dlcourse.systems.flux.load_guidance_distilled; one call "
           "per step, its DDIM-20 samples within 0.5 FD of true guidance at w = 2, 3 and 5",
           script="train_guidance_distilled"),
    _entry("dalle3_alt_text_shapes16",
           "9212086ac2cd54f9d47969a0dd90a77e243c4d44a0abec47a9539ca76c5fefe5",
           "DALL-E 3's baseline in miniature: shapes16_unet with cross-attention to clip_shapes16, 223K tuned "
           "parameters (stored in float16 apart from the frozen base) trained 1000 steps on terse, partly wrong alt "
           "text (size, colour, place each named 30% of the time, a fifth of it wrong); load with "
           "dlcourse.systems.dalle3.load_recaptioning; it ignores most of a detailed prompt's place",
           script="train_dalle3"),
    _entry("dalle3_recaptioned_shapes16",
           "1d96b3c88c2920311421f18bc7db55b7f5c1f9c9441528c960b25dce8176c675",
           "DALL-E 3's recaptioning in miniature: the same model, recipe, images and steps as "
           "dalle3_alt_text_shapes16, trained on the captions a small Captioner wrote (97% with all four attributes "
           "right); load with dlcourse.systems.dalle3.load_recaptioning; follows detailed prompts' place, size and "
           "colour far more often than the alt-text model",
           script="train_dalle3"),
    _entry("clip_shapes16_small",
           "67a8133e05a2997ce74665d54bb94b22e4dc9a8c90f8ec8a44ee06648818df09",
           "a second, smaller CLIP (59K, stored in float16: TextEncoder width 32, 2 blocks; ImageEncoder 16-32-32 -> "
           "32), clip_shapes16's recipe with seed 1, every blue triangle held out; info has its tokenizer; SDXL's "
           "second text encoder in notebook 10c; caption -> image top-1 99.5% among 100 held-out pairs",
           script="train_sdxl_text"),
    _entry("sdxl_text_shapes16",
           "c695cdbc9e30099625c6c91ae0fd2bd0633551d8e899d3038d0d4fb0e89577c3",
           "SDXL's two text encoders in miniature: shapes16_unet_text's U-Net (0.94M, stored in float16) reading "
           "clip_shapes16's and clip_shapes16_small's tokens concatenated (96 wide) by cross-attention, the second "
           "one's pooled embedding added to the time embedding; started from shapes16_unet, 1000 steps of "
           "shapes16_unet_text's recipe; load with dlcourse.systems.sdxl_text.load_sdxl_text_to_image; "
           "98.8% of 247 held-in prompts followed in shape, colour and size with DDIM-20 at w = 1",
           script="train_sdxl_text"),
    _entry("imagen_sr32_aug",
           "ad9dbd7234f432dc652c6f69b2a4cd91ab8f0dd88741dd02995c118dee35e9c8",
           "Imagen's super-resolution stage in miniature, 16 -> 32 px shapes (SuperResolutionUNet, 0.21M, stored in "
           "float16): the upsampled low-res image on the input channels, x_0 prediction on top of it (residual), "
           "cosine T=1000, trained with noise-conditioning augmentation (levels 0-500, the level embedded beside the "
           "time step); load with dlcourse.systems.cascade.ImagenCascade.from_pretrained or super_resolve; at level 25 "
           "it enlarges the base's samples with FD 9.5-9.6 (floor 1.5), the unaugmented model 4.3-4.5",
           script="train_imagen_sr"),
    _entry("imagen_sr32_noaug",
           "e577bab0a0f1f0a2480658e3291e22f6f3f6d12cd9b06c445931b5a0cfbad05b",
           "imagen_sr32_aug's network, data, steps and seed without the augmentation (the clean low-res image, "
           "level 0): the comparison of notebook 10b's cascade; 100% of the base's samples still follow their prompts "
           "after it, FD 1.4 on real 16 px inputs",
           script="train_imagen_sr"),
)}


def list_pretrained() -> list[str]:
    """Names of the shipped checkpoints, e.g. ``["toy2d_mlp", "shapes16_unet", ...]``."""
    return list(PRETRAINED)


def pretrained_path(name: str) -> Path:
    """The file of checkpoint ``name`` (which may not exist yet)."""
    return ASSET_DIR / _lookup(name).filename


def _lookup(name: str) -> PretrainedEntry:
    if name not in PRETRAINED:
        raise ValueError(f"name: no pretrained checkpoint called {name!r}; choose one of {list_pretrained()}")
    return PRETRAINED[name]


def load_pretrained(name: str, device=None) -> tuple[nn.Module, dict]:
    """Load a shipped checkpoint after checking its SHA-256 against the one in this module.

    Args:
        name: one of ``list_pretrained()``.
        device: where to put the model; the best available (``get_device()``) if None.

    Returns:
        ``(model, info)``: the model (its EMA weights) in eval mode on ``device``, and a
        dict of how it was trained, with at least "name", "description", "command",
        "model", "schedule" (a name for ``get_schedule``), "T", "prediction_type",
        "steps", "seed", "image_size" (None for 2-D points), "num_classes" (None when
        unconditional), "data" and "clip_x0" (what to pass to a sampler), plus the
        other training settings the file records. The VAE ``vae_shapes32`` has no schedule:
        its info has "scale_factor" and "beta" instead (``dlcourse.latent``); the CLIP
        ``clip_shapes16`` has neither, and its info has "tokenizer" (``Tokenizer(**info["tokenizer"])``).

    Raises:
        ValueError: unknown ``name``, or a file whose digest does not match (corrupt
            or replaced; it is not loaded).
        FileNotFoundError: the file is missing; the message says how to recreate it.
    """
    entry = _lookup(name)
    path = ASSET_DIR / entry.filename
    if not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint {name!r} not found: {path}; "
                                f"recreate it with `{entry.command}` (from the repository root)")
    checkpoint = load_checkpoint(path, sha256=entry.sha256)   # digest first, then weights-only
    model = build_model(checkpoint).to(get_device() if device is None else device).eval()
    config = checkpoint["config"]
    info = {"name": name, "description": entry.description, "command": entry.command,
            **(checkpoint.get("extra") or {}),
            **{k: v for k, v in config.items() if k != "kwargs"},
            "model_kwargs": config.get("kwargs", {}), "sha256": entry.sha256}
    return model, info
