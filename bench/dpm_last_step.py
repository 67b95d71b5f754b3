"""DPM-Solver++(2M)'s step into the last visited timestep: first or second order, on the 2-D toy model.

    .venv/bin/python bench/dpm_last_step.py            # a few seconds on 1 CPU thread

A script, not a test. The shipped ``toy2d_mlp`` (two moons, linear schedule) is sampled from one x_T
with DPM-Solver++(2M) at several step counts ("linspace" spacing), with ``lower_order_final`` on
(diffusers' rule: that step at first order below 15 steps) and off, and at first order at every count
(``first_order_final``: the loop's rule applied whatever the count). Each is scored by the energy
distance to fresh data, as a multiple of the floor (two samples of the data): 1.0 is as good as data.
With timesteps evenly spaced in t the last interval is long in lambda, which is what this shows.
"""

from __future__ import annotations

import argparse

import torch

from dlcourse.data import make_toy
from dlcourse.metrics import reference_distance, sample_distance
from dlcourse.pretrained import load_pretrained
from dlcourse.samplers import VPDenoiser, dpmpp_2m_loop, vp_times
from dlcourse.schedules import get_schedule


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=4000, help="samples (and data points for each distance)")
    p.add_argument("--steps", type=int, nargs="+", default=[10, 15, 20, 30, 50])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, info = load_pretrained("toy2d_mlp", device="cpu")
    schedule = get_schedule(info["schedule"], info["T"])
    toy = info["data"]
    floor = reference_distance(toy, args.n)
    x_T = torch.randn(args.n, 2, generator=torch.Generator().manual_seed(0))
    data = make_toy(toy, args.n, seed=1000)
    denoiser = VPDenoiser(model, schedule, prediction_type=info["prediction_type"])
    print(f"toy {toy}, n = {args.n}, floor {floor:.5f}; energy distance / floor")
    print(f"{'steps':>5} {'lower_order_final':>18} {'second order':>13} {'first order always':>19}")
    for steps in args.steps:
        times = vp_times(schedule, steps)
        rows = [sample_distance(dpmpp_2m_loop(denoiser, x_T, times, lower_order_final=lof, progress=False), data)
                / floor for lof in (True, False)]
        rows.append(sample_distance(_first_order_final(denoiser, x_T, times), data) / floor)
        print(f"{steps:>5} {rows[0]:>18.2f} {rows[1]:>13.2f} {rows[2]:>19.2f}", flush=True)


@torch.no_grad()
def _first_order_final(denoiser, x_T, times):
    """DPM-Solver++(2M) with the step into the last visited timestep at first order, whatever the count."""
    from dlcourse.samplers import dpmpp_2m_step

    x, last = x_T, None
    abs_ = [denoiser.alpha_bar(t) for t in times] + [1.0]
    for k, t in enumerate(times):
        x_0, _ = denoiser(x, t)
        if k == len(times) - 1:
            return x_0
        first = last is None or k == len(times) - 2
        x_next = (dpmpp_2m_step(x, x_0, abs_[k], abs_[k + 1]) if first
                  else dpmpp_2m_step(x, x_0, abs_[k], abs_[k + 1], last[0], last[1]))
        last, x = (x_0, abs_[k]), x_next
    return x


if __name__ == "__main__":
    main()
