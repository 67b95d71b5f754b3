"""The guidance-distilled student against its teacher's true classifier-free guidance (notebook 10b).

    .venv/bin/python bench/guidance_distillation.py                       # the table in bench/README.md
    .venv/bin/python bench/guidance_distillation.py --ws 3 --n 64         # quicker

A script, not a test. At each w, the teacher ``shapes16_unet_text`` with classifier-free guidance (two calls per
step: the prompt's and the empty prompt's) and the shipped student ``guidance_distilled_shapes16`` told w (one call
per step, ``dlcourse.systems.flux``) are sampled with the same sampler (DDIM, eta = 0, ``--steps`` steps), from the
same starting noise, for the same prompts (the held-in captions of ``make_shapes(seed=2)``), one thread. Columns:

- **calls**: network calls per image;
- **s / image, batch n** and **batch 1**: wall-clock seconds per image, sampling all n at once (the fastest of
  ``--repeats`` runs) and ``--latency`` images one at a time (the median image), where the number of calls
  matters most: a batch of one is too small to keep even one core busy;
- **all**, **valid**: ``prompt_accuracy``; **FD**: to the real images of the prompts, beside the floor (a second
  real set with the same captions);
- **RMS to teacher**: the root-mean-square pixel difference between each sample and the teacher's sample at the
  same w from the same noise (0 for the teacher itself); the teacher's unguided (w = 1) samples' figure is the
  scale: a student that ignored w would sit there.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dlcourse.conditioning.text_to_image import load_text_to_image, matched_real_sets, prompt_accuracy
from dlcourse.judge import load_judge
from dlcourse.metrics import frechet_distance
from dlcourse.samplers import sample_ddim
from dlcourse.schedules import get_schedule
from dlcourse.systems.flux import load_guidance_distilled
from dlcourse.tensors import seeded_noise


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ws", default="2,3,5", help="guidance scales, comma separated")
    p.add_argument("--n", type=int, default=256, help="prompts (one sample each)")
    p.add_argument("--latency", type=int, default=16, help="images sampled one at a time for the batch-1 timing")
    p.add_argument("--repeats", type=int, default=3, help="batched runs timed (the fastest is kept)")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps")
    p.add_argument("--seed", type=int, default=0, help="seed of the starting noise")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ws = [float(w) for w in args.ws.split(",")]

    teacher, info = load_text_to_image("shapes16_unet_text", device="cpu")
    student, s_info = load_guidance_distilled(device="cpu")
    judge, schedule = load_judge(16), get_schedule(info["schedule"], info["T"])
    prompts, real_a, real_b = matched_real_sets(args.n, info["hold_out"])
    real_feats = judge.features(real_a)
    floor = frechet_distance(judge.features(real_b), real_feats)
    cond = teacher.cond(prompts)
    x_T = seeded_noise((len(prompts), 3, 16, 16), args.seed)

    def sample(model, w, x, c):
        return sample_ddim(model, x, schedule, args.steps, cond=c, guidance_scale=w,
                           prediction_type=info["prediction_type"], progress=False)

    def timed(model, w):
        # the fastest of --repeats batched runs, and the median image of the one-at-a-time ones: a shared machine
        # only ever slows a run down
        batched = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            x = sample(model, w, x_T, cond)
            batched.append((time.perf_counter() - start) / len(prompts))
        single = []
        for i in range(args.latency):
            start = time.perf_counter()
            sample(model, w, x_T[i:i + 1], {k: v[i:i + 1] for k, v in cond.items()})
            single.append(time.perf_counter() - start)
        return x, min(batched), statistics.median(single)

    tuned = s_info["tuned_parameters"]
    print(f"teacher shapes16_unet_text, student guidance_distilled_shapes16 ({tuned} tuned parameters, trained on "
          f"w in [{s_info['w_min']:g}, {s_info['w_max']:g}]); DDIM-{args.steps}, {len(prompts)} held-in prompts, "
          f"{args.threads} thread(s); FD floor {floor:.2f}\n")
    print("| w | model | calls | s / image, batch n | s / image, batch 1 | all | valid | FD | RMS to teacher |")
    print("|---|---|---|---|---|---|---|---|---|")
    unguided = sample(teacher, 1.0, x_T, cond)
    for w in ws:
        x_t, b_t, l_t = timed(teacher, w)
        x_s, b_s, l_s = timed(student.at_guidance_scale(w), 1.0)
        pct = lambda v: f"{100 * v:.1f}%"                     # noqa: E731
        rms = lambda x: float((x - x_t).square().mean().sqrt())                       # noqa: E731
        for name, x, calls, b, lat in (("teacher, CFG", x_t, 2 * args.steps, b_t, l_t),
                                       ("student", x_s, args.steps, b_s, l_s)):
            a = prompt_accuracy(judge, x, prompts)
            fd = frechet_distance(judge.features(x), real_feats)
            print(f"| {w:g} | {name} | {calls} | {b:.4f} | {lat:.4f} | {pct(a.all)} | {pct(a.valid)} | {fd:.2f} | "
                  f"{rms(x):.3f} |", flush=True)
        print(f"  (w = {w:g}: the teacher at w = 1 is {rms(unguided):.3f} from the teacher at w; student / teacher "
              f"time {b_s / b_t:.2f} batched, {l_s / l_t:.2f} at batch 1)", flush=True)


if __name__ == "__main__":
    main()
