"""How far the deterministic samplers fall behind DDPM, for a U-Net trained to predict eps or v.

    .venv/bin/python bench/prediction_gap.py epsilon --min-snr 5     # ~8 min training on 1 thread, ~1 min sampling
    .venv/bin/python bench/prediction_gap.py v_prediction

A script, not a test. It trains the default ``UNet(UNetConfig())`` on the shapes with
``dlcourse.training.train`` (seed 0, batches of ``--batch``, ``--steps`` steps), then
draws ``--n`` samples from one x_T with DDPM-100, DDIM-50 and DPM-Solver++(2M)-20 and
scores each with the judge (``quality_report``: valid fraction, Frechet distance and its
floor at the same n). The ratio DDIM-50 / DDPM-100 is the gap an ODE sampler leaves.

Why the prediction type matters here: an eps-network's guess of x_0 is
``(x_t - sqrt(1 - ab) eps) / sqrt(ab)``, which multiplies its error by ``1 / sqrt(ab)``
(up to ~20,000 at t = 999 with the cosine schedule); a v-network's guess is
``sqrt(ab) x_t - sqrt(1 - ab) v``, with no such factor. DDPM adds fresh noise at every
step and so forgets early errors; an ODE sampler carries them to the end.
"""

from __future__ import annotations

import argparse
import time

import torch

from dlcourse.data import make_shapes
from dlcourse.judge import load_judge
from dlcourse.metrics import quality_report
from dlcourse.models import UNet, UNetConfig
from dlcourse.samplers import get_sampler
from dlcourse.schedules import cosine_schedule
from dlcourse.training import train

SAMPLERS = [("ddpm", 100), ("ddim", 50), ("dpmpp_2m", 20)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prediction_type", choices=["epsilon", "sample", "v_prediction"])
    p.add_argument("--min-snr", type=float, default=0.0, help="gamma of min-SNR weighting, 0 = off")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n", type=int, default=300, help="samples per sampler (and real images per set)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    schedule = cosine_schedule(1000)
    torch.manual_seed(0)
    model = UNet(UNetConfig())
    run = train(model, make_shapes(20_000, seed=0).images, schedule, steps=args.steps, batch_size=args.batch,
                prediction_type=args.prediction_type, min_snr_gamma=args.min_snr or None, seed=0, progress=False)
    print(f"{args.prediction_type}, min-SNR {args.min_snr or 'off'}: {run.steps} steps of {args.batch} "
          f"in {run.seconds:.0f} s", flush=True)

    judge = load_judge(16)
    real = make_shapes(2 * args.n, size=16, seed=100).images
    x_T = torch.randn(args.n, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    fd = {}
    for name, steps in SAMPLERS:
        start = time.perf_counter()
        x = get_sampler(name)(run.ema_model, x_T, schedule, steps, prediction_type=args.prediction_type,
                              clip_x0=True, generator=torch.Generator().manual_seed(1), progress=False)
        report = quality_report(judge, x, real)
        fd[name] = report.fd
        print(f"{name}-{steps}: valid {report.valid_fraction:.3f}, FD {report.fd:.2f} (floor {report.fd_floor:.2f}), "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    print(f"DDIM-50 / DDPM-100: {fd['ddim'] / fd['ddpm']:.2f}; "
          f"DPM-Solver++(2M)-20 / DDPM-100: {fd['dpmpp_2m'] / fd['ddpm']:.2f}")


if __name__ == "__main__":
    main()
