"""Train notebook 10b's two 16 -> 32 px super-resolution models, with and without noise-conditioning augmentation.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_imagen_sr.py imagen_sr32_aug      # the two, one after the other
    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_imagen_sr.py imagen_sr32_noaug    # or in parallel
    OMP_NUM_THREADS=1 .venv/bin/python bench/imagen_cascade.py                        # the measurement

Both are ``dlcourse.systems.cascade.SuperResolutionUNet`` of one config: the course's U-Net with 6 input channels
(x_t and the bilinearly upsampled 16 px image) and 3 out, base width 16, mults (1, 2, 2), one residual block per
level, self-attention at 8x8 (0.21M parameters with the noise level's embedding, 0.46 MB each in float16), with
``residual=True``: it predicts x_0 (``prediction_type="sample"``) as the upsampled condition plus the U-Net's
output, so its guess starts at the bilinear enlargement and learns the edges to add. Data:
``make_shapes(20_000, size=32, seed=0)`` and the same shapes rendered at 16 px (``make_shapes(20_000, size=16,
seed=0)``: one seed gives the same shapes at every size), so the low-res images are exactly what the base
``shapes16_unet_text`` was trained on. No caption: the SR model reads the image only.

Training, identical for both apart from the augmentation: x_0-prediction on the cosine schedule (T = 1000), batch
32, AdamW lr 1e-3 (weight decay 0.01) with 100 warm-up steps and a cosine decay to 0, gradient clipping at 1, an
EMA of the weights (0.999), fp32, one CPU thread, ``--steps`` steps (2000 measured). ``--seed`` (0 measured) seeds
the weights, the batches, the timesteps and the noise of x_t, which are the same in both runs; the augmentation
draws from a stream of its own (``super_resolution_loss``'s ``aug_generator``).

- ``imagen_sr32_aug``: each low-res image noised by the forward process to ``s ~ U{0..500}``
  (``augment_low_res``; ab_500 = 0.49, a noise std of 0.71), s given to the network;
- ``imagen_sr32_noaug``: the clean low-res image, the level always 0.

A first recipe, v-prediction without the residual skip (everything else as above), failed both ways: after 2000
steps its guess of x_0 from nearly pure noise (t = 990) was 0.26 RMS from the real 32 px image where bilinear
enlargement is 0.11, and its samples were noisy (high-frequency energy 1.7-2.3 times the real images', 1-12% valid
by the judge, on real 16 px inputs as on the base's). Learning to redraw the whole image from the condition takes a
small network far longer than learning what to add to its enlargement.

Measured on the shared 2-core machine, the two runs in parallel, one thread each (load average 11-15 from other
jobs): ``imagen_sr32_aug`` 2000 steps in 334 CPU s (mean loss of the last 500 steps 0.0040),
``imagen_sr32_noaug`` 298 CPU s (0.0010; without augmentation the condition holds more of the answer). About 30
minutes of wall time each at that load. ``bench/imagen_cascade.py`` (256 prompts, DDIM-20 for the base at w = 3
and for the SR models; seeds 0 / 1), FD by the 16 px judge against real 32 px images (floor 1.50):

    base samples -> no aug:           all 100.0% / 100.0%, FD 4.54 / 4.25, detail 0.68 / 0.67 of the real images'
    base samples -> aug, s = 25:      all  98.8% /  97.7%, FD 9.52 / 9.61, detail 0.60 / 0.59
    base samples -> aug, s = 100:     all  97.7% /  97.3%, FD 10.24 / 10.78
    base samples -> aug, s = 250:     all  91.4% /  87.5%, FD 18.93 / 24.62
    base samples -> bilinear:         all  94.1% /  93.4%, FD 31.08 / 30.93, detail 0.14
    real 16 px   -> no aug:           all  99.6% /  99.6%, FD 1.37 / 1.45, RMS to the real 32 px image 0.048
    real 16 px   -> aug, s = 25:      all  96.1% /  96.1%, FD 8.78 / 9.13, RMS 0.077

The augmentation does not pay on this data (bench/README.md, "Imagen's cascade", says why).
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import torch

from dlcourse.checkpoints import model_config, save_checkpoint
from dlcourse.data import make_shapes
from dlcourse.models import UNetConfig
from dlcourse.pretrained import ASSET_DIR
from dlcourse.schedules import get_schedule
from dlcourse.systems.cascade import SuperResolutionUNet, super_resolution_loss

RUNS = {"imagen_sr32_aug": 500, "imagen_sr32_noaug": None}      # name -> max_noise_level
CONFIG = dict(in_channels=6, out_channels=3, base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1,
              attention=True, num_heads=4, groups=8)
N_TRAIN, BATCH, LR, WARMUP, EMA, T, PREDICTION = 20_000, 32, 1e-3, 100, 0.999, 1000, "sample"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=sorted(RUNS))
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="default: dlcourse/assets/NAME.pt")
    args = p.parse_args()
    torch.set_num_threads(1)
    max_level = RUNS[args.name]

    hi = make_shapes(N_TRAIN, size=32, seed=0).images                          # (N, 3, 32, 32)
    lo = make_shapes(N_TRAIN, size=16, seed=0).images                          # (N, 3, 16, 16), the same shapes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = SuperResolutionUNet(UNetConfig(**CONFIG), T=T, residual=True)
    n_params = sum(q.numel() for q in model.parameters())
    print(f"[{args.name}] {n_params / 1e6:.3f}M parameters, max_noise_level {max_level}", flush=True)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    schedule = get_schedule("cosine", T)
    g_data = torch.Generator().manual_seed(3 * args.seed + 1)
    g_loss = torch.Generator().manual_seed(3 * args.seed + 2)
    g_aug = torch.Generator().manual_seed(3 * args.seed + 3)
    model.train()
    start, losses = time.process_time(), []
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = LR * min(1.0, (step + 1) / WARMUP) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        i = torch.randint(N_TRAIN, (BATCH,), generator=g_data)
        loss = super_resolution_loss(model, hi[i], lo[i], schedule, max_noise_level=max_level,
                                     prediction_type=PREDICTION, generator=g_loss, aug_generator=g_aug)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - EMA)
        losses.append(loss.item())
        if (step + 1) % 250 == 0:
            print(f"[{args.name}] step {step + 1}: loss {sum(losses[-250:]) / 250:.4f}, "
                  f"CPU {time.process_time() - start:.0f} s", flush=True)
    cpu = time.process_time() - start
    tail = losses[-500:]
    config = model_config(ema, prediction_type=PREDICTION, schedule="cosine", T=T)
    extra = dict(data="shapes", image_size=32, low_res_size=16, num_classes=None, clip_x0=True, n_train=N_TRAIN,
                 data_seed=0, max_noise_level=max_level, steps=args.steps, seed=args.seed, batch_size=BATCH, lr=LR,
                 ema_decay=EMA, precision="fp32", threads=1, cpu_seconds=round(cpu, 1),
                 final_loss=round(sum(tail) / len(tail), 6), parameters=n_params, stored_dtype="float16",
                 torch_version=str(torch.__version__), command=f"python scripts/train_imagen_sr.py {args.name}")
    path = args.out or ASSET_DIR / f"{args.name}.pt"
    digest = save_checkpoint(path, copy.deepcopy(ema).half(), config, extra=extra)
    print(f"[{args.name}] {args.steps} steps in {cpu:.0f} CPU s, mean loss of the last 500 {extra['final_loss']}\n"
          f"[{args.name}] saved {path} ({path.stat().st_size / 1e6:.2f} MB), SHA-256 {digest}", flush=True)


if __name__ == "__main__":
    main()
