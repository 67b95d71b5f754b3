"""Sample quality against the number of network calls, for every sampler, on the shipped shapes U-Net.

    .venv/bin/python bench/sampler_quality.py                       # 1000 samples, seed 0, ~35-60 min on 1 CPU thread
    .venv/bin/python bench/sampler_quality.py --n 1000 --seeds 0 1 2
    .venv/bin/python bench/sampler_quality.py --n 200 --quick       # a few configurations, a few minutes
    .venv/bin/python bench/sampler_quality.py --target --threads 2  # DPM-Solver++(2M) 20, 50; DDIM 50, 200; DDPM-1000: ~10 min
    .venv/bin/python bench/sampler_quality.py --target --threads 2 --n 2000 --seeds 0 1 2   # ~60 min
    .venv/bin/python bench/sampler_quality.py --reference-config dpmpp_2m:200:reversed_quadratic \
        --configs dpmpp_2m:20:reversed_quadratic ddim:50:reversed_quadratic dpmpp_2m:20:logsnr ddim:50:logsnr \
        --n 5000 --seeds 0 --json seed0.json    # against the network's converged ODE

A script, not a test: the seconds depend on the machine and on whatever else runs on it.
It is notebook 04's measurement with more samples, so that the notebook's figure (100
samples) can be checked:

- the model is ``load_pretrained("shapes16_unet")`` (cosine schedule, T = 1000, v-prediction),
  sampled with ``clip_x0=True`` and the default "linspace" spacing (``--spacing`` for another),
  DDIM deterministic (``--eta`` for its noise);
- for each seed, every sampler and step count starts from the **same** noise x_T
  ``(n, 3, 16, 16)`` (``torch.Generator().manual_seed(seed)``); DDPM's and DDIM's added
  noise comes from a generator seeded with ``seed + 1``;
- quality is the Frechet distance (FD) in the judge's features to ``--reference`` real
  images (``make_shapes(reference + n, seed=100 + seed)``, the first ``reference``; the
  model trained on seed 0, the judge on seeds >= 10,000), and the judge's valid fraction.
  The FD of a finite sample is biased upwards by an amount that depends on ``n``, so every
  FD here is at the same ``n``, next to the **floor**: the FD of the other ``n`` real images
  to the reference. ``excess`` is FD - floor, a rough correction for that bias. A reference
  much larger than ``n`` (the default 10,000) takes most of the noise out of the comparison
  between samplers, which share it; ``--reference`` equal to ``n`` is the older protocol;
- NFE is the number of network calls (Heun: ``2 steps - 1``); seconds is the wall time of
  the sampler alone, in batches of ``--batch``. On a CPU the model and x_T are in
  channels-last memory order (one U-Net call on 250 images: 2546 against 1888 images/s on
  2 idle cores; the samples are the same up to rounding).

``--configs`` runs a chosen list of ``sampler:steps[:spacing]`` configurations (the spacing
defaults to ``--spacing``) instead of the built-in lists. The ratios are to DDPM-1000's FD,
or, with ``--reference-config sampler:steps[:spacing]``, to that configuration's FD on the
same seed (e.g. ``dpmpp_2m:200``, the network's converged probability-flow ODE: how far a
few-step solver is from the ODE it approximates, apart from how far that ODE is from the
data). The reference configuration runs first on every seed, and every other row also gets
the root-mean-square pixel distance of each of its samples to the reference's sample from
the same x_T (median and 90th percentile): the solver's error alone, without the sampling
noise of the FD.

Prints one table row as each measurement finishes, then a summary per configuration
(mean and, with several seeds, the standard deviation across seeds) and the ratio of each
FD (and each excess) to the reference's. ``--json PATH`` also writes every row (the file
is rewritten after each row, so an interrupted run keeps what it measured).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from dlcourse.data import make_shapes
from dlcourse.judge import load_judge
from dlcourse.metrics import frechet_distance, matched_noise, valid_fraction
from dlcourse.pretrained import load_pretrained
from dlcourse.samplers import SPACINGS, get_sampler
from dlcourse.samplers import model_calls as nfe
from dlcourse.schedules import get_schedule
from train_speed import machine                     # bench/ is on sys.path when this script runs

# (sampler, steps); Heun's NFE is 2 steps - 2. DDPM-1000 last: it is the reference and the longest.
FULL = ([("dpmpp_2m", s) for s in (5, 10, 20, 50)] + [("ddim", s) for s in (5, 10, 20, 50)] + [("euler", 20)]
        + [("heun", s) for s in (5, 10, 25, 50)] + [("ddpm", s) for s in (20, 100)] + [("ddpm", 1000)])
# are DPM-Solver++(2M)-20 and DDIM-50 within 10% of DDPM-1000? And with 50 and 200 calls?
TARGET = [("dpmpp_2m", 20), ("dpmpp_2m", 50), ("ddim", 50), ("ddim", 200), ("ddpm", 1000)]
QUICK = [("dpmpp_2m", 10), ("dpmpp_2m", 20), ("ddim", 20), ("ddim", 50), ("heun", 10), ("ddpm", 100),
         ("ddpm", 1000)]


def parse_config(text: str, default_spacing: str) -> tuple[str, int, str]:
    """'dpmpp_2m:20:logsnr' -> ('dpmpp_2m', 20, 'logsnr'); without a spacing, ``default_spacing``."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"expected sampler:steps[:spacing], got {text!r}")
    name, steps, spacing = parts[0], int(parts[1]), parts[2] if len(parts) == 3 else default_spacing
    get_sampler(name)                                             # raises on an unknown sampler
    if spacing not in SPACINGS:
        raise argparse.ArgumentTypeError(f"spacing {spacing!r} is not one of {SPACINGS}")
    return name, steps, spacing


