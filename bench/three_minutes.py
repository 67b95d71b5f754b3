"""What it takes for the 16 px shapes U-Net to reach 90% valid samples in 3 minutes on a CPU.

    .venv/bin/python bench/three_minutes.py quality --steps 2400 --check 800,1600,2400     # baseline recipe
    .venv/bin/python bench/three_minutes.py quality --lr 2e-3 --ema 0.995 --steps 2400 ...  # one lever changed
    .venv/bin/python bench/three_minutes.py speed --batch 32 --steps 60                   # steps/s of a recipe

A script, not a test. Training is measured in **steps**, not seconds: other programs
share the cores and make seconds unreliable. ``speed`` times a recipe separately, so
"steps reached in 180 s" is ``180 x steps/s`` at a known load (the load average is printed).
It also prints steps per second of the process's own CPU time (one thread): on a busy
machine that is close to what the wall clock gives on a quiet one (a little lower, as the
other programs also compete for the caches).

``quality`` trains from scratch with the loop of ``dlcourse.training.train`` written out
(the same AdamW, fused, gradient clipping at 1.0, EMA with warm-up, and the same seeding,
so the default recipe draws exactly the batches ``train`` draws), plus the levers below.
At each step count in ``--check`` it samples as notebook 03 does (``sample_ddpm``, 100 of
the 1000 steps, 100 samples from the EMA weights, starting noise of seed 0) and scores them
with the judge (``quality_report``: valid fraction, Frechet distance and its floor).
A constant learning rate (after the warm-up) makes each check the result of a shorter run.

Levers (each one flag, defaulting to the notebook's recipe):
    --base, --mults, --res-blocks, --no-attn   the U-Net's size (``UNetConfig``)
    --batch, --lr, --warmup, --beta1, --beta2, --wd, --clip
    --ema        one or more EMA decays, all kept side by side and scored (they do not change training)
    --pred       epsilon, sample or v_prediction
    --min-snr    gamma of min-SNR weighting (Hang et al. 2023), 0 = off
    --channels-last
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

from dlcourse.data import make_shapes
from dlcourse.ema import EMA
from dlcourse.tensors import expand_like
from dlcourse.judge import load_judge
from dlcourse.metrics import quality_report
from dlcourse.models import UNet, UNetConfig
from dlcourse.parameterization import prediction_target
from dlcourse.samplers import sample_ddpm
from dlcourse.schedules import cosine_schedule

T = 1000


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def build(args) -> UNet:
    mults = tuple(int(m) for m in args.mults.split(","))
    torch.manual_seed(args.seed)                         # the notebook: torch.manual_seed(0); UNet(...)
    return UNet(UNetConfig(base_channels=args.base, channel_mults=mults, num_res_blocks=args.res_blocks,
                           attention=not args.no_attn))


def make_loss(args, schedule):
    """The loss of ``diffusion_loss`` (same draws: t, then eps), optionally min-SNR weighted."""
    ab_all = schedule.alphas_cumprod.float()

    def loss_fn(model, x_0, cond):
        B = x_0.shape[0]
        t = torch.randint(0, T, (B,))
        eps = torch.randn(x_0.shape, dtype=x_0.dtype)
        alpha_bar = ab_all[t]                                              # (B,)
        ab = expand_like(alpha_bar, x_0)                                   # (B, 1, 1, 1)
        x_t = ab.sqrt() * x_0 + (1 - ab).sqrt() * eps
        if args.channels_last:
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        target = prediction_target(x_0, eps, alpha_bar, args.pred)
        err = (model(x_t, t, cond).float() - target).square().mean(dim=(1, 2, 3))   # (B,)
        if args.min_snr > 0:
            snr = alpha_bar / (1 - alpha_bar)
            # min(SNR, gamma) is the weight of an x_0 loss; divided by what eps / v losses already weigh
            base = {"epsilon": snr, "v_prediction": snr + 1, "sample": torch.ones_like(snr)}[args.pred]
            err = err * torch.minimum(snr, torch.full_like(snr, args.min_snr)) / base
        return err.mean()

    return loss_fn


def optimizer_for(model, args):
    return torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(args.beta1, args.beta2),
                             weight_decay=args.wd, fused=True)


def lr_at(step: int, args) -> float:
    """Linear warm-up over ``--warmup`` steps, then constant."""
    return args.lr * min(1.0, (step + 1) / args.warmup) if args.warmup > 0 else args.lr


def setup(args, schedule):
    """The recipe's model (in train mode), loss function and optimiser."""
    model = build(args)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    return model, make_loss(args, schedule), optimizer_for(model, args)


