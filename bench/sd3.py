"""SD3's MM-DiT (a rectified flow) against the cross-attention U-Net, trained for equal CPU time (notebook 10d).

    OMP_NUM_THREADS=1 .venv/bin/python bench/sd3.py MMDIT.pt UNET.pt [UNET_FLOW.pt]   # files of scripts/train_sd3.py
    .venv/bin/python bench/sd3.py race --seconds 110        # notebook 10d's race, its code, a few minutes

``race`` runs notebook 10d's section 3 as the notebook does: ``train_race("mmdit")`` in a second process on
one thread (``dlcourse.background.in_background``) and ``train_race("unet")`` here on one thread, for the
same ``--seconds`` of process CPU time, then the same table of prompt accuracy and FD at the same network calls
(``race_sample``) for the held-in prompts of ``make_shapes(--n, seed=1)``. Run it on an otherwise idle
2-core machine (each training takes a core); the notebook's claim ranges come from its runs.

A script, not a test. The files come from ``scripts/train_sd3.py`` with the same ``--cpu-seconds``: the same
data, text encoder, caption dropout, batch and budget in process CPU seconds. ``unet_flow``, the U-Net trained
as a rectified flow like the MM-DiT, separates the architecture from the objective. Each model draws one image per
prompt for the held-in captions of ``make_shapes(n, seed=1)`` (images the training never saw; the blue
triangles, held out in training, are left out), from the same noise, at the **same number of network calls**:
``--steps`` calls per image unguided (w = 1), twice as many with guidance (the prompt and the empty prompt).
The U-Net samples with DDIM (v-prediction, x_0 clipped, as notebook 07a); the flows with Euler's method
(``sample_flow``) at each time shift of ``--shifts`` (SD3's ``t' = s t / (1 + (s - 1) t)``, 1 = none), their
samples clamped to [-1, 1].

Columns: **all** (``prompt_accuracy``: the judge calls the sample valid and reads the prompt's shape, colour
and size), **+ pos.** (and the place read from the pixels), **valid**, **FD** against real images
(``quality_report``: the judge's features, the first n of ``make_shapes(2n, seed=2)``), **floor** (the FD of
the other n real images: the best a model can get at this n), and the wall time of the sampling. Record the
machine's load with the figures.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from dlcourse.checkpoints import build_model, load_checkpoint
from dlcourse.conditioning import TextToImage, Tokenizer
from dlcourse.conditioning.text_to_image import held_out, prompt_accuracy
from dlcourse.data import make_shapes
from dlcourse.judge import load_judge
from dlcourse.metrics import quality_report
from dlcourse.pretrained import load_pretrained
from dlcourse.rectified_flow import sample_flow
from dlcourse.samplers import sample_ddim
from dlcourse.schedules import get_schedule
from dlcourse.systems import MMDiT  # noqa: F401  (registers the MM-DiT for build_model)
from dlcourse.systems.sd3 import race_sample, train_race
from dlcourse.background import cpu_threads, in_background


def load(path) -> tuple[TextToImage, dict]:
    """A ``TextToImage`` around the file's network and the text encoder it was trained with."""
    checkpoint = load_checkpoint(path)
    net = build_model(checkpoint).float().eval()
    info = {**checkpoint.get("extra", {}), **{k: v for k, v in checkpoint["config"].items() if k != "kwargs"}}
    clip, clip_info = load_pretrained(info["text_encoder"], device="cpu")
    if clip_info["sha256"] != info["text_encoder_sha256"]:
        raise ValueError(f"{path}: trained with another {info['text_encoder']}")
    return TextToImage(net, clip.text_encoder, Tokenizer(**clip_info["tokenizer"])).eval(), info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", help="files of scripts/train_sd3.py (mmdit, unet, unet_flow)")
    p.add_argument("--n", type=int, default=256, help="prompts drawn (held-in ones are kept)")
    p.add_argument("--steps", type=int, default=20, help="sampler steps (network calls per image at w = 1)")
    p.add_argument("--ws", default="1,3", help="guidance scales, comma separated")
    p.add_argument("--shifts", default="1,3", help="the flows' time shifts, comma separated")
    args = p.parse_args()
    torch.set_num_threads(1)
    test = make_shapes(args.n, size=16, seed=1)
    prompts = [c for c, h in zip(test.captions, held_out(test.captions, ["blue triangle"]).tolist()) if not h]
    n = len(prompts)
    reference = make_shapes(2 * n, size=16, seed=2).images
    x_T = torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    judge = load_judge(16)
    rows = []
    names = {"mmdit": "MM-DiT", "unet": "U-Net", "unet_flow": "U-Net, flow"}
    for path in args.files:
        pipe, info = load(path)
        name, flow = names[info["recipe"]["kind"]], info["prediction_type"] == "velocity"
        cond = pipe.cond(prompts)
        params = sum(q.numel() for q in pipe.unet.parameters())
        print(f"{name}: {path}, {params / 1e6:.3f}M parameters, {info['steps']} steps in {info['cpu_seconds']} "
              f"CPU s ({info['wall_seconds']} s wall), final loss {info['final_loss']}", flush=True)
        shifts = [float(s) for s in args.shifts.split(",")] if flow else [None]
        for w in (float(v) for v in args.ws.split(",")):
            for shift in shifts:
                start = time.perf_counter()
                with torch.no_grad():
                    if flow:
                        x = sample_flow(pipe, x_T, args.steps, time_scale=info["time_scale"], shift=shift,
                                        cond=cond, guidance_scale=w).clamp(-1, 1)
                    else:
                        x = sample_ddim(pipe, x_T, get_schedule(info["schedule"], info["T"]), args.steps,
                                        cond=cond, guidance_scale=w, prediction_type=info["prediction_type"],
                                        progress=False)
                seconds = time.perf_counter() - start
                acc = prompt_accuracy(judge, x, prompts)
                q = quality_report(judge, x, reference)
                calls = args.steps * (1 if w == 1 else 2)
                sampler = f"Euler, shift {shift:g}" if flow else "DDIM"
                rows.append(f"| {name} | {sampler} | {w:g} | {calls} | {acc.all:.3f} | {acc.all_with_position:.3f} | "
                            f"{acc.valid:.3f} | {q.fd:.2f} | {q.fd_floor:.2f} | {seconds:.1f} |")
                print(rows[-1], flush=True)
    print(f"\n{n} held-in prompts, one image each, the same noise\n"
          "| model | sampler | w | calls / image | all | + pos. | valid | FD | floor | s |\n"
          "|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


def race() -> None:
    p = argparse.ArgumentParser(description="notebook 10d's race: the MM-DiT against the U-Net for equal seconds")
    p.add_argument("race")
    p.add_argument("--seconds", type=float, default=110, help="each model's training, CPU seconds")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--n", type=int, default=128, help="prompts drawn (held-in ones are kept)")
    p.add_argument("--steps", type=int, default=20, help="sampler steps (network calls per image at w = 1)")
    p.add_argument("--seed", type=int, default=0, help="the trainings' seed")
    p.add_argument("--other", default="mmdit", choices=["mmdit", "unet_flow"], help="the model in the background")
    args = p.parse_args()
    start = time.perf_counter()
    job = in_background(train_race, args.other, cpu_seconds=args.seconds, batch_size=args.batch_size, seed=args.seed,
                        threads=1)
    with cpu_threads(1):
        runs = {"unet": train_race("unet", cpu_seconds=args.seconds, batch_size=args.batch_size, seed=args.seed)}
    runs[args.other] = job.result()
    print(f"trained side by side in {time.perf_counter() - start:.0f} s; load {open('/proc/loadavg').read().split()[:3]}",
          flush=True)
    test = make_shapes(args.n, size=16, seed=1)
    prompts = [c for c, h in zip(test.captions, held_out(test.captions, ["blue triangle"]).tolist()) if not h]
    reference = make_shapes(2 * len(prompts), size=16, seed=2).images
    x_T = torch.randn(len(prompts), 3, 16, 16, generator=torch.Generator().manual_seed(1))
    judge = load_judge(16)
    names = {"mmdit": "MM-DiT", "unet": "U-Net", "unet_flow": "U-Net, flow"}
    rows = []
    for kind in (args.other, "unet"):
        r = runs[kind]
        print(f"{names[kind]}: {r.steps} steps of {args.batch_size} in {r.cpu_seconds:.0f} CPU s ({r.seconds:.0f} s), loss of the last 50 steps "
              f"{sum(r.losses[-50:]) / len(r.losses[-50:]):.4f}", flush=True)
        for w in (1.0, 3.0):
            t0 = time.perf_counter()
            with cpu_threads(1):
                x = race_sample(kind, r.ema_model, prompts, x_T, steps=args.steps, guidance_scale=w)
            acc, q = prompt_accuracy(judge, x, prompts), quality_report(judge, x, reference)
            rows.append(f"| {names[kind]} | {r.steps} | {w:g} | {args.steps * (1 if w == 1 else 2)} | {acc.all:.3f} | "
                        f"{acc.valid:.3f} | {q.fd:.2f} | {q.fd_floor:.2f} | {time.perf_counter() - t0:.1f} |")
            print(rows[-1], flush=True)
    print(f"\n{len(prompts)} held-in prompts, {args.seconds:g} s of training each, seed {args.seed}, batch "
          f"{args.batch_size}, total {time.perf_counter() - start:.0f} s\n"
          "| model | steps | w | calls / image | all | valid | FD | floor | s |\n|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    race() if sys.argv[1:2] == ["race"] else main()
