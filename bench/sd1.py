"""Stable Diffusion 1.x in miniature (notebook 10a): prompt accuracy and time per image, by guidance scale and steps.

    OMP_NUM_THREADS=1 .venv/bin/python bench/sd1.py                          # about 5 minutes on 1 thread
    OMP_NUM_THREADS=1 .venv/bin/python bench/sd1.py --ws 1,3 --steps 20 --n 128   # quicker

A script, not a test. The shipped pipeline (``StableDiffusionMini.from_pretrained()``: ``sd1_shapes32``,
``vae_shapes32``, ``clip_shapes16``'s text encoder; ``scripts/train_sd1.py``) draws one image per prompt for the
captions of ``make_shapes(n, size=32, seed=2)`` (images the training never saw; every caption of the shapes set
was seen, the model holds nothing out), from the same latent noise at every setting, and ``prompt_accuracy``
reads them back as notebook 07a does: the 16 px judge (it resizes 32 px images) reads shape, colour and size and
calls the image valid or not; position is read from the pixels by ``read_positions``. Columns, each a fraction of
all samples (an invalid sample counts as wrong): **all** (valid, and shape, colour and size as asked),
**+ position**, and each attribute alone.

Time: **ms / image** is the wall time of the whole call (encoding the prompts, the sampler, the decoder) for the n
prompts in batches of ``--batch``, divided by n; **one prompt** is the median wall time of ``--single`` calls with
one prompt (a learner's call in the notebook). Each guided step is one U-Net call on 2B rows (the prompt and the
empty prompt), so w = 1 (one call on B rows) is cheaper. Record the machine's load with the figures.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dlcourse.conditioning.text_to_image import prompt_accuracy
from dlcourse.data import make_shapes
from dlcourse.judge import load_judge
from dlcourse.systems import StableDiffusionMini


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ws", default="1,2,3,5,7.5", help="guidance scales, comma separated")
    p.add_argument("--steps", default="10,20", help="DPM-Solver++(2M) steps, comma separated")
    p.add_argument("--n", type=int, default=500, help="prompts (one image each)")
    p.add_argument("--batch", type=int, default=250, help="prompts per call")
    p.add_argument("--single", type=int, default=5, help="one-prompt calls timed per setting")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent noise")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ws = [float(w) for w in args.ws.split(",")]
    step_counts = [int(s) for s in args.steps.split(",")]

    pipe = StableDiffusionMini.from_pretrained("sd1_shapes32", device="cpu")
    judge = load_judge(16)
    prompts = make_shapes(args.n, size=32, seed=2).captions
    z_T = torch.randn(args.n, *pipe.vae.latent_shape, generator=torch.Generator().manual_seed(args.seed))
    real = prompt_accuracy(judge, make_shapes(args.n, size=32, seed=2).images, prompts)
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"{args.n} prompts of make_shapes(size=32, seed=2), {torch.get_num_threads()} thread(s), load {load}; "
          f"the real images of these captions: all {real.all:.1%}, + position {real.all_with_position:.1%}, "
          f"valid {real.valid:.1%}\n")
    print("| steps | w | all | + position | shape | colour | size | place | valid | ms / image | one prompt (ms) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for steps in step_counts:
        for w in ws:
            start = time.perf_counter()
            x = torch.cat([pipe(prompts[i:i + args.batch], num_inference_steps=steps, guidance_scale=w,
                                latents=z_T[i:i + args.batch]) for i in range(0, args.n, args.batch)])
            per_image = 1000 * (time.perf_counter() - start) / args.n
            single = []
            for k in range(args.single):
                start = time.perf_counter()
                pipe(prompts[k], num_inference_steps=steps, guidance_scale=w, latents=z_T[k:k + 1])
                single.append(1000 * (time.perf_counter() - start))
            a = prompt_accuracy(judge, x, prompts)
            print(f"| {steps} | {w:g} | {a.all:.1%} | {a.all_with_position:.1%} | {a.shape:.1%} | {a.color:.1%} | "
                  f"{a.scale:.1%} | {a.position:.1%} | {a.valid:.1%} | {per_image:.1f} | "
                  f"{statistics.median(single):.0f} |", flush=True)
    with open("/proc/loadavg") as f:
        print(f"\nload at the end {f.read().split()[0]}")


if __name__ == "__main__":
    main()
