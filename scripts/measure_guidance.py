"""Measure fidelity against diversity over the guidance scale w, on the shipped conditional U-Net.

Backs the numbers of notebook 05 with more samples than the notebook can afford:

    .venv/bin/python scripts/measure_guidance.py                    # 200 per class, seeds 0 and 1000 (~15 min)
    .venv/bin/python scripts/measure_guidance.py --n 64 --seeds 0   # what the notebook does in full mode

For every w it prints ``dlcourse.metrics.guidance_sweep``'s figures (each averaged over the
4 requested shapes): the judge's accuracy on the requested shape among valid samples, the
valid fraction, the entropy of the judge's colours and sizes, the spread of the judge's
features relative to real images of the shape, and the Frechet distance to real images of
the shape with its floor. With several seeds, each figure is the mean over seeds and the
number after +- is half the range between seeds. A last row scores real images the same way.
"""

from __future__ import annotations

import argparse
import time

import torch

from dlcourse.data import make_shapes
from dlcourse.data.shapes import COLOR_NAMES, SCALE_NAMES
from dlcourse.metrics import guidance_sweep
from dlcourse.judge import load_judge
from dlcourse.metrics import entropy_bits
from dlcourse.pretrained import load_pretrained
from dlcourse.samplers import get_sampler
from dlcourse.schedules import get_schedule

FIELDS = ("accuracy", "valid_fraction", "color_bits", "scale_bits", "feature_spread", "fd", "fd_floor")
REFERENCE_SEED = 1                 # a shapes seed the model and the judge never trained on


def real_row(judge, reference, n: int, classes) -> dict:
    """The same figures for real images of each class (the second disjoint set of n)."""
    rows = []
    for c in classes:
        images = reference.images[reference.labels == c][n:2 * n]
        p = judge.predict(images)
        v = p["valid"]
        rows.append([float((p["shape_probs"].argmax(1)[v] == c).float().mean()), float(v.float().mean()),
                     entropy_bits(torch.bincount(p["color_probs"].argmax(1)[v], minlength=len(COLOR_NAMES))),
                     entropy_bits(torch.bincount(p["scale_probs"].argmax(1)[v], minlength=len(SCALE_NAMES)))])
    return dict(zip(FIELDS, torch.tensor(rows).mean(0).tolist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="samples per class and w")
    parser.add_argument("--steps", type=int, default=20, help="sampler steps")
    parser.add_argument("--sampler", default="ddim", help="a name in dlcourse.samplers.SAMPLERS")
    parser.add_argument("--ws", type=float, nargs="+", default=[0, 0.5, 1, 1.5, 2, 3, 5, 7.5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1000])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, info = load_pretrained("shapes16_unet_cond", device="cpu")
    schedule = get_schedule(info["schedule"], info["T"])
    judge = load_judge()
    reference = make_shapes(12 * args.n, size=info["image_size"], seed=REFERENCE_SEED)
    sampler = get_sampler(args.sampler)
    print(f"{info['name']}: {info['description']}")
    print(f"{args.sampler}, {args.steps} steps, {args.n} samples per class and w, 4 classes, seeds {args.seeds}, "
          f"{args.threads} thread(s)", flush=True)

    runs = []
    for seed in args.seeds:
        start = time.perf_counter()
        runs.append(guidance_sweep(model, schedule, judge, reference, args.ws, n=args.n, steps=args.steps,
                                   seed=seed, sampler=sampler, progress=True))
        print(f"seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)

    header = f"{'w':>5} " + " ".join(f"{name:>17s}" for name in FIELDS)
    print("\n" + header)
    for i, w in enumerate(args.ws):
        cells = []
        for name in FIELDS:
            values = torch.tensor([getattr(run[i], name) for run in runs], dtype=torch.float64)
            half_range = float(values.max() - values.min()) / 2
            cells.append(f"{float(values.mean()):9.3f} +-{half_range:6.3f}")
        print(f"{w:5g} " + " ".join(cells))
    real = real_row(judge, reference, args.n, range(model.num_classes))
    print(f"{'real':>5} " + " ".join(f"{real[name]:9.3f}{'':8s}" if name in real else f"{'':17s}" for name in FIELDS))


if __name__ == "__main__":
    main()
