"""Imagen's dynamic thresholding against static clipping and none, at guidance scales up to 15 (notebook 10b).

    .venv/bin/python bench/imagen_threshold.py                          # the table in bench/README.md
    .venv/bin/python bench/imagen_threshold.py --ws 1,10 --n 64         # quicker

A script, not a test. The shipped ``shapes16_unet_text`` (v-prediction, cosine T = 1000) is sampled with DDIM
(eta = 0, ``--steps`` steps, two calls each when w is not 1) from the same starting noise for every w and every
treatment of the x_0 guess at each step (``dlcourse.systems.imagen``, through the denoiser's ``threshold_x0``):

- **none**: the guess as the network gives it (``clip_x0=False``);
- **static**: clipped to [-1, 1] (``clip_x0=True``, the course's default);
- **dynamic p**: Imagen's dynamic thresholding at each percentile p of ``--percentiles`` (0.995, diffusers'
  default, and 0.9), ``clip_x0=False``. A 16 px image has 768 values: its 0.995 percentile is about its fourth
  largest, where Imagen's 64 px base images have about sixty values above theirs.

Columns, each over the ``--n`` samples, which are clamped to [-1, 1] at the end as any saved image is:

- **sat.**: saturation, the fraction of pixel values with ``|x| >= 0.99`` (``saturation``); the real images'
  own figure is printed above the table (flat backgrounds and pure colours sit near the bounds);
- **guess > 1**: the fraction of the x_0 guess's values outside [-1, 1] before the step's treatment, over all
  steps (what thresholding has to fix; the guess the callback sees is the treated one for static and dynamic, so
  it is read from the raw network output by a recording hook that returns its input unchanged);
- **all**, **valid**: ``prompt_accuracy`` (valid, and shape, colour and size as the prompt asks);
- **FD**: Frechet distance of the judge's features to the real images whose captions were the prompts, beside the
  floor (a second real set with the same captions), as in ``bench/prompt_following.py``.

Prompts: the captions of ``make_shapes(seed=2)`` with the held-out blue triangles removed.
"""

from __future__ import annotations

import argparse
import functools
import time

import torch

from dlcourse.conditioning.text_to_image import load_text_to_image, matched_real_sets, prompt_accuracy
from dlcourse.judge import load_judge
from dlcourse.metrics import frechet_distance
from dlcourse.samplers import sample_ddim
from dlcourse.schedules import get_schedule
from dlcourse.systems.imagen import dynamic_threshold, saturation
from dlcourse.tensors import seeded_noise


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ws", default="1,3,7.5,10,15", help="guidance scales, comma separated")
    p.add_argument("--n", type=int, default=256, help="prompts (one sample each)")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps")
    p.add_argument("--percentiles", default="0.995,0.9", help="dynamic thresholding's p, comma separated")
    p.add_argument("--seed", type=int, default=0, help="seed of the starting noise")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ws = [float(w) for w in args.ws.split(",")]

    pipe, info = load_text_to_image("shapes16_unet_text", device="cpu")
    judge, schedule = load_judge(16), get_schedule(info["schedule"], info["T"])
    prompts, real_a, real_b = matched_real_sets(args.n, info["hold_out"])
    real_feats = judge.features(real_a)
    floor = frechet_distance(judge.features(real_b), real_feats)
    cond = pipe.cond(prompts)
    x_T = seeded_noise((len(prompts), 3, 16, 16), args.seed)
    percentiles = [float(q) for q in args.percentiles.split(",")]
    treatments = {"none": dict(clip_x0=False), "static": dict(clip_x0=True),
                  **{f"dynamic {q:g}": dict(clip_x0=False,
                                            threshold_x0=functools.partial(dynamic_threshold, percentile=q))
                     for q in percentiles}}

    print(f"shapes16_unet_text, DDIM-{args.steps}, {len(prompts)} held-in prompts; real images: saturation "
          f"{100 * saturation(real_a):.2f}%, FD floor {floor:.2f}\n")
    print("| w | x_0 treatment | sat. | guess > 1 | all | valid | FD |")
    print("|---|---|---|---|---|---|---|")
    for w in ws:
        for name, kwargs in treatments.items():
            start = time.perf_counter()
            outside = []

            def record(x_0, then=kwargs.get("threshold_x0")):
                outside.append(float((x_0.abs() > 1).float().mean()))
                return x_0 if then is None else then(x_0)

            # the recording hook returns the guess unchanged for none and static; eps is recomputed from that
            # same guess, equal to the network's to rounding
            x = sample_ddim(pipe, x_T, schedule, args.steps, cond=cond, guidance_scale=w,
                            prediction_type=info["prediction_type"], clip_x0=kwargs["clip_x0"], threshold_x0=record,
                            progress=False).clamp(-1, 1)
            a = prompt_accuracy(judge, x, prompts)
            fd = frechet_distance(judge.features(x), real_feats)
            pct = lambda v: f"{100 * v:.1f}%"                 # noqa: E731
            print(f"| {w:g} | {name} | {100 * saturation(x):.2f}% | {100 * sum(outside) / len(outside):.2f}% | "
                  f"{pct(a.all)} | {pct(a.valid)} | {fd:.2f} |", flush=True)
            print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