def quality(args) -> dict:
    schedule = cosine_schedule(T)
    data = make_shapes(20_000, size=16, seed=0).images
    judge = load_judge(16)
    reference = make_shapes(200, size=16, seed=1).images
    model, loss_fn, optimizer = setup(args, schedule)
    emas = {d: EMA(model, d) for d in args.ema}
    checks = sorted(int(s) for s in args.check.split(",")) if args.check else [args.steps]
    results, train_s, losses = [], 0.0, []
    print(f"recipe {recipe(args)} | params {sum(p.numel() for p in model.parameters()):,} | {load()}", flush=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)                     # train(..., seed=0)
        done = 0
        for stop in checks:
            t0 = time.perf_counter()
            while done < stop:
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(done, args)
                idx = torch.randint(0, data.shape[0], (args.batch,))
                loss = loss_fn(model, data[idx], None)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if args.clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), args.clip)
                optimizer.step()
                for ema in emas.values():
                    ema.update(model)
                losses.append(loss.item())
                done += 1
            train_s += time.perf_counter() - t0
            with torch.random.fork_rng(devices=[]):
                reports = {f"ema {d}": score(ema.model, schedule, judge, reference, args) for d, ema in emas.items()}
                if args.raw:
                    reports["last"] = score(model.eval(), schedule, judge, reference, args)
                model.train()
            row = dict(steps=done, train_s=round(train_s, 1), loss=round(sum(losses[-100:]) / len(losses[-100:]), 4),
                       fd_floor=round(next(iter(reports.values())).fd_floor, 1),
                       scores={k: dict(valid=r.valid_fraction, fd=round(r.fd, 1)) for k, r in reports.items()})
            results.append(row)
            print(f"  {done:5d} steps  train {train_s:6.1f} s  loss {row['loss']:.4f}  "
                  + "  ".join(f"[{k}] valid {r.valid_fraction:.2f} FD {r.fd:.1f}" for k, r in reports.items())
                  + f"  (FD floor {row['fd_floor']:.1f}) | {load()}", flush=True)
    return dict(recipe=recipe(args), seed=args.seed, checks=results)


@torch.no_grad()
def score(model, schedule, judge, reference, args):
    # notebook 03's generate(): n = 100, seed 0 for x_T, seed 1 for the sampler's noise, 100 steps
    x_T = torch.randn(100, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    samples = sample_ddpm(model, x_T, schedule, steps=100, prediction_type=args.pred,
                          generator=torch.Generator().manual_seed(1), progress=False)
    return quality_report(judge, samples, reference)


def speed(args) -> dict:
    schedule = cosine_schedule(T)
    data = make_shapes(2_000, size=16, seed=0).images
    model, loss_fn, optimizer = setup(args, schedule)
    ema = EMA(model, args.ema[0])
    rates, cpu_rates = [], []
    before = load()
    for window in range(args.windows + 1):               # window 0 is the warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            idx = torch.randint(0, data.shape[0], (args.batch,))
            loss = loss_fn(model, data[idx], None)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            optimizer.step()
            ema.update(model)
            loss.item()
        if window:
            rates.append(args.steps / (time.perf_counter() - t0))
            cpu_rates.append(args.steps / (time.process_time() - c0))
    rates.sort()
    cpu_rates.sort()
    out = dict(recipe=recipe(args), params=sum(p.numel() for p in model.parameters()),
               median=rates[len(rates) // 2], low=rates[0], high=rates[-1],
               cpu_median=cpu_rates[len(cpu_rates) // 2], before=before, after=load())
    print(f"{out['recipe']} | {out['params']:,} params | {out['median']:.2f} steps/s "
          f"({out['low']:.2f}-{out['high']:.2f}) = {180 * out['median']:.0f} steps in 180 s | "
          f"per CPU second: {out['cpu_median']:.2f} steps | {before} -> {out['after']}", flush=True)
    return out


def recipe(args) -> str:
    parts = [f"base={args.base}", f"mults={args.mults}", f"res={args.res_blocks}", f"attn={not args.no_attn}",
             f"batch={args.batch}", f"lr={args.lr:g}", f"warmup={args.warmup}", f"betas=({args.beta1},{args.beta2})",
             f"wd={args.wd:g}", f"clip={args.clip:g}", f"ema={','.join(map(str, args.ema))}", f"pred={args.pred}"]
    if args.min_snr:
        parts.append(f"min_snr={args.min_snr:g}")
    if args.channels_last:
        parts.append("channels_last")
    return " ".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["quality", "speed"])
    p.add_argument("--steps", type=int, default=2400, help="quality: training steps; speed: steps per window")
    p.add_argument("--check", default="", help="quality: comma-separated step counts to score at")
    p.add_argument("--windows", type=int, default=3, help="speed: timed windows after one warm-up")
    p.add_argument("--raw", action="store_true", help="quality: also score the last weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--base", type=int, default=32)
    p.add_argument("--mults", default="1,2,2")
    p.add_argument("--res-blocks", type=int, default=1)
    p.add_argument("--no-attn", action="store_true")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--wd", type=float, default=0.01, help="AdamW weight decay (torch's default 0.01)")
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--ema", type=lambda s: [float(d) for d in s.split(",")], default=[0.999],
                   help="EMA decay(s), comma-separated: each is kept and scored (they do not affect training)")
    p.add_argument("--pred", default="epsilon", choices=["epsilon", "sample", "v_prediction"])
    p.add_argument("--min-snr", type=float, default=0.0)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--json", default=None, help="append the result as one JSON line to this file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = quality(args) if args.mode == "quality" else speed(args)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
