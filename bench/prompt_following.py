"""Prompt following of the shipped text-conditioned U-Net, for every guidance scale w (notebook 07).

    .venv/bin/python bench/prompt_following.py                      # about 5 minutes on 1 CPU thread
    .venv/bin/python bench/prompt_following.py --ws 1,3 --n 128     # quicker

A script, not a test. ``shapes16_unet_text`` (``scripts/train_conditioning.py``) is sampled with DDIM
(eta = 0, ``--steps`` model evaluations, each a conditional and an empty-prompt call when w is not 1)
from the same starting noise at every w, and read back by ``prompt_accuracy``: the judge reads shape,
colour and size, and calls the sample valid or not; position is read from the pixels
(``read_positions``). Columns, each over all samples (an invalid sample counts as wrong):

- **all**: valid, and shape, colour and size as the prompt asks: every attribute the judge reads;
- **+ position**: that, and the place too;
- **shape / colour / size / place**: one attribute each;
- **held-out all**: ``all`` for prompts of the combinations never trained on (every "blue triangle",
  each of its 18 captions equally often): compositional generalisation;
- **diversity**: for ``--diversity-prompts`` held-in prompts, ``--per-prompt`` samples each, the spread
  (sqrt of the trace of the covariance) of the judge's features of the samples, divided by that of
  real images with the same caption, averaged over the prompts: 1 is as varied as the data within a
  caption (only the jitter of place and size varies there); guidance should lower it;
- **FD**: Frechet distance of the held-in samples' judge features to the real images whose captions
  were the prompts, beside the floor: the same distance from a second real set with the same captions
  (for each prompt another real image with that caption). Two independent real sets are not the
  floor here: their captions differ, and at n = 256 that alone puts them further apart than the
  samples (FD 14.3 between seeds 2 and 3).

Held-in prompts are the captions of ``make_shapes(seed=2)``, held-out ones removed: new images, but
the captions were all seen in training. The held-out reference images come from ``seed=4``.
"""

from __future__ import annotations

import argparse
import time

import torch

from dlcourse.conditioning.text_to_image import held_out, load_text_to_image, prompt_accuracy
from dlcourse.data import make_shapes
from dlcourse.judge import load_judge
from dlcourse.metrics import frechet_distance
from dlcourse.samplers import sample_ddim
from dlcourse.schedules import get_schedule
from dlcourse.tensors import seeded_noise


def spread(features: torch.Tensor) -> float:
    return float(features.double().var(0).sum().sqrt())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ws", default="1,2,3,5,7.5", help="guidance scales, comma separated")
    p.add_argument("--n", type=int, default=256, help="held-in prompts (one sample each)")
    p.add_argument("--n-out", type=int, default=144, help="held-out samples (8 per held-out caption)")
    p.add_argument("--diversity-prompts", type=int, default=8)
    p.add_argument("--per-prompt", type=int, default=32)
    p.add_argument("--steps", type=int, default=20, help="DDIM steps")
    p.add_argument("--seed", type=int, default=0, help="seed of the starting noise")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ws = [float(w) for w in args.ws.split(",")]

    pipe, info = load_text_to_image("shapes16_unet_text", device="cpu")
    judge, schedule = load_judge(16), get_schedule(info["schedule"], info["T"])
    hold = info["hold_out"]

    def held_in(data):
        keep = ~held_out(data.captions, hold)
        return data.images[keep], [c for c, k in zip(data.captions, keep.tolist()) if k]

    real_a, prompts = held_in(make_shapes(2 * args.n, size=16, seed=2))
    real_a, prompts = real_a[:args.n], prompts[:args.n]
    pool = make_shapes(20_000, size=16, seed=4)
    out_mask = held_out(pool.captions, hold)
    out_captions = sorted(set(c for c, h in zip(pool.captions, out_mask.tolist()) if h))
    out_prompts = [out_captions[i % len(out_captions)] for i in range(args.n_out)]
    by_caption = {}
    for image, caption in zip(pool.images, pool.captions):
        by_caption.setdefault(caption, []).append(image)
    uses, matched = {}, []
    for c in prompts:                                         # the k-th use of a caption takes its k-th image
        uses[c] = uses.get(c, -1) + 1
        matched.append(by_caption[c][uses[c]])
    real_b = torch.stack(matched)
    floor = frechet_distance(judge.features(real_b), judge.features(real_a))
    chosen = [c for c in prompts if len(by_caption.get(c, ())) >= args.per_prompt]
    chosen = list(dict.fromkeys(chosen))[:args.diversity_prompts]
    real_spread = [spread(judge.features(torch.stack(by_caption[c][:args.per_prompt]))) for c in chosen]
    div_prompts = [c for c in chosen for _ in range(args.per_prompt)]

    def sample(captions, w, seed):
        x_T = seeded_noise((len(captions), 3, 16, 16), seed)
        return sample_ddim(pipe, x_T, schedule, args.steps, cond=pipe.cond(captions), guidance_scale=w,
                           prediction_type=info["prediction_type"], progress=False)

    print(f"shapes16_unet_text ({sum(q.numel() for q in pipe.unet.parameters()) / 1e6:.2f}M), held out "
          f"{hold}; DDIM-{args.steps}; {len(prompts)} held-in prompts, {len(out_prompts)} held-out samples "
          f"({len(out_captions)} captions), diversity over {len(chosen)} prompts x {args.per_prompt}; "
          f"FD floor (real vs real with the same captions, n = {len(prompts)}) {floor:.2f}\n")
    print("| w | all | + position | shape | colour | size | place | valid | held-out all | held-out + position "
          "| diversity | FD |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for w in ws:
        start = time.perf_counter()
        x = sample(prompts, w, args.seed)
        a = prompt_accuracy(judge, x, prompts)
        o = prompt_accuracy(judge, sample(out_prompts, w, args.seed + 1), out_prompts)
        d = sample(div_prompts, w, args.seed + 2)
        k = args.per_prompt
        div = sum(spread(judge.features(d[i * k:(i + 1) * k])) / s for i, s in enumerate(real_spread)) / len(chosen)
        fd = frechet_distance(judge.features(x), judge.features(real_a))
        pct = lambda v: f"{100 * v:.1f}%"                     # noqa: E731
        print(f"| {w:g} | {pct(a.all)} | {pct(a.all_with_position)} | {pct(a.shape)} | {pct(a.color)} | "
              f"{pct(a.scale)} | {pct(a.position)} | {pct(a.valid)} | {pct(o.all)} | {pct(o.all_with_position)} | "
              f"{div:.2f} | {fd:.2f} |", flush=True)
        print(f"  (w = {w:g}: {time.perf_counter() - start:.0f} s; held-out: shape {pct(o.shape)}, colour "
              f"{pct(o.color)}, size {pct(o.scale)}, place {pct(o.position)}, valid {pct(o.valid)})", flush=True)


if __name__ == "__main__":
    main()
