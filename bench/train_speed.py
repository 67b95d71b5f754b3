"""Training speed of the course's models, and time to good samples from scratch.

    .venv/bin/python bench/train_speed.py                        # all three parts, ~20-40 min on 2 CPU cores
    .venv/bin/python bench/train_speed.py --skip-time-to-valid   # steps/s only
    .venv/bin/python bench/train_speed.py --device cuda          # on a GPU
    .venv/bin/python bench/train_speed.py --skip-speed --skip-time-to-valid   # only what "auto" picks

A script, not a test: timings depend on the machine and on whatever else runs on it.

1. **Steps per second** of ``dlcourse.training.train`` (AdamW, gradient clipping, EMA,
   batch 128, epsilon loss, cosine T=1000) for the default U-Net (0.81M parameters) and
   the default DiT at 16 and 32 px, in fp32 and with bf16 autocast. After a warm-up
   call, ``--windows`` calls of ``--window-steps`` steps each are timed; the median of
   their steps/s is reported with the min-max range (a wide range means a busy machine).

2. **What ``precision="auto"`` picks** for each model and size at batch 128: the choice
   of ``dlcourse.device.fastest_autocast_dtype`` (one warm-up step, then 3 alternating
   timed steps of each precision) with the median step times it measured.

3. **Time to >= 90% valid samples** for the 16 px U-Net from scratch: train's loop
   (the same AdamW, clipping, EMA and seed handling, written out so it can pause), in
   chunks of ``--chunk`` steps; after each chunk 64 samples from the EMA weights, DDPM
   with 50 steps, scored by the judge (``dlcourse.judge``). Reports the first chunk at
   or above 90%, with the training wall time (sampling and judging excluded) and the
   total. With 64 samples one chunk's fraction has a standard error of ~4 points near
   90%, so the whole curve is printed too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time

import torch
from torch import nn

from dlcourse.data import make_shapes
from dlcourse.device import cpu_has_native_bf16, get_device, precision_measurements
from dlcourse.ema import EMA
from dlcourse.models import DiT, DiTConfig, UNet, UNetConfig
from dlcourse.parameterization import diffusion_loss
from dlcourse.samplers import sample_ddpm
from dlcourse.schedules import cosine_schedule
from dlcourse.training import TrainConfig, measure_precision, train

MODELS = {"unet": lambda: UNet(UNetConfig()), "dit": lambda: DiT(DiTConfig())}


def machine() -> str:
    if get_device().type == "cuda":
        return torch.cuda.get_device_name(0)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    bf16 = "native bf16" if cpu_has_native_bf16() else "no native bf16"
    return f"{name}, {torch.get_num_threads()} threads, {bf16}"


def steps_per_second(model_name: str, size: int, precision: str, device, *, warmup: int, windows: int,
                     window_steps: int) -> dict:
    torch.manual_seed(0)
    model = MODELS[model_name]()
    data = make_shapes(1024, size=size, seed=0).images
    schedule = cosine_schedule(1000)
    kw = dict(batch_size=128, precision=precision, device=device, progress=False)
    train(model, data, schedule, steps=warmup, **kw)
    rates = [train(model, data, schedule, steps=window_steps, seed=i + 1, **kw).steps_per_second
             for i in range(windows)]
    return dict(model=model_name, size=size, precision=precision, median=statistics.median(rates),
                low=min(rates), high=max(rates), params=sum(p.numel() for p in model.parameters()))


def auto_choice(model_name: str, size: int, device) -> dict:
    """What train(precision="auto") picks for this model at batch 128, and the step times it measured."""
    torch.manual_seed(0)
    model = MODELS[model_name]()
    data = make_shapes(1024, size=size, seed=0).images
    before = set(precision_measurements())
    result = train(model, data, cosine_schedule(1000), steps=1, batch_size=128, precision="auto", device=device,
                   progress=False)
    new = [v for k, v in precision_measurements().items() if k not in before]
    medians = {("bf16" if dtype == torch.bfloat16 else "fp32"): s for dtype, s in new[0][1].items()} if new else {}
    return dict(model=model_name, size=size, chosen=result.precision, seconds_per_step=medians)


def time_to_valid(device, precision: str, *, chunk: int, max_steps: int, target: float, n: int = 64,
                  seed: int = 0) -> dict:
    from dlcourse.judge import load_judge
    from dlcourse.metrics import valid_fraction
    judge = load_judge(16)
    data = make_shapes(20_000, size=16, seed=0).images
    schedule = cosine_schedule(1000)
    schedule_d = schedule.to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = UNet(UNetConfig()).to(device).train()
    # the loop of dlcourse.training.train, paused every `chunk` steps
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=device.type in ("cpu", "cuda"))
    ema = EMA(model, 0.999)
    if precision == "auto":                                       # what train would pick, on one batch
        x_0 = data[:128].to(device)
        dtype = measure_precision(model, {"x_0": x_0}, lambda m, b: diffusion_loss(m, b["x_0"], schedule_d),
                                  TrainConfig(steps=1, device=device))
    else:
        dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
    autocast = (torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None
                else contextlib.nullcontext())
    g = torch.Generator(device=device).manual_seed(seed)
    torch.manual_seed(seed)                                       # timesteps and noise of the loss
    curve, train_s, start, steps, reached = [], 0.0, time.perf_counter(), 0, None
    while steps < max_steps:
        t0 = time.perf_counter()
        for _ in range(chunk):
            idx = torch.randint(0, data.shape[0], (128,), generator=g, device=device)
            x_0 = data[idx.cpu()].to(device)
            with autocast:
                loss = diffusion_loss(model, x_0, schedule_d, prediction_type="epsilon")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            ema.update(model)
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_s += time.perf_counter() - t0
        steps += chunk
        e = torch.Generator().manual_seed(1)                      # the same noise at every check
        x = sample_ddpm(ema.model, torch.randn(n, 3, 16, 16, generator=e).to(device), schedule, 50,
                        generator=e, progress=False)
        v = valid_fraction(judge, x.cpu())
        curve.append((steps, round(train_s, 1), round(v, 3)))
        print(f"  {steps:5d} steps  train {train_s:7.1f} s  total {time.perf_counter() - start:7.1f} s  "
              f"loss {loss.item():.4f}  valid {v:.3f}", flush=True)
        if reached is None and v >= target:
            reached = dict(steps=steps, train_seconds=round(train_s, 1),
                           total_seconds=round(time.perf_counter() - start, 1), valid=v)
            break
    return dict(precision="bf16" if dtype == torch.bfloat16 else "fp32", target=target, reached=reached,
                curve=curve)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="default: the best available")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--window-steps", type=int, default=5)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--sizes", default="16,32", help="image sizes of parts 1 and 2")
    parser.add_argument("--skip-auto", action="store_true")
    parser.add_argument("--skip-time-to-valid", action="store_true")
    parser.add_argument("--ttv-precision", default="auto", help="precision of part 2 (auto, fp32, bf16)")
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--max-steps", type=int, default=4000)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = get_device(args.device)
    sizes = [int(v) for v in args.sizes.split(",")]
    results = dict(machine=machine(), device=str(device), torch=str(torch.__version__), speed=[])
    print(f"{results['machine']} | {device} | torch {results['torch']}", flush=True)

    if not args.skip_speed:
        print("\n| model | params | px | precision | steps/s (median) | range |\n|---|---|---|---|---|---|")
        for model_name in MODELS:
            for size in sizes:
                for precision in args.precisions.split(","):
                    r = steps_per_second(model_name, size, precision, device, warmup=args.warmup,
                                         windows=args.windows, window_steps=args.window_steps)
                    results["speed"].append(r)
                    print(f"| {model_name} | {r['params'] / 1e6:.2f}M | {size} | {precision} | {r['median']:.2f} | "
                          f"{r['low']:.2f}-{r['high']:.2f} |", flush=True)

    if not args.skip_auto:
        print("\n| model | px | auto picks | fp32 ms/step | bf16 ms/step |\n|---|---|---|---|---|")
        results["auto"] = []
        for model_name in MODELS:
            for size in sizes:
                r = auto_choice(model_name, size, device)
                results["auto"].append(r)
                ms = {k: f"{1000 * v:.0f}" for k, v in r["seconds_per_step"].items()}
                print(f"| {model_name} | {size} | {r['chosen']} | {ms.get('fp32', '-')} | {ms.get('bf16', '-')} |",
                      flush=True)

    if not args.skip_time_to_valid:
        print(f"\ntime to >= 90% valid samples, 16 px U-Net, precision {args.ttv_precision}:", flush=True)
        r = time_to_valid(device, args.ttv_precision, chunk=args.chunk, max_steps=args.max_steps, target=0.9)
        results["time_to_valid"] = r
        if r["reached"]:
            print(f"reached {r['reached']['valid']:.3f} valid after {r['reached']['steps']} steps: "
                  f"{r['reached']['train_seconds']} s training, {r['reached']['total_seconds']} s with the checks")
        else:
            print(f"not reached in {args.max_steps} steps")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
