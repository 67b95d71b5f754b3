"""Train the two checkpoints of latent diffusion (notebook 06), save them, print their SHA-256 and measure them.

    .venv/bin/python scripts/train_latent.py vae_shapes32              # the VAE, then its measurements
    .venv/bin/python scripts/train_latent.py ae_shapes32               # the same with beta = 0: a plain autoencoder
    .venv/bin/python scripts/train_latent.py latent_shapes32_unet      # a U-Net on the shipped VAE's latents
    .venv/bin/python scripts/train_latent.py                           # both, the VAE first
    .venv/bin/python scripts/train_latent.py --evaluate-only           # measure the shipped files

``vae_shapes32``: a ``VAE`` (``dlcourse.models.vae``) trained with ``dlcourse.latent.vae_loss``
(reconstruction MSE + beta * KL per latent dimension) on ``dlcourse.loop.fit``; then its latent
scale factor (``latent_scale_factor``) is measured on 5000 of its training images and recorded
in the file with beta. ``latent_shapes32_unet``: the training images are encoded once with the
shipped VAE (the means, times that scale factor; ``dlcourse.latent.encode``), and a ``UNet`` with
4 input channels learns to denoise those 4x8x8 latents with ``dlcourse.training.train``, exactly
``latent_diffusion_loss`` without encoding every batch again. Its file records the scale factor
and the SHA-256 of the VAE it was trained on.

Each run is fixed by its recipe below (a seed, a step budget, never a time budget, the data's
seed, the thread count and the precision), so the machine's load changes the time, not the
weights. After training, paste the printed digest into ``PRETRAINED`` in dlcourse/pretrained.py
(the file's bytes differ at every save: ``torch.save`` writes a random id, the file records the
time taken). The times measured for the shipped files are in ``bench/README.md`` (section
``latent_cost.py``), with the measurements below.

Measured on shapes the training never saw (make_shapes seed 1): for the VAE the reconstruction
PSNR, which attributes the judge reads survive (shape, colour, scale), the valid fraction and the
Frechet distance of the reconstructions; for the latent model ``quality_report`` of samples from
DPM-Solver++(2M) at 20 steps and DDIM at 50, next to the real-vs-real floor at the same n.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from dataclasses import dataclass, field

import torch

from dlcourse.batches import random_batches
from dlcourse.checkpoints import model_config
from dlcourse.data import make_shapes
from dlcourse.device import get_device
from dlcourse.latent import decode, encode, generate, latent_scale_factor, vae_loss
from dlcourse.loop import TrainConfig, fit
from dlcourse.models import VAE, UNet, UNetConfig, VAEConfig
from dlcourse.pretrained import PRETRAINED
from dlcourse.schedules import get_schedule
from dlcourse.training import train
from train_checkpoints import load_unchecked, save   # scripts/ is on sys.path when this script runs

IMAGE_SIZE = 32
EVAL_SEED = 1                       # shapes seed the training never used (it uses seed 0)
SCALE_IMAGES = 5000                 # training images the scale factor is measured on


@dataclass(frozen=True)
class VAERecipe:
    """Everything that determines the VAE checkpoint."""

    n_train: int = 20_000
    data_seed: int = 0
    config: dict = field(default_factory=dict)          # VAEConfig keyword arguments
    beta: float = 1e-3
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    ema_decay: float = 0.999
    seed: int = 0
    precision: str = "fp32"
    threads: int = 2


@dataclass(frozen=True)
class LatentRecipe:
    """Everything that determines the latent U-Net checkpoint (besides the VAE file it encodes with)."""

    n_train: int = 20_000
    data_seed: int = 0
    config: dict = field(default_factory=dict)          # UNetConfig keyword arguments (in_channels = 4)
    schedule: str = "cosine"
    T: int = 1000
    prediction_type: str = "epsilon"
    steps: int = 10_000
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    ema_decay: float = 0.999
    min_snr_gamma: float | None = None
    seed: int = 0
    precision: str = "fp32"
    threads: int = 2


RECIPES = {
    "vae_shapes32": VAERecipe(config=dict(base_channels=16, channel_mults=(1, 2, 4), groups=8), steps=1200, threads=1),
    # the same network and recipe without the KL term: a plain autoencoder, for the comparison in notebook 06
    "ae_shapes32": VAERecipe(config=dict(base_channels=16, channel_mults=(1, 2, 4), groups=8), beta=0.0, steps=1200,
                             threads=1),
    "latent_shapes32_unet": LatentRecipe(config=dict(in_channels=4, base_channels=48, channel_mults=(1, 2)),
                                         prediction_type="v_prediction", min_snr_gamma=5.0, steps=15_000,
                                         batch_size=64, threads=1),
}


def train_vae(name: str, r: VAERecipe, device) -> None:
    torch.set_num_threads(r.threads)
    data = make_shapes(r.n_train, size=IMAGE_SIZE, seed=r.data_seed).images
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(r.seed)
        vae = VAE(VAEConfig(**r.config))
    print(f"[{name}] {sum(p.numel() for p in vae.parameters()) / 1e6:.3f}M parameters, {r}", flush=True)
    config = TrainConfig(steps=r.steps, lr=r.lr, lr_schedule=r.lr_schedule, ema_decay=r.ema_decay, seed=r.seed,
                         precision=r.precision, device=device, channels_last=device.type == "cpu", progress=True)
    result = fit(vae, random_batches(data, batch_size=r.batch_size),
                 lambda model, batch: vae_loss(model, batch["x_0"], r.beta).loss, config)
    tail = result.losses[-200:]
    print(f"[{name}] {result.steps} steps in {result.seconds:.0f} s ({result.steps_per_second:.2f} steps/s, "
          f"{result.precision}, {result.device}); mean loss of the last 200 steps {sum(tail) / len(tail):.5f}",
          flush=True)
    ema = result.ema_model.float().cpu().eval()
    scale = latent_scale_factor(ema, data[:SCALE_IMAGES])
    extra = dict(data="shapes", n_train=r.n_train, data_seed=r.data_seed, image_size=IMAGE_SIZE,
                 latent_shape=list(ema.latent_shape), scale_factor=scale, beta=r.beta, steps=r.steps,
                 batch_size=r.batch_size, lr=r.lr, lr_schedule=r.lr_schedule, ema_decay=r.ema_decay, seed=r.seed,
                 precision=result.precision, device=result.device, threads=torch.get_num_threads(),
                 seconds=round(result.seconds, 1), final_loss=round(sum(tail) / len(tail), 6),
                 torch_version=str(torch.__version__), command=PRETRAINED[name].command)
    save(name, ema, model_config(ema), extra)


def train_latent_unet(name: str, r: LatentRecipe, device) -> None:
    torch.set_num_threads(r.threads)
    vae, vae_info = load_unchecked("vae_shapes32")
    vae = vae.to(device)
    scale = vae_info["scale_factor"]
    start = time.perf_counter()
    latents = encode(vae, make_shapes(r.n_train, size=IMAGE_SIZE, seed=r.data_seed).images, scale)
    print(f"[{name}] {r.n_train} images encoded in {time.perf_counter() - start:.1f} s: latents "
          f"{tuple(latents.shape)}, std {float(latents.std()):.3f} (scale factor {scale:.4f})", flush=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(r.seed)
        model = UNet(UNetConfig(**r.config))
    print(f"[{name}] {sum(p.numel() for p in model.parameters()) / 1e6:.3f}M parameters, {r}", flush=True)
    result = train(model, latents, get_schedule(r.schedule, r.T), steps=r.steps, batch_size=r.batch_size, lr=r.lr,
                   lr_schedule=r.lr_schedule, prediction_type=r.prediction_type, ema_decay=r.ema_decay,
                   min_snr_gamma=r.min_snr_gamma, seed=r.seed, device=device, precision=r.precision, progress=True)
    tail = result.losses[-200:]
    print(f"[{name}] {result.steps} steps in {result.seconds:.0f} s ({result.steps_per_second:.2f} steps/s, "
          f"{result.precision}, {result.device}); mean loss of the last 200 steps {sum(tail) / len(tail):.5f}",
          flush=True)
    ema = result.ema_model.float().cpu().eval()
    config = model_config(ema, prediction_type=r.prediction_type, schedule=r.schedule, T=r.T)
    extra = dict(data="shapes", n_train=r.n_train, data_seed=r.data_seed, image_size=IMAGE_SIZE,
                 latent_shape=list(vae.latent_shape), num_classes=None, clip_x0=False, scale_factor=scale,
                 vae="vae_shapes32", vae_sha256=vae_info["sha256"], steps=r.steps, batch_size=r.batch_size,
                 lr=r.lr, lr_schedule=r.lr_schedule, ema_decay=r.ema_decay, min_snr_gamma=r.min_snr_gamma,
                 seed=r.seed, precision=result.precision, device=result.device, threads=torch.get_num_threads(),
                 seconds=round(result.seconds, 1), final_loss=round(sum(tail) / len(tail), 6),
                 torch_version=str(torch.__version__), command=PRETRAINED[name].command)
    save(name, ema, config, extra)


def kept_attributes(judge, x: torch.Tensor, data) -> dict:
    """Fractions of images whose shape, colour and scale the judge reads as ``data`` says, and all three."""
    out = judge.predict(x)
    right = {k: out[f"{k}_probs"].argmax(1) == getattr(data, attr)[:len(x)]
             for k, attr in (("shape", "labels"), ("color", "colors"), ("scale", "scales"))}
    right["all"] = right["shape"] & right["color"] & right["scale"]
    return {k: float(v.float().mean()) for k, v in right.items()} | {"valid": float(out["valid"].float().mean())}


@torch.no_grad()
def evaluate_vae(name: str, n: int) -> None:
    from dlcourse.judge import load_judge
    from dlcourse.metrics import frechet_distance

    vae, info = load_unchecked(name)
    judge, scale = load_judge(16), info["scale_factor"]
    data = make_shapes(2 * n, size=IMAGE_SIZE, seed=EVAL_SEED)
    x, other = data.images[:n], data.images[n:]
    start = time.perf_counter()
    x_rec = decode(vae, encode(vae, x, scale), scale)
    seconds = time.perf_counter() - start
    mse = (x_rec - x).square().flatten(1).mean(1)                               # (n,)
    mean, logvar = vae.encode(x)
    kl = (0.5 * (mean.square() + logvar.exp() - 1 - logvar)).flatten(1).mean(1)  # per latent dimension, (n,)
    print(f"[{name}] {n} held-out images, encoded and decoded (the mean) in {seconds:.1f} s; compression "
          f"{math.prod(vae.image_shape)} / {math.prod(vae.latent_shape)} = "
          f"{math.prod(vae.image_shape) / math.prod(vae.latent_shape):g}x; scale factor {scale:.4f}, beta {info['beta']:g}")
    print(f"[{name}] reconstruction MSE {float(mse.mean()):.5f}, PSNR {10 * math.log10(4 / float(mse.mean())):.2f} dB "
          f"(of the mean MSE; mean of per-image PSNRs {float((10 * torch.log10(4 / mse)).mean()):.2f} dB), "
          f"KL {float(kl.mean()):.3f} nats per latent dimension")
    kept, real = kept_attributes(judge, x_rec, data), kept_attributes(judge, x, data)
    print(f"[{name}] judge on reconstructions: shape {kept['shape']:.3f}, colour {kept['color']:.3f}, "
          f"scale {kept['scale']:.3f}, all three {kept['all']:.3f}, valid {kept['valid']:.3f} "
          f"(the originals: all three {real['all']:.3f}, valid {real['valid']:.3f})")
    feats = judge.features(x)
    print(f"[{name}] FD reconstructions vs originals {frechet_distance(judge.features(x_rec), feats):.2f}; "
          f"floor, other real images vs originals {frechet_distance(judge.features(other), feats):.2f}")
    z = encode(vae, x, scale)
    print(f"[{name}] scaled latents of held-out images: mean {float(z.mean()):.3f}, std {float(z.std()):.3f}, "
          f"per channel std {[round(float(s), 3) for s in z.transpose(0, 1).flatten(1).std(1)]}")
    prior = decode(vae, torch.randn(n, *vae.latent_shape, generator=torch.Generator().manual_seed(EVAL_SEED)), 1.0)
    print(f"[{name}] decoded prior samples N(0, I) (unscaled latents): valid "
          f"{float(judge.predict(prior)['valid'].float().mean()):.3f}")
    # a sampler never lands exactly on a code: how far from one does the decoder still draw a clean shape?
    spread, noise = float(mean.std()), torch.Generator().manual_seed(EVAL_SEED)
    print(f"[{name}] q(z|x)'s std is {float((0.5 * logvar).exp().mean()) / spread:.3f} x the latents' spread; "
          f"decoded means nudged by d x that spread: " + ", ".join(
              f"d = {d:g}: valid {kept['valid']:.3f}, all three {kept['all']:.3f}"
              for d in (0.5, 1.0)
              for kept in [kept_attributes(judge, vae.decode(mean + d * spread * torch.randn(mean.shape, generator=noise))
                                           .clamp(-1, 1), data)]))


@torch.no_grad()
def evaluate_latent(name: str, n: int) -> None:
    from dlcourse.judge import load_judge
    from dlcourse.metrics import quality_report

    vae, _ = load_unchecked("vae_shapes32")
    model, info = load_unchecked(name)
    judge, schedule = load_judge(16), get_schedule(info["schedule"], info["T"])
    reference = make_shapes(2 * n, size=IMAGE_SIZE, seed=EVAL_SEED).images
    for sampler, steps in (("dpmpp_2m", 20), ("ddim", 50)):
        start = time.perf_counter()
        x = generate(model, vae, schedule, info["scale_factor"], n, steps=steps, sampler=sampler,
                     prediction_type=info["prediction_type"], seed=EVAL_SEED)
        print(f"[{name}] {n} samples, {sampler} {steps} steps ({time.perf_counter() - start:.1f} s)")
        print("\n".join(f"[{name}] {line}" for line in str(quality_report(judge, x, reference,
                                                                          seed=EVAL_SEED)).splitlines()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"checkpoints to train (default: all of {list(RECIPES)})")
    parser.add_argument("--threads", type=int, default=None, help="override the recipe's CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu (default, as shipped), cuda, mps")
    parser.add_argument("--evaluate-only", action="store_true", help="measure the files in assets/, train nothing")
    parser.add_argument("--n-eval", type=int, default=1000, help="images per measurement")
    args = parser.parse_args()
    names = args.names or list(RECIPES)
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown checkpoint(s) {unknown}; choose from {list(RECIPES)}")
    device = get_device(args.device)
    for name in names:
        recipe = RECIPES[name]
        if args.threads:
            recipe = dataclasses.replace(recipe, threads=args.threads)
        if not args.evaluate_only:
            (train_vae if isinstance(recipe, VAERecipe) else train_latent_unet)(name, recipe, device)
        torch.set_num_threads(recipe.threads)
        (evaluate_vae if isinstance(recipe, VAERecipe) else evaluate_latent)(name, args.n_eval)


if __name__ == "__main__":
    main()
