"""Train the checkpoints that ship in dlcourse/assets/, save them, print their SHA-256 and measure them.

One command per checkpoint, run from the repository root:

    .venv/bin/python scripts/train_checkpoints.py toy2d_mlp            # ~30 s training + ~10 s measuring
    .venv/bin/python scripts/train_checkpoints.py shapes16_unet        # ~78 min + ~1 min
    .venv/bin/python scripts/train_checkpoints.py shapes16_unet_cond   # ~15 min + ~1 min
    .venv/bin/python scripts/train_checkpoints.py                      # all three, one after the other
    .venv/bin/python scripts/train_checkpoints.py --evaluate-only      # measure the shipped files (~2 min)

Times measured for the shipped files. ``shapes16_unet``: 16,000 steps of 128 images at a constant
learning rate, then 10,000 more from their EMA weights with the learning rate annealed to 0, in
fp32 on 2 threads of a 2-core Intel Xeon without native bf16 (2886 s + 1783 s, 5.5-5.6 steps/s,
channels-last memory). ``--stage1 PATH`` starts the second stage from a file the first one wrote
(the shipped file before the annealing was that file: SHA-256 762e2a51..., recorded in the new one).
``shapes16_unet_cond``: 3000 steps on one thread of a shared 2-core AMD EPYC with AVX512-BF16,
3.1-3.4 steps/s in bf16 while other jobs ran (in fp32, expect ~1.5x longer).

Each run is fixed by its recipe below: a seed (weights, batches, timesteps, noise,
label dropout), a step budget (never a time budget, so the result does not depend on
the machine's load), the data's seed, and the number of CPU threads. Precision: the
unconditional U-Net uses fp32; the conditional one "auto", which here means bf16 autocast
on a CPU with native bf16 (AVX512-BF16 or AMX; it was trained so) and fp32 elsewhere,
including on a GPU (``dlcourse.device.autocast_dtype``), fixed by the hardware rather than
measured as ``train(precision="auto")`` does, so the load of the machine cannot change it;
the toy MLP uses fp32 (for a model this small autocast costs more than it saves). ``--precision`` and ``--threads`` override
the recipe.

The unconditional U-Net predicts v (``prediction_type="v_prediction"``): its guess of
x_0 at the highest noise levels is then the network's output itself, not an epsilon
error multiplied by ``1 / sqrt(alpha_bar)`` (up to 20,000 with the cosine schedule), and
the deterministic samplers, which follow that guess, come closer to DDPM. With the epsilon
model shipped first (3000 steps) DPM-Solver++(2M) at 20 steps and DDIM at 50 stayed 7-8 times
above DDPM-1000's Frechet distance (1000 samples); trained alike (3000 steps of 64 images), v
instead of epsilon cut DDIM-50's FD from 4.3 to 2.9 times DDPM-100's (``bench/prediction_gap.py``).
Longer training did more: from 8000 to 16,000 steps (and EMA decay 0.999 to 0.9995)
DPM-Solver++(2M)-20's FD fell from 3.69 to 2.52 and DDIM-50's from 3.08 to 2.25 (seed 0 of
``bench/sampler_quality.py --target --n 2000``). The annealing stage then mostly helped DDPM:
over three seeds of 2000 samples DDPM-1000's FD went from 1.18 to 0.95 on average, the converged
ODE's (DPM-Solver++(2M) at 50 steps) from 1.88 to 1.20, DDIM-50's from 1.92 to 1.66, and
DPM-Solver++(2M)-20's stayed at 2.1-2.2; the 512-sample evaluation below, DDPM at 50 steps, went
from FD 11.56 to 7.54 (floor 4.09), valid 0.996 to 1.000.

The EMA weights are saved in fp32 with ``dlcourse.checkpoints.save_checkpoint`` (an
atomic write, a ``.sha256`` sidecar); then paste the printed digest into ``PRETRAINED``
in dlcourse/pretrained.py. With the same precision, thread count and PyTorch build, a
rerun gives bit-identical weights (checked for the toy) but a file with another digest:
``torch.save`` writes a random serialization id into every file, and the file records
the training time.

The measurements use seeds the training never saw and the shapes judge
(``dlcourse.judge.load_judge``), each next to its reference points.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass, field

import torch

from dlcourse.checkpoints import build_model, load_checkpoint, model_config, save_checkpoint, sha256_file
from dlcourse.data import make_shapes, make_toy
from dlcourse.data.shapes import SHAPE_NAMES
from dlcourse.device import autocast_dtype, get_device
from dlcourse.models import MLPDenoiser, UNet, UNetConfig
from dlcourse.pretrained import ASSET_DIR, PRETRAINED, list_pretrained, load_pretrained
from dlcourse.samplers import sample_ddpm
from dlcourse.schedules import get_schedule
from dlcourse.training import train


@dataclass(frozen=True)
class Recipe:
    """Everything that determines a checkpoint. ``data`` is "two_moons" or "shapes"."""

    data: str
    n_train: int
    data_seed: int
    model: str                              # "mlp" or "unet"
    model_kwargs: dict = field(default_factory=dict)
    schedule: str = "cosine"
    T: int = 1000
    prediction_type: str = "epsilon"
    steps: int = 3000
    batch_size: int = 128
    lr: float = 1e-3
    ema_decay: float = 0.999
    min_snr_gamma: float | None = None       # Min-SNR-gamma loss weighting (Hang et al. 2023); None = plain
    anneal_steps: int = 0                    # a second stage from the first one's EMA weights: this many
    anneal_lr: float = 3e-4                  # steps, the lr falling from anneal_lr to 0 (cosine), seed + 1
    conditional: bool = False
    p_uncond: float = 0.0
    seed: int = 0
    precision: str = "auto"
    threads: int = 1                         # CPU threads (results depend on the count slightly)


RECIPES = {
    "toy2d_mlp": Recipe(data="two_moons", n_train=20_000, data_seed=0, model="mlp",
                        model_kwargs=dict(data_dim=2, hidden=128, layers=3), schedule="linear",
                        steps=6000, batch_size=512, lr=1e-3, precision="fp32"),
    "shapes16_unet": Recipe(data="shapes", n_train=20_000, data_seed=0, model="unet", steps=16_000,
                            ema_decay=0.9995, prediction_type="v_prediction", precision="fp32", threads=2,
                            anneal_steps=10_000, anneal_lr=5e-4),
    "shapes16_unet_cond": Recipe(data="shapes", n_train=20_000, data_seed=0, model="unet", steps=3000,
                                 model_kwargs=dict(num_classes=len(SHAPE_NAMES)), conditional=True,
                                 p_uncond=0.1),
}
IMAGE_SIZE = 16
EVAL_SEED = 1                                # shapes / toy seeds the training never used


def build(recipe: Recipe) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):   # the initial weights depend on the seed only
        torch.manual_seed(recipe.seed)
        if recipe.model == "mlp":
            return MLPDenoiser(**recipe.model_kwargs)
        return UNet(UNetConfig(**recipe.model_kwargs))


def load_stage1(path, recipe: Recipe) -> tuple[torch.nn.Module, dict]:
    """``(model, extra)``: the first stage's EMA weights and the training record of a checkpoint that
    recorded the same first stage and no annealing, to start the second stage without training the first."""
    checkpoint = load_checkpoint(path)
    extra = checkpoint.get("extra") or {}
    first = dict(steps=recipe.steps, seed=recipe.seed, batch_size=recipe.batch_size, lr=recipe.lr,
                 ema_decay=recipe.ema_decay, prediction_type=recipe.prediction_type)
    expected = {**first, "anneal_steps": 0}
    got = {**{k: extra.get(k, checkpoint["config"].get(k)) for k in first},
           "anneal_steps": extra.get("anneal_steps", 0)}            # a file of the first stage alone has none
    if got != expected:
        raise ValueError(f"--stage1: {path} was not trained with the first stage of this recipe: "
                         f"expected {expected}, got {got}")
    return build_model(checkpoint), extra


def train_one(name: str, precision: str | None, threads: int | None, device, stage1=None) -> None:
    r = RECIPES[name]
    precision = precision or r.precision
    if precision == "auto":                              # fixed by the hardware, not by a timing
        precision = "bf16" if autocast_dtype(device) is not None else "fp32"
    torch.set_num_threads(threads or r.threads)
    labels = None
    if r.data == "shapes":
        shapes = make_shapes(r.n_train, size=IMAGE_SIZE, seed=r.data_seed)
        data, labels = shapes.images, (shapes.labels if r.conditional else None)
    else:
        data = make_toy(r.data, r.n_train, seed=r.data_seed)
    schedule = get_schedule(r.schedule, r.T)
    common = dict(batch_size=r.batch_size, prediction_type=r.prediction_type, labels=labels, p_uncond=r.p_uncond,
                  ema_decay=r.ema_decay, min_snr_gamma=r.min_snr_gamma, device=device, precision=precision,
                  progress=True)
    stages = [dict(steps=r.steps, lr=r.lr, seed=r.seed)]
    if r.anneal_steps:
        stages.append(dict(steps=r.anneal_steps, lr=r.anneal_lr, seed=r.seed + 1, lr_schedule="cosine"))
    model = build(r)
    print(f"[{name}] {sum(p.numel() for p in model.parameters()) / 1e6:.3f}M parameters, {r}", flush=True)
    seconds, done, provenance, first = 0.0, 0, {}, 0
    if stage1 is not None:                               # the first stage's weights from a file
        model, extra = load_stage1(stage1, r)
        seconds, done, first = extra.get("seconds", 0.0), extra["steps"], 1
        provenance = dict(stage1_sha256=sha256_file(stage1))
        print(f"[{name}] stage 1: EMA weights from {stage1} ({done} steps, {seconds:.0f} s when trained)",
              flush=True)
    for k, stage in enumerate(stages[first:], start=first + 1):
        result = train(model, data, schedule, **stage, **common)
        tail = result.losses[-200:]
        print(f"[{name}] stage {k}: {result.steps} steps in {result.seconds:.0f} s "
              f"({result.steps_per_second:.2f} steps/s, {result.precision}, {result.device}); "
              f"mean loss of the last 200 steps {sum(tail) / len(tail):.4f}", flush=True)
        model = result.ema_model.requires_grad_(True)    # the next stage trains these weights (EMA copies are frozen)
        seconds, done = seconds + result.seconds, done + result.steps
    ema = model.float().cpu()
    config = model_config(ema, prediction_type=r.prediction_type, schedule=r.schedule, T=r.T)
    extra = dict(data=r.data, n_train=r.n_train, data_seed=r.data_seed,
                 image_size=IMAGE_SIZE if r.data == "shapes" else None,
                 num_classes=r.model_kwargs.get("num_classes"), p_uncond=r.p_uncond,
                 clip_x0=r.data == "shapes", steps=r.steps, anneal_steps=r.anneal_steps, anneal_lr=r.anneal_lr,
                 seed=r.seed, batch_size=r.batch_size, lr=r.lr, ema_decay=r.ema_decay, min_snr_gamma=r.min_snr_gamma,
                 precision=result.precision, device=result.device, threads=torch.get_num_threads(),
                 seconds=round(seconds, 1), trained_steps=done, final_loss=round(sum(tail) / len(tail), 5),
                 torch_version=str(torch.__version__), command=PRETRAINED[name].command, **provenance)
    save(name, ema, config, extra)


def save(name: str, model, config: dict, extra: dict) -> None:
    """Write the shipped checkpoint ``name`` and print its digest, to paste into dlcourse/pretrained.py."""
    path = ASSET_DIR / PRETRAINED[name].filename
    digest = save_checkpoint(path, model, config, extra=extra)
    print(f"[{name}] saved {path} ({path.stat().st_size / 1e6:.2f} MB)\n[{name}] SHA-256 {digest}\n"
          f"[{name}] paste it into PRETRAINED[{name!r}] in dlcourse/pretrained.py", flush=True)


def load_unchecked(name: str):
    """The checkpoint just written, before its digest is pasted into pretrained.py."""
    import dlcourse.pretrained as pretrained
    entry = PRETRAINED[name]
    digest = sha256_file(ASSET_DIR / entry.filename)
    if digest != entry.sha256:
        print(f"[{name}] note: the file's digest {digest[:12]}... is not the one in pretrained.py yet")
        pretrained.PRETRAINED[name] = dataclasses.replace(entry, sha256=digest)
    try:
        return load_pretrained(name, device="cpu")
    finally:
        pretrained.PRETRAINED[name] = entry


@torch.no_grad()
def evaluate(name: str, n: int = 512) -> None:
    """Print the checkpoint's quality numbers with their reference points."""
    model, info = load_unchecked(name)
    schedule = get_schedule(info["schedule"], info["T"])
    g = torch.Generator().manual_seed(EVAL_SEED)
    start = time.perf_counter()
    if info["data"] != "shapes":
        from dlcourse.metrics import reference_distance, sample_distance
        k, m = 8, 1000                                      # 8 sets of 1000 points, distances averaged
        floor = reference_distance(info["data"], m, seed=EVAL_SEED, repeats=k)
        for steps in (50, None):
            x = sample_ddpm(model, torch.randn(k * m, 2, generator=g), schedule, steps, clip_x0=False,
                            generator=g, progress=False)
            d = sum(sample_distance(x[i * m:(i + 1) * m], make_toy(info["data"], m, seed=100 + i))
                    for i in range(k)) / k
            print(f"[{name}] DDPM {steps or info['T']} steps: energy distance {d:.5f}, floor {floor:.5f} "
                  f"(ratio {d / floor:.2f}; mean of {k} sets of {m})")
        gauss = torch.randn(m, 2, generator=g) * make_toy(info["data"], m, seed=99).std(0)
        print(f"[{name}] baseline, a Gaussian with the data's spread: "
              f"{sample_distance(gauss, make_toy(info['data'], m, seed=100)) / floor:.1f} x floor")
        return
    from dlcourse.judge import load_judge
    from dlcourse.metrics import class_accuracy, quality_report
    try:
        judge = load_judge(16)
    except FileNotFoundError as e:
        print(f"[{name}] not measured: {e}")
        return
    C = info["image_size"]
    cond = None
    if info["num_classes"]:
        cond = torch.arange(n) % info["num_classes"]        # every shape equally often
    x = sample_ddpm(model, torch.randn(n, 3, C, C, generator=g), schedule, 50, cond=cond, generator=g,
                    progress=False)
    print(f"[{name}] {n} samples, DDPM 50 steps, no guidance ({time.perf_counter() - start:.0f} s)")
    report = quality_report(judge, x, make_shapes(2 * n, size=C, seed=EVAL_SEED).images, seed=EVAL_SEED)
    print("\n".join(f"[{name}] {line}" for line in str(report).splitlines()))
    if cond is not None:
        out = judge.predict(x)
        right = out["shape_probs"].argmax(1) == cond
        print(f"[{name}] requested shape: accuracy among valid {class_accuracy(judge, x, cond):.3f}, "
              f"valid and right {float((right & out['valid']).float().mean()):.3f}, "
              f"right ignoring validity {float(right.float().mean()):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"checkpoints to train (default: all of {list_pretrained()})")
    parser.add_argument("--precision", default=None, choices=("auto", "fp32", "bf16"),
                        help="override the recipe's precision (toy: fp32; U-Nets: auto)")
    parser.add_argument("--threads", type=int, default=None,
                        help="override the recipe's CPU threads (results depend on the count slightly; on a "
                             "busy CPU 2 threads can be many times slower than 1)")
    parser.add_argument("--device", default="cpu", help="cpu (default, as shipped), cuda, mps")
    parser.add_argument("--evaluate-only", action="store_true", help="measure the files in assets/, train nothing")
    parser.add_argument("--n-eval", type=int, default=512, help="samples per image measurement")
    parser.add_argument("--stage1", default=None, metavar="PATH",
                        help="a checkpoint this recipe's first stage wrote (e.g. the previous shipped file): "
                             "start the annealing stage from its weights instead of training them again")
    args = parser.parse_args()
    names = args.names or list_pretrained()
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown checkpoint(s) {unknown}; choose from {list_pretrained()}")
    if args.stage1 and (len(names) != 1 or not RECIPES[names[0]].anneal_steps):
        parser.error("--stage1: name one checkpoint whose recipe has an annealing stage (anneal_steps > 0)")
    torch.set_num_threads(args.threads or 1)
    device = get_device(args.device)
    for name in names:
        if not args.evaluate_only:
            train_one(name, args.precision, args.threads, device, stage1=args.stage1)
        evaluate(name, args.n_eval)


if __name__ == "__main__":
    main()
