"""The cost of pixel-space against latent-space diffusion on the 32 px shapes (notebook 06).

    .venv/bin/python bench/latent_cost.py speed --threads 2                      # steps/s and time per sample, both
    .venv/bin/python bench/latent_cost.py quality --space latent --steps 3000    # train from scratch, then judge
    .venv/bin/python bench/latent_cost.py quality --space pixel --steps 900      # the same for pixel space
    .venv/bin/python bench/latent_cost.py quality --autoencoder ae_shapes32      # latents of the plain autoencoder
    .venv/bin/python bench/latent_cost.py vae                                    # the shipped VAE, measured

A script, not a test. Training is specified in **steps**, not seconds: other programs share the
cores, so seconds are unreliable; ``speed`` times each recipe separately and prints the load
average, so "steps in 3 minutes" is ``180 x steps/s`` at a stated load.

Both spaces train with ``dlcourse.training.train`` (AdamW, gradient clipping at 1.0, EMA with
warm-up, channels-last on a CPU), on the same 20,000 images of ``make_shapes(size=32, seed=0)``:

- latent: the images are encoded once with the shipped VAE (``vae_shapes32``; ``dlcourse.latent.encode``,
  the means times its scale factor) and a U-Net with 4 input channels (``base_channels=32,
  channel_mults=(1, 2)``, 0.55M) learns the 4x8x8 latents: batch 64, v-prediction, min-SNR-5
  weighting; samples come from ``dlcourse.latent.generate`` (sampler in latent space, then the decoder).
- pixel: notebook 03's recipe at 32 px: the default ``UNet`` (0.81M), batch 32, epsilon, min-SNR-5.

Quality: ``--n`` samples per sampler (``--samplers``: DPM-Solver++(2M) with 20 steps, DDPM with 100) scored
by the 16 px judge (it area-downsamples 32 px images) with ``quality_report``: valid fraction, Frechet
distance in the judge's features against real images (seed 1) and the real-vs-real floor at the same n.
``speed`` reports training steps per second (median of ``--windows`` windows after a warm-up) and,
for sampling, the network calls per sample and the wall time per sample of a batch of 100.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

import torch

from dlcourse.checkpoints import build_model, load_checkpoint
from dlcourse.data import make_shapes
from dlcourse.judge import load_judge
from dlcourse.latent import compression_factor, decode, encode, generate
from dlcourse.metrics import frechet_distance, quality_report
from dlcourse.models import UNet, UNetConfig
from dlcourse.pretrained import load_pretrained
from dlcourse.samplers import SAMPLERS, model_calls
from dlcourse.schedules import cosine_schedule
from dlcourse.tensors import seeded_noise
from dlcourse.training import train

SIZE, N_TRAIN, T = 32, 20_000, 1000
DEFAULTS = {"latent": dict(base=32, mults="1,2", batch=64, lr=1e-3, min_snr=5.0, pred="v_prediction"),
            "pixel": dict(base=32, mults="1,2,2", batch=32, lr=1e-3, min_snr=5.0, pred="epsilon")}


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def get_vae(args):
    """``(vae, scale)``: a shipped autoencoder (``--autoencoder``), or one saved at ``--vae`` (its scale
    factor from ``--scale``)."""
    if args.vae:
        vae = build_model(load_checkpoint(args.vae)).eval()
        return vae, args.scale
    vae, info = load_pretrained(args.autoencoder, device="cpu")
    return vae, info["scale_factor"]


def fill(args):
    for k, v in DEFAULTS[args.space].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def build(args) -> UNet:
    torch.manual_seed(args.seed)
    return UNet(UNetConfig(in_channels=4 if args.space == "latent" else 3, base_channels=args.base,
                           channel_mults=tuple(int(m) for m in args.mults.split(",")),
                           num_res_blocks=args.res_blocks))


def recipe(args) -> str:
    where = f"{args.space} ({args.vae or args.autoencoder})" if args.space == "latent" else args.space
    return (f"{where}: UNet base={args.base} mults={args.mults} res={args.res_blocks}, batch {args.batch}, "
            f"lr {args.lr:g} ({args.lr_schedule}), EMA {args.ema}, {args.pred}, min-SNR {args.min_snr or 'off'}, {args.precision}, "
            f"{torch.get_num_threads()} thread(s)")


def training_data(args, vae=None, scale=None):
    """``(data, seconds to make it)``: images, or their scaled latents."""
    start = time.perf_counter()
    data = make_shapes(N_TRAIN, size=SIZE, seed=0).images
    if args.space == "latent":
        data = encode(vae, data, scale)                               # (N, 4, 8, 8)
    return data, time.perf_counter() - start


def sample(args, model, schedule, n, vae=None, scale=None, seed=1, sampler=None, steps=None):
    """n images (n, 3, 32, 32) from ``model`` with ``sampler`` and ``steps`` (default: the first of ``--samplers``)."""
    if sampler is None:
        sampler, steps = samplers(args)[0]
    if args.space == "latent":
        return generate(model, vae, schedule, scale, n, steps=steps, sampler=sampler, prediction_type=args.pred,
                        seed=seed)
    x_T = seeded_noise((n, 3, SIZE, SIZE), seed)
    return SAMPLERS[sampler](model, x_T, schedule, steps, prediction_type=args.pred,
                             generator=torch.Generator().manual_seed(seed + 1), progress=False)


def samplers(args) -> list[tuple[str, int]]:
    """``--samplers "dpmpp_2m:20,ddpm:100"`` as [("dpmpp_2m", 20), ("ddpm", 100)]."""
    return [(name, int(steps)) for name, steps in (item.split(":") for item in args.samplers.split(","))]


def quality(args) -> dict:
    schedule = cosine_schedule(T)
    vae, scale = get_vae(args) if args.space == "latent" else (None, None)
    data, prep_s = training_data(args, vae, scale)
    judge = load_judge(16)
    reference = make_shapes(2 * args.n, size=SIZE, seed=1).images
    rows = []
    print(f"{recipe(args)} | data {tuple(data.shape)} made in {prep_s:.1f} s | {load()}", flush=True)
    for steps in sorted(int(s) for s in args.steps.split(",")):       # one run per budget, from scratch
        model = build(args)
        result = train(model, data, schedule, steps=steps, batch_size=args.batch, lr=args.lr,
                       lr_schedule=args.lr_schedule, prediction_type=args.pred, ema_decay=args.ema, precision=args.precision, seed=args.seed,
                       min_snr_gamma=args.min_snr or None, device="cpu", progress=False)
        row = dict(steps=steps, images=steps * args.batch, train_s=round(result.seconds, 1),
                   steps_per_s=round(result.steps_per_second, 2), precision=result.precision, load=load())
        line = (f"  {steps:6d} steps ({row['images']:,} images) in {row['train_s']:.0f} s "
                f"({row['steps_per_s']:.2f} steps/s, {row['precision']})")
        for sampler, sample_steps in samplers(args):
            start = time.perf_counter()
            x = sample(args, result.ema_model, schedule, args.n, vae, scale, sampler=sampler, steps=sample_steps)
            sample_s = time.perf_counter() - start
            report = quality_report(judge, x, reference, seed=1)
            row[f"{sampler}-{sample_steps}"] = dict(valid=report.valid_fraction, fd=round(report.fd, 2),
                                                    fd_floor=round(report.fd_floor, 2),
                                                    noise_fd=round(report.noise_fd, 1), sample_s=round(sample_s, 1))
            line += (f" | {sampler}-{sample_steps} ({sample_s:.1f} s for {args.n}): valid {report.valid_fraction:.3f}, "
                     f"FD {report.fd:.2f} (floor {report.fd_floor:.2f}, x{report.fd / report.fd_floor:.2f}; "
                     f"noise {report.noise_fd:.0f})")
        rows.append(row)
        print(line + f" | {load()}", flush=True)
    return dict(recipe=recipe(args), prep_s=round(prep_s, 1), checks=rows)


def speed(args) -> dict:
    """Training steps/s of both spaces' recipes with 1 and 2 threads, the time to encode the training
    set, and the time per sample (network calls and wall time, batches of 100)."""
    schedule = cosine_schedule(T)
    vae, scale = get_vae(args)
    out, before = {"load_before": load()}, load()
    images = make_shapes(N_TRAIN, size=SIZE, seed=0).images
    for threads in (int(t) for t in args.thread_list.split(",")):
        torch.set_num_threads(threads)
        start = time.perf_counter()
        latents = encode(vae, images, scale)                             # (N, 4, 8, 8)
        row = {"encode_s": round(time.perf_counter() - start, 1)}
        for space in ("latent", "pixel"):
            a = fill(argparse.Namespace(**{**vars(args), "space": space, **{k: None for k in DEFAULTS[space]}}))
            sampler, sample_steps = samplers(a)[0]
            data = latents if space == "latent" else images
            model, rates = build(a), []
            for window in range(args.windows + 1):                     # window 0: warm-up
                result = train(model, data, schedule, steps=args.window_steps, batch_size=a.batch, lr=a.lr,
                               prediction_type=a.pred, ema_decay=a.ema, precision=a.precision,
                               min_snr_gamma=a.min_snr or None, device="cpu", progress=False)
                model = result.model
                if window:
                    rates.append(result.steps_per_second)
            start = time.perf_counter()                                 # a batch of 100 samples
            sample(a, result.ema_model, schedule, 100, vae, scale)
            per_sample = (time.perf_counter() - start) / 100
            row[space] = dict(recipe=recipe(a), params=sum(p.numel() for p in model.parameters()),
                              steps_per_s=round(statistics.median(rates), 2),
                              range=[round(min(rates), 2), round(max(rates), 2)],
                              sampler=f"{sampler}-{sample_steps}", calls_per_sample=model_calls(sampler, sample_steps),
                              ms_per_sample=round(1000 * per_sample, 2), load=load())
            print(f"{threads} thread(s) {space}: {row[space]}", flush=True)
        start = time.perf_counter()
        decode(vae, torch.randn(100, *vae.latent_shape), scale)
        row["decode_ms_per_image"] = round(1000 * (time.perf_counter() - start) / 100, 3)
        print(f"{threads} thread(s): encoding {N_TRAIN} images {row['encode_s']} s, decoding "
              f"{row['decode_ms_per_image']} ms per image | {load()}", flush=True)
        out[f"threads_{threads}"] = row
    out["load"] = f"{before} -> {load()}"
    return out


@torch.no_grad()
def vae_report(args) -> dict:
    """The shipped VAE on held-out images: compression, PSNR, attributes kept, FD of the reconstructions."""
    vae, scale = get_vae(args)
    judge = load_judge(16)
    d = make_shapes(2 * args.n, size=SIZE, seed=1)
    x = d.images[:args.n]
    x_rec = decode(vae, encode(vae, x, scale), scale)
    mse = float((x_rec - x).square().mean())
    out = judge.predict(x_rec)
    keep = ((out["shape_probs"].argmax(1) == d.labels[:args.n]) & (out["color_probs"].argmax(1) == d.colors[:args.n])
            & (out["scale_probs"].argmax(1) == d.scales[:args.n]))
    feats = judge.features(x)
    res = dict(compression=compression_factor(vae), scale=scale, mse=round(mse, 6),
               psnr_db=round(10 * math.log10(4 / mse), 2), kept=float(keep.float().mean()),
               valid=float(out["valid"].float().mean()),
               fd_reconstructions=round(frechet_distance(judge.features(x_rec), feats), 2),
               fd_floor=round(frechet_distance(judge.features(d.images[args.n:]), feats), 2))
    print(json.dumps(res), flush=True)
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("quality", "speed", "vae"))
    parser.add_argument("--space", choices=("latent", "pixel"), default="latent")
    parser.add_argument("--steps", default="3000", help="training steps; several (comma-separated) train once each")
    parser.add_argument("--base", type=int, default=None)
    parser.add_argument("--mults", default=None)
    parser.add_argument("--res-blocks", type=int, default=1)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--lr-schedule", default="constant", choices=("constant", "cosine"),
                        help="quality: cosine decays the learning rate to 0 over each run's steps")
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--pred", default=None, choices=("epsilon", "sample", "v_prediction"))
    parser.add_argument("--min-snr", type=float, default=None, help="gamma of min-SNR weighting, 0 = off")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=500, help="samples judged per check")
    parser.add_argument("--samplers", default="dpmpp_2m:20,ddpm:100",
                        help="name:steps, comma-separated: each scores its own samples (speed times the first)")
    parser.add_argument("--windows", type=int, default=3, help="speed: timed windows")
    parser.add_argument("--window-steps", type=int, default=30, help="speed: steps per window")
    parser.add_argument("--thread-list", default="1,2", help="speed: thread counts to time")
    parser.add_argument("--autoencoder", default="vae_shapes32", choices=("vae_shapes32", "ae_shapes32"),
                        help="the shipped autoencoder whose latents the latent model learns")
    parser.add_argument("--vae", default=None, help="a VAE checkpoint instead of a shipped one")
    parser.add_argument("--scale", type=float, default=None, help="its latent scale factor (with --vae)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fill(args)
    result = {"quality": quality, "speed": speed, "vae": vae_report}[args.command](args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
