"""Consistency distillation of a rectified flow on a 2-D toy: quality at 1, 2 and 4 steps against the teacher.

    .venv/bin/python bench/consistency_toy.py                          # two moons, ~80 s on 1 CPU thread
    .venv/bin/python bench/consistency_toy.py --toy eight_gaussians

A script, not a test. The teacher is an ``MLPDenoiser`` (``--hidden``, ``--layers``) trained by
``dlcourse.rectified_flow.train_flow`` for ``--flow-steps`` steps (batch 256, AdamW 1e-3, EMA 0.999, fp32,
``time_scale=1000``) on ``make_toy(toy, --n-train, seed=0)``; its EMA weights teach. The student is a
``ConsistencyModel`` (sigma_data 1: the toys have unit standard deviation) around a copy of the teacher's network
(Song et al. start from the teacher's weights), distilled by ``train_consistency`` for ``--cd-steps`` steps: N =
``--N`` levels, one Euler step of the teacher (``--solver``), target EMA mu = ``--mu``, the pseudo-Huber distance
(``--distance``), AdamW 1e-3, sampled with its EMA weights (0.999).

Every sampler starts from the same ``--n`` noises. Rows: the teacher with Euler's method at 1, 2, 4 and 50 steps;
the consistency model at 1, 2 and 4 steps on ``multistep_times`` (1; 0.75; 0.5; 0.25 for four), and at 4 steps
re-noised to lower times (1, 0.3, 0.1, 0.05), where the student is more accurate. Columns: the energy distance
to fresh data (the mean over ``--data-draws`` draws of ``--n`` points each), as a multiple of the floor (two
samples of the data, ``reference_distance``), and as a multiple of the teacher's 50-step distance. The issue's
target: 4-step consistency samples within 25% of the 50-step teacher's (ratio <= 1.25).
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from dlcourse.consistency import ConsistencyModel, flow_teacher, multistep_sample, multistep_times, train_consistency
from dlcourse.data import make_toy
from dlcourse.metrics import reference_distance, sample_distance
from dlcourse.models import MLPDenoiser
from dlcourse.rectified_flow import sample_flow, train_flow

TIME_SCALE = 1000
LOW_TIMES = [1.0, 0.3, 0.1, 0.05]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--toy", default="two_moons")
    p.add_argument("--n-train", type=int, default=20000, help="data points")
    p.add_argument("--flow-steps", type=int, default=3000, help="optimiser steps of the teacher")
    p.add_argument("--cd-steps", type=int, default=6000, help="optimiser steps of consistency distillation")
    p.add_argument("--N", type=int, default=100, help="intervals of the distillation's discretisation")
    p.add_argument("--solver", default="euler", help="the teacher's step: euler or heun")
    p.add_argument("--mu", type=float, default=0.95, help="decay of the target network's EMA")
    p.add_argument("--distance", default="pseudo_huber", help="l2 or pseudo_huber")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--n", type=int, default=4000, help="samples, and data points in each distance")
    p.add_argument("--data-draws", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    common = dict(batch_size=256, lr=1e-3, ema_decay=0.999, precision="fp32", device="cpu", progress=False)

    data = make_toy(args.toy, args.n_train, seed=0)
    print(f"toy {args.toy}; MLP hidden {args.hidden} x {args.layers}; teacher {args.flow_steps} steps; distillation "
          f"{args.cd_steps} steps, N = {args.N}, {args.solver}, mu = {args.mu}, {args.distance}; "
          f"{torch.get_num_threads()} thread(s)")
    t0 = time.perf_counter()
    torch.manual_seed(0)
    flow = train_flow(MLPDenoiser(hidden=args.hidden, layers=args.layers), data, steps=args.flow_steps,
                      time_scale=TIME_SCALE, **common).ema_model.eval()
    print(f"  teacher trained in {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    student = ConsistencyModel(copy.deepcopy(flow).requires_grad_(True), sigma_data=1.0, time_scale=TIME_SCALE)
    result = train_consistency(student, flow_teacher(flow, time_scale=TIME_SCALE, solver=args.solver), data, N=args.N,
                               target_decay=args.mu, distance=args.distance, steps=args.cd_steps, **common)
    cm = result.ema_model.eval()
    print(f"  distilled in {time.perf_counter() - t0:.1f} s, last-200 loss {sum(result.losses[-200:]) / 200:.2e}",
          flush=True)

    x_T = torch.randn(args.n, 2, generator=torch.Generator().manual_seed(10))
    refs = [make_toy(args.toy, args.n, seed=1000 + k) for k in range(args.data_draws)]
    floor = reference_distance(args.toy, args.n)

    def distance(x):
        return sum(sample_distance(x, r) for r in refs) / len(refs)

    rows = [(f"teacher, Euler {s}", s, distance(sample_flow(flow, x_T, s, time_scale=TIME_SCALE)))
            for s in (1, 2, 4, 50)]
    for times in (multistep_times(1), multistep_times(2), multistep_times(4), LOW_TIMES):
        x = multistep_sample(cm, x_T, times, generator=torch.Generator().manual_seed(11))
        rows.append((f"consistency, times {', '.join(f'{t:g}' for t in times)}", len(times), distance(x)))
    teacher50 = rows[3][2]
    print(f"\nn = {args.n}, floor {floor:.5f} (energy distance of two data samples)\n")
    print("| sampler | network calls | energy distance | / floor | / teacher's 50 steps |")
    print("|---|---|---|---|---|")
    for name, calls, d in rows:
        print(f"| {name} | {calls} | {d:.5f} | {d / floor:.2f} | {d / teacher50:.2f} |")
    even4, low4 = rows[-2][2] / teacher50, rows[-1][2] / teacher50
    print(f"\n4-step consistency / 50-step teacher (target <= 1.25): even times {even4:.2f}, low times {low4:.2f}; "
          f"target {'met' if min(even4, low4) <= 1.25 else 'not met'}; total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
