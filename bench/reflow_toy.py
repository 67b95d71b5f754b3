"""Rectified flow, one and two reflows, and uniform against logit-normal t, on a 2-D toy.

    .venv/bin/python bench/reflow_toy.py                          # two moons, ~2 min on 1 CPU thread
    .venv/bin/python bench/reflow_toy.py --toy eight_gaussians

A script, not a test. Four flows, each an ``MLPDenoiser`` (``--hidden``, ``--layers``) trained with
``dlcourse.rectified_flow.train_flow`` for ``--train-steps`` steps (batch 256, AdamW 1e-3, EMA 0.999,
fp32, ``time_scale=1000``) and sampled with its EMA weights:

- **1-RF**: flow matching on ``make_toy(toy, --n-train, seed=0)`` with fresh noise, uniform t;
- **2-RF**: a copy of 1-RF trained on ``reflow_pairs(1-RF, --pairs, steps=--pair-steps)``;
- **3-RF**: a copy of 2-RF trained on the pairs of 2-RF (another seed);
- **1-RF logit-normal**: as 1-RF with SD3's t (m = 0, s = 1).

Each is sampled with Euler's method from the same ``--n`` noises at 1, 2, 4, 8 and 50 steps. Columns:
the energy distance to fresh data (the mean over ``--data-draws`` draws of ``--n`` points each), as a
multiple of the floor (two samples of the data, ``reference_distance``); the mean squared distance of each
sample to the same noise's 50-step sample (how far fewer steps land from the ODE's end); and the
straightness S of that Euler path (``straightness``; 0 for one step, by definition). ``S(100)``, the
straightness of each flow's 100-step path, is printed after its rows. The issue's target: after reflow,
the 1-step distance within 2x of the same model's 50-step distance (against 1-RF's ratio beside it).
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from dlcourse.data import make_toy
from dlcourse.metrics import reference_distance, sample_distance
from dlcourse.models import MLPDenoiser
from dlcourse.rectified_flow import reflow_pairs, sample_flow, straightness, train_flow, trajectories

TIME_SCALE = 1000
STEPS = (1, 2, 4, 8, 50)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--toy", default="two_moons")
    p.add_argument("--n-train", type=int, default=20000, help="data points for the first flow")
    p.add_argument("--train-steps", type=int, default=3000, help="optimiser steps for every flow")
    p.add_argument("--pairs", type=int, default=20000, help="reflow pairs")
    p.add_argument("--pair-steps", type=int, default=100, help="Euler steps that make the pairs")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--n", type=int, default=4000, help="samples, and data points in each distance")
    p.add_argument("--data-draws", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    def train(model, data, **kw):
        t0 = time.perf_counter()
        result = train_flow(model, data, steps=args.train_steps, batch_size=256, lr=1e-3, time_scale=TIME_SCALE,
                            ema_decay=0.999, precision="fp32", device="cpu", progress=False, **kw)
        loss = sum(result.losses[-200:]) / len(result.losses[-200:])
        print(f"  trained in {time.perf_counter() - t0:.1f} s, last-200 loss {loss:.4f}", flush=True)
        return result.ema_model.eval()

    def fresh():
        torch.manual_seed(0)                      # the same initial weights for both first flows
        return MLPDenoiser(hidden=args.hidden, layers=args.layers)

    data = make_toy(args.toy, args.n_train, seed=0)
    print(f"toy {args.toy}; MLP hidden {args.hidden} x {args.layers}; {args.train_steps} steps per flow; "
          f"{args.pairs} pairs from {args.pair_steps} Euler steps; {torch.get_num_threads()} thread(s)")
    flows = {}
    print("1-RF")
    flows["1-RF"] = train(fresh(), data)
    print("2-RF")
    flows["2-RF"] = train(copy.deepcopy(flows["1-RF"]).requires_grad_(True),     # EMA copies are frozen
                          reflow_pairs(flows["1-RF"], args.pairs, steps=args.pair_steps, seed=1, time_scale=TIME_SCALE))
    print("3-RF")
    flows["3-RF"] = train(copy.deepcopy(flows["2-RF"]).requires_grad_(True),
                          reflow_pairs(flows["2-RF"], args.pairs, steps=args.pair_steps, seed=2, time_scale=TIME_SCALE))
    print("1-RF logit-normal")
    flows["1-RF logit-normal"] = train(fresh(), data, t_sampling="logit_normal")

    x_T = torch.randn(args.n, 2, generator=torch.Generator().manual_seed(10))
    refs = [make_toy(args.toy, args.n, seed=1000 + k) for k in range(args.data_draws)]
    floor = reference_distance(args.toy, args.n)
    print(f"\nn = {args.n}, floor {floor:.5f} (energy distance of two data samples)\n")
    print("| flow | Euler steps | energy distance | / floor | gap to 50 steps | S (this path) |")
    print("|---|---|---|---|---|---|")
    table = {}
    for name, model in flows.items():
        end = sample_flow(model, x_T, 50, time_scale=TIME_SCALE)
        for steps in STEPS:
            path = trajectories(model, x_T, steps, time_scale=TIME_SCALE)
            d = sum(sample_distance(path[-1], r) for r in refs) / len(refs)
            gap = (path[-1] - end).square().sum(1).mean().item()
            table[name, steps] = d
            print(f"| {name} | {steps} | {d:.5f} | {d / floor:.2f} | {gap:.4f} | {straightness(path):.4f} |",
                  flush=True)
        s100 = straightness(trajectories(model, x_T, 100, time_scale=TIME_SCALE))
        print(f"| {name} | S(100) = {s100:.4f} | | | | |")

    print("\n1-step / 50-step energy distance (target: <= 2 after reflow)")
    for name in flows:
        print(f"  {name}: {table[name, 1] / table[name, 50]:.2f}")
    met = any(table[n, 1] / table[n, 50] <= 2 for n in ("2-RF", "3-RF"))
    print(f"target {'met' if met else 'not met'}; total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