def label(config) -> str:
    return ":".join(str(part) for part in config)


def load_average() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def spread(values) -> float:
    """The standard deviation across seeds; nan for one seed."""
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def mean_sd(values) -> str:
    """'1.02 +- 0.05' (mean and sd across seeds), '1.02' for one seed, '' for none."""
    if not values:
        return ""
    return f"{statistics.mean(values):.2f}" + (f" +- {spread(values):.2f}" if len(values) > 1 else "")


@torch.no_grad()
def generate(model, schedule, name, steps, x_T, seed, batch, info, spacing="linspace", eta=0.0):
    """Samples (n, 3, 16, 16) and the sampler's wall time in seconds, in batches of ``batch``.
    ``eta`` is DDIM's (the other samplers have none)."""
    sampler = get_sampler(name)
    extra = dict(eta=eta) if name == "ddim" else {}
    out, seconds = [], 0.0
    for k, start in enumerate(range(0, x_T.shape[0], batch)):
        g = torch.Generator().manual_seed(seed + 1 + 1000 * k)
        t0 = time.perf_counter()
        out.append(sampler(model, x_T[start:start + batch], schedule, steps, clip_x0=info["clip_x0"],
                           prediction_type=info["prediction_type"], generator=g, spacing=spacing,
                           progress=False, **extra))
        seconds += time.perf_counter() - t0
    return torch.cat(out), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="samples per configuration")
    parser.add_argument("--reference", type=int, default=10_000, help="real images the FD is measured against")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--quick", action="store_true", help="only a few configurations")
    parser.add_argument("--target", action="store_true",
                        help="only DPM-Solver++(2M) at 20 and 50 steps, DDIM at 50 and 200, and DDPM-1000 (the "
                             "target: DPM-Solver++(2M)-20 and DDIM-50 within 10%% of DDPM-1000's FD)")
    parser.add_argument("--only", nargs="+", default=None, metavar="SAMPLER",
                        help="only these samplers (e.g. --only heun euler)")
    parser.add_argument("--spacing", default="linspace", choices=SPACINGS,
                        help="the timesteps every sampler visits (with all 1000 steps they are the same)")
    parser.add_argument("--eta", type=float, default=0.0,
                        help="DDIM's eta: 0 deterministic (the default), 1 DDPM's noise on DDIM's timesteps")
    parser.add_argument("--configs", nargs="+", default=None, metavar="SAMPLER:STEPS[:SPACING]",
                        help="run these configurations instead of the built-in lists, e.g. dpmpp_2m:20:logsnr "
                             "ddim:50 (the spacing defaults to --spacing)")
    parser.add_argument("--reference-config", default=None, metavar="SAMPLER:STEPS[:SPACING]",
                        help="the ratios' reference (default DDPM-1000), e.g. dpmpp_2m:200 for the network's "
                             "converged ODE; run first on every seed, added to the configurations if missing")
    parser.add_argument("--json", default=None, help="write every row to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, info = load_pretrained("shapes16_unet", device="cpu")
    model = model.to(memory_format=torch.channels_last)
    schedule = get_schedule(info["schedule"], info["T"])
    judge = load_judge(16)
    if args.configs:
        configs = [parse_config(c, args.spacing) for c in args.configs]
    else:
        configs = TARGET if args.target else QUICK if args.quick else FULL
        configs = [(name, steps, args.spacing) for name, steps in configs]
    if args.only:
        configs = [c for c in configs if c[0] in args.only]
    ref_config = parse_config(args.reference_config, args.spacing) if args.reference_config else None
    if ref_config is not None:                    # first, so that the others can be compared sample by sample
        configs = [ref_config] + [c for c in configs if c != ref_config]

    def is_reference(row) -> bool:
        if ref_config is None:
            return row["sampler"] == "ddpm" and row["steps"] == 1000
        return (row["sampler"], row["steps"], row["spacing"]) == ref_config
    ref_name = "DDPM-1000" if ref_config is None else label(ref_config)

    def write_json() -> None:
        if args.json:
            with open(args.json, "w") as f:
                json.dump(dict(machine=machine(), n=args.n, seeds=args.seeds, spacing=args.spacing, eta=args.eta,
                               reference_config=ref_name, reference_images=args.reference, floors=floors,
                               rows=rows), f, indent=1)
    print(f"machine: {machine()}; load average at start: {load_average()}")
    print(f"model: shapes16_unet ({info['schedule']}, T = {info['T']}, {info['prediction_type']}), "
          f"n = {args.n} samples per row, {args.reference} real images as the reference, seeds {args.seeds}, "
          f"spacing {args.spacing!r} unless given, DDIM eta {args.eta}, ratios to {ref_name}")
    print(f"{'seed':>4s} {'sampler':>9s} {'steps':>5s} {'spacing':>18s} {'NFE':>5s} {'FD':>8s} {'floor':>6s} "
          f"{'valid':>6s} {'seconds':>8s} {'dist med':>8s} {'dist p90':>8s} {'load':>15s}", flush=True)

    rows, floors = [], {}
    for seed in args.seeds:
        real = make_shapes(args.reference + args.n, size=16, seed=100 + seed).images
        feats_a = judge.features(real[:args.reference])
        floor = frechet_distance(judge.features(real[args.reference:]), feats_a)
        noise_fd = frechet_distance(judge.features(matched_noise(real, args.n, seed=seed)), feats_a)
        floors[seed] = dict(floor=floor, noise_fd=noise_fd, real_valid=valid_fraction(judge, real[args.reference:]))
        print(f"{seed:4d} {'real':>9s} {'':>5s} {'':>18s} {'':>5s} {floor:8.2f} {floor:6.2f} "
              f"{floors[seed]['real_valid']:6.3f}   (matched noise: FD {noise_fd:.0f})", flush=True)
        x_T = torch.randn(args.n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
        x_T = x_T.to(memory_format=torch.channels_last)
        ref_samples = None
        for name, steps, spacing in configs:
            samples, seconds = generate(model, schedule, name, steps, x_T, seed, args.batch, info, spacing,
                                        args.eta)
            fd = frechet_distance(judge.features(samples), feats_a)
            row = dict(seed=seed, sampler=name, steps=steps, spacing=spacing, nfe=nfe(name, steps), fd=fd,
                       floor=floor, valid=valid_fraction(judge, samples), seconds=seconds, load=load_average())
            if ref_config is not None and (name, steps, spacing) == ref_config:
                ref_samples = samples
            elif ref_samples is not None:          # rms pixel distance to the reference's sample from the same x_T
                dist = (samples - ref_samples).float().square().flatten(1).mean(1).sqrt()
                row.update(dist_median=dist.median().item(), dist_p90=dist.quantile(0.9).item())
            rows.append(row)
            dists = (f"{row['dist_median']:8.4f} {row['dist_p90']:8.4f}" if "dist_median" in row
                     else f"{'':>8s} {'':>8s}")
            print(f"{seed:4d} {name:>9s} {steps:5d} {spacing:>18s} {row['nfe']:5d} {fd:8.2f} {floor:6.2f} "
                  f"{row['valid']:6.3f} {seconds:8.1f} {dists} {row['load']:>15s}", flush=True)
            write_json()

    print(f"\nsummary over seeds {args.seeds} (n = {args.n}); ratio = FD / FD of {ref_name} with the same seed, "
          f"excess ratio = (FD - floor) / (FD - floor of {ref_name}), both averaged over seeds (sd across seeds); "
          f"per seed: the ratio on each seed")
    reference = {r["seed"]: r["fd"] for r in rows if is_reference(r)}
    print(f"{'sampler':>9s} {'steps':>5s} {'spacing':>18s} {'NFE':>5s} {'FD mean':>8s} {'FD sd':>6s} {'ratio':>12s} "
          f"{'excess ratio':>13s} {'valid':>6s} {'seconds':>8s}  per seed")
    for name, steps, spacing in configs:
        mine = [r for r in rows if (r["sampler"], r["steps"], r["spacing"]) == (name, steps, spacing)]
        fds = [r["fd"] for r in mine]
        ratios = [r["fd"] / reference[r["seed"]] for r in mine if r["seed"] in reference]
        excess = [(r["fd"] - r["floor"]) / (reference[r["seed"]] - r["floor"]) for r in mine if r["seed"] in reference]
        per_seed = " / ".join(f"{r['fd'] / reference[r['seed']]:.3f}" for r in mine if r["seed"] in reference)
        print(f"{name:>9s} {steps:5d} {spacing:>18s} {nfe(name, steps):5d} {statistics.mean(fds):8.2f} "
              f"{spread(fds):6.2f} {mean_sd(ratios):>12s} {mean_sd(excess):>13s} "
              f"{statistics.mean(r['valid'] for r in mine):6.3f} {statistics.mean(r['seconds'] for r in mine):8.1f}"
              f"  {per_seed}")
    fl = [f["floor"] for f in floors.values()]
    print(f"{'real':>9s} {'':>5s} {'':>18s} {'':>5s} {statistics.mean(fl):8.2f} "
          f"{spread(fl):6.2f} {'':>12s} {'':>13s} "
          f"{statistics.mean(f['real_valid'] for f in floors.values()):6.3f}   (the floor)")
    print(f"load average at the end: {load_average()}")
    write_json()


if __name__ == "__main__":
    main()
