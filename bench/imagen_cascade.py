"""Imagen's cascade at 32 px: super-resolution with and without noise-conditioning augmentation (notebook 10b).

    .venv/bin/python bench/imagen_cascade.py                                  # the table in bench/README.md
    .venv/bin/python bench/imagen_cascade.py --seed 1                         # the same from other noise
    .venv/bin/python bench/imagen_cascade.py --aug /tmp/a.pt --noaug /tmp/b.pt --n 64   # files of the script

A script, not a test. The base is the shipped 16 px text model ``shapes16_unet_text`` (DDIM, ``--base-steps``,
classifier-free guidance at ``--w``, x_0 clipped); its samples are enlarged to 32 px by the two SR models of
``scripts/train_imagen_sr.py`` (``dlcourse.systems.cascade.super_resolve``: DDIM with ``--sr-steps``), the one
trained with noise-conditioning augmentation at each sampling level of ``--levels``, the one without at level 0
(the clean image, as it was trained). The same SR models also enlarge the *real* 16 px images of the prompts, where
there is no mismatch between training and use. Bilinear enlargement (no model) is the reference row of each block.

Prompts: the first ``--n`` captions of ``make_shapes(seed=2)`` without the held-out blue triangles, with their 32 px
images (``real 32``) and, for the FD floor, a second 32 px image with each caption from ``make_shapes(20_000,
size=32, seed=4)``: ``matched_real_sets`` at 32 px (one seed draws the same shapes at every size).

Columns, over the n images:

- **all**, **valid**: ``prompt_accuracy`` by the 16 px judge, which reads 32 px images averaged down to 16 px
  (there is no 32 px judge; notebook 06 measures its 32 px models the same way);
- **FD**: Frechet distance of the judge's features to the real 32 px images, beside the floor;
- **detail**: ``detail_energy`` (the high-frequency part, ``x - up(down(x))``, that a 2x model has to add) over the
  real 32 px images' figure: 0 for bilinear enlargement, 1 for real sharpness;
- **drift**: the RMS difference between the output averaged down to 16 px and the 16 px image it was given: how
  far the SR model strays from its input (a real 32 px image averaged down is 0.015 from its 16 px render);
- **RMS to real** (real inputs only): the RMS difference from the true 32 px image.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from dlcourse.checkpoints import build_model, load_checkpoint
from dlcourse.conditioning.text_to_image import held_out, load_text_to_image, prompt_accuracy
from dlcourse.data import make_shapes
from dlcourse.judge import load_judge
from dlcourse.metrics import frechet_distance
from dlcourse.pretrained import load_pretrained
from dlcourse.samplers import sample_ddim
from dlcourse.schedules import get_schedule
from dlcourse.systems.cascade import detail_energy, super_resolve, upsample
from dlcourse.tensors import seeded_noise


def real_sets_32(n: int, hold, pool_size: int = 20_000):
    """Prompts, their 16 and 32 px images, and a second 32 px image per caption (``matched_real_sets`` at 32 px)."""
    fresh16, fresh32 = make_shapes(2 * n, size=16, seed=2), make_shapes(2 * n, size=32, seed=2)
    keep = [i for i, k in enumerate((~held_out(fresh32.captions, hold)).tolist()) if k][:n]
    prompts = [fresh32.captions[i] for i in keep]
    pool = make_shapes(pool_size, size=32, seed=4)
    by_caption = {}
    for i, c in enumerate(pool.captions):
        by_caption.setdefault(c, []).append(i)
    uses, matched = {}, []
    for c in prompts:                                         # the k-th use of a caption takes its k-th image
        uses[c] = uses.get(c, -1) + 1
        matched.append(by_caption[c][uses[c]])
    return prompts, fresh16.images[keep], fresh32.images[keep], pool.images[matched]


def load_sr(path):
    """An SR model: a shipped name or a file ``scripts/train_imagen_sr.py`` wrote; ``(model, info)``."""
    if path.endswith(".pt"):
        ckpt = load_checkpoint(path)
        return build_model(ckpt).float().eval(), {**ckpt["extra"], **ckpt["config"]}
    model, info = load_pretrained(path, device="cpu")
    return model.float().eval(), info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--aug", default="imagen_sr32_aug", help="shipped name or .pt file (augmentation)")
    p.add_argument("--noaug", default="imagen_sr32_noaug", help="shipped name or .pt file (no augmentation)")
    p.add_argument("--levels", default="50,150,300", help="sampling noise levels of the augmented model")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--w", type=float, default=3.0, help="the base's guidance scale")
    p.add_argument("--base-steps", type=int, default=20)
    p.add_argument("--sr-steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0, help="seeds every noise")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    levels = [int(v) for v in args.levels.split(",")]

    pipe, info = load_text_to_image("shapes16_unet_text", device="cpu")
    judge = load_judge(16)
    prompts, real16, real32, real32_b = real_sets_32(args.n, info["hold_out"])
    real_feats = judge.features(real32)
    floor = frechet_distance(judge.features(real32_b), real_feats)
    real_detail = detail_energy(real32)
    aug, aug_info = load_sr(args.aug)
    noaug, noaug_info = load_sr(args.noaug)
    schedule = get_schedule(aug_info["schedule"], aug_info["T"])
    start = time.perf_counter()
    with torch.no_grad():
        x_T = seeded_noise((args.n, 3, 16, 16), args.seed)
        base = sample_ddim(pipe, x_T, get_schedule(info["schedule"], info["T"]), args.base_steps,
                           cond=pipe.cond(prompts), guidance_scale=args.w, prediction_type=info["prediction_type"],
                           progress=False).clamp(-1, 1)
    base_s = time.perf_counter() - start
    a16 = prompt_accuracy(judge, base, prompts)
    print(f"{args.n} prompts, seed {args.seed}; base shapes16_unet_text DDIM-{args.base_steps} w = {args.w:g} "
          f"({1000 * base_s / args.n:.1f} ms/image): all {100 * a16.all:.1f}%, valid {100 * a16.valid:.1f}%, "
          f"FD at 16 px {frechet_distance(judge.features(base), judge.features(real16)):.2f}")
    print(f"real 32 px: FD floor {floor:.2f}, detail energy {real_detail:.4f}; SR DDIM-{args.sr_steps}; "
          f"max_noise_level of the augmented model {aug_info.get('max_noise_level')}\n")
    print("| input | SR | level | all | valid | FD | detail | drift | RMS to real | ms/image |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for source, low in (("base samples", base), ("real 16 px", real16)):
        rows = [("bilinear", None, None)] + [("no aug", noaug, 0)] + [("aug", aug, s) for s in levels]
        for name, model, level in rows:
            start = time.perf_counter()
            if model is None:
                x = upsample(low, 32).clamp(-1, 1)
            else:
                x = super_resolve(model, low, schedule, noise_level=level, num_inference_steps=args.sr_steps,
                                  prediction_type=aug_info["prediction_type"], seed=args.seed + 10)
            ms = 1000 * (time.perf_counter() - start) / args.n
            a = prompt_accuracy(judge, x, prompts)
            fd = frechet_distance(judge.features(x), real_feats)
            drift = float((F.avg_pool2d(x, 2) - low).square().mean().sqrt())
            rms = f"{float((x - real32).square().mean().sqrt()):.3f}" if source.startswith("real") else "-"
            print(f"| {source} | {name} | {'-' if level is None else level} | {100 * a.all:.1f}% | "
                  f"{100 * a.valid:.1f}% | {fd:.2f} | {detail_energy(x) / real_detail:.2f} | {drift:.3f} | {rms} | "
                  f"{ms:.1f} |", flush=True)


if __name__ == "__main__":
    main()
