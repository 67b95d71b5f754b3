"""A latent consistency model on 32 px shapes: the shipped ``lcm_shapes32`` against its teacher.

    OMP_NUM_THREADS=1 .venv/bin/python bench/lcm_shapes32.py             # n = 500
    OMP_NUM_THREADS=1 .venv/bin/python bench/lcm_shapes32.py --n 1000

A script, not a test. The teacher is the shipped latent U-Net ``latent_shapes32_unet`` (notebook 06; cosine
schedule, v-prediction) decoded by ``vae_shapes32``; the student ``lcm_shapes32`` was distilled from it in the
VAE's latent space by ``scripts/train_lcm.py``. From the same ``--n`` latent noises: the teacher with DDIM at 50
steps (its reference, the issue's "50-step teacher") and at 1, 2 and 4 steps (what the same calls buy without
distillation), and the consistency model at 1, 2 and 4 calls, on even re-noising times (``multistep_times``) and
on low ones (1, 0.3, 0.1, 0.05). Every row is decoded, clamped to [-1, 1] and scored by
``dlcourse.metrics.quality_report`` with the 16 px judge (it resizes the 32 px images) against
``make_shapes(2 n, size=32, seed=1)`` (never trained on): valid fraction, Frechet distance in the judge's
features, and beside them the real-vs-real floor and matched noise. Time per image: the wall-clock of sampling and
decoding on ``--threads`` threads divided by n (the decoder's share is the same in every row).
"""

from __future__ import annotations

import argparse
import time

import torch

from dlcourse.checkpoints import build_model, load_checkpoint
from dlcourse.consistency import ConsistencyModel, load_consistency, multistep_sample, multistep_times
from dlcourse.data import make_shapes
from dlcourse.judge import load_judge
from dlcourse.latent import decode
from dlcourse.metrics import quality_report
from dlcourse.pretrained import ASSET_DIR, PRETRAINED, load_pretrained
from dlcourse.samplers import sample_ddim
from dlcourse.schedules import get_schedule

EVAL_SEED = 1
LOW_TIMES = [1.0, 0.3, 0.1, 0.05]


def load_lcm(name: str = "lcm_shapes32"):
    """``(ConsistencyModel, info)``; a file not registered yet is read by its sidecar digest (noted)."""
    if name in PRETRAINED:
        return load_consistency(name, device="cpu")
    print(f"note: {name} is not in PRETRAINED yet; checked against its .sha256 sidecar")
    checkpoint = load_checkpoint(ASSET_DIR / f"{name}.pt")
    info = dict(checkpoint["extra"])
    return ConsistencyModel(build_model(checkpoint).eval(), **info["consistency"]).eval(), info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=500, help="samples per row (and images in each real set)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="lcm_shapes32", help="the consistency model's asset name")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    n = args.n
    vae, vae_info = load_pretrained("vae_shapes32", device="cpu")
    teacher, t_info = load_pretrained("latent_shapes32_unet", device="cpu")
    lcm, info = load_lcm(args.name)
    scale, schedule = vae_info["scale_factor"], get_schedule(t_info["schedule"], t_info["T"])
    judge = load_judge(16)
    reference = make_shapes(2 * n, size=32, seed=EVAL_SEED).images
    z_T = torch.randn(n, *vae.latent_shape, generator=torch.Generator().manual_seed(10))    # (n, 4, 8, 8)
    rows = {}

    def row(name, sample):
        start = time.perf_counter()
        with torch.no_grad():
            x = decode(vae, sample(), scale)
        ms = 1000 * (time.perf_counter() - start) / n
        r = quality_report(judge, x.clamp(-1, 1), reference, seed=EVAL_SEED)
        rows[name] = r
        print(f"{name:34s} {r.fd:8.2f} {r.valid_fraction:7.3f} {r.fd / r.fd_floor:9.2f} {ms:9.2f}", flush=True)

    print(f"n = {n} samples per row; {torch.get_num_threads()} thread(s); {args.name}: "
          f"{sum(q.numel() for q in lcm.parameters()) / 1e6:.2f}M parameters, {info.get('steps')} steps")
    print(f"{'model, sampler':34s} {'FD':>8s} {'valid':>7s} {'FD/floor':>9s} {'ms/image':>9s}")
    for steps in (50, 1, 2, 4):
        row(f"teacher DDIM {steps}", lambda: sample_ddim(teacher, z_T, schedule, steps, clip_x0=False,
                                                         prediction_type=t_info["prediction_type"]))
    gen = torch.Generator().manual_seed(11)
    for steps in (1, 2, 4):
        row(f"LCM {steps} (even times)", lambda: multistep_sample(lcm, z_T, multistep_times(steps),
                                                                generator=gen.manual_seed(11)))
    row("LCM 4 (times 1, .3, .1, .05)", lambda: multistep_sample(lcm, z_T, LOW_TIMES, generator=gen.manual_seed(11)))
    r = next(iter(rows.values()))
    print(f"reference points (n = {n}): real-vs-real floor FD {r.fd_floor:.2f} (valid {r.real_valid_fraction:.3f}), "
          f"matched noise FD {r.noise_fd:.1f} (valid {r.noise_valid_fraction:.3f})")
    fd = {k: v.fd for k, v in rows.items()}
    for key in ("LCM 4 (even times)", "LCM 4 (times 1, .3, .1, .05)"):
        ratio = fd[key] / fd["teacher DDIM 50"]
        print(f"target, {key} within 25% of the teacher's 50-step FD: {ratio:.2f}x "
              f"({'met' if ratio <= 1.25 else 'missed'})")


if __name__ == "__main__":
    main()
