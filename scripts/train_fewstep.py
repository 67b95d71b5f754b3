"""Train notebook 08's shipped few-step models on 16 px shapes, one after the other, and save them.

    .venv/bin/python scripts/train_fewstep.py flow_shapes16_unet        # the rectified flow (1-RF)
    .venv/bin/python scripts/train_fewstep.py flow_shapes16_unet_2rf    # one reflow of it (2-RF); needs the 1-RF
    .venv/bin/python scripts/train_fewstep.py cm_shapes16_unet          # consistency distillation of the 1-RF
    .venv/bin/python scripts/train_fewstep.py flow_shapes16_unet_1step  # one-step distillation (k = 1); needs both flows

The four are small U-Nets (base width 16, 0.21M parameters, 0.45 MB each in float16), class-conditional with
the null label 4 (``p_uncond`` 0.1; the one-step model trains without it), so classifier-free guidance works and the
consistency model can take the guidance scale as an input (LCM). Each recipe below is fixed in optimiser steps,
seeds and one CPU thread, never in seconds; fp32 (bf16 autocast was not faster for a network this small).
Their figures (quality at 1-50 steps, straightness) come from ``bench/fewstep_shapes.py`` (bench/README.md);
on one thread of a shared 2-core AMD EPYC while other jobs ran they took 1677 s, 475 s of pairs + 535 s, 347 s,
and 2 x 505 s of pairs + 951 s.

``flow_shapes16_unet``: flow matching (``dlcourse.rectified_flow.flow_matching_loss``) with SD3's logit-normal
t (m = 0, s = 1), 6000 steps of 128, AdamW 1e-3 with a cosine decay to 0, EMA 0.999.

``flow_shapes16_unet_2rf``: reflow. 6000 pairs (eps, x_0) from the 1-RF's ODE (Euler, 50 steps), each with
its label (every shape equally often, no guidance), then the 1-RF's EMA weights trained on the straight lines
between those pairs: 2000 steps of 128, AdamW 3e-4 cosine, EMA 0.999, *uniform* t (a one-step sampler asks the
network only at t = 0.999, which logit-normal t seldom visits).

``cm_shapes16_unet``: consistency distillation (``dlcourse.consistency.train_consistency``) from the 1-RF's
EMA weights: the teacher takes one Euler step between N = 20 even levels (after the same 1500 steps, better at 1,
2 and 4 calls than N = 10 or 50: bench/README.md), with classifier-free guidance at w drawn uniformly in [1, 3]
per example (LCM); target EMA mu 0.95, pseudo-Huber distance, 1500 steps of 128, AdamW 4e-4, EMA 0.999. The
student starts from the teacher's weights inside ``GuidanceInput`` (w's embedding starts at zero) with the
"velocity" parametrization ``f = x - (t - t_min) F``, so it starts as the teacher's one-step guess (with c_skip,
c_out it read the teacher's velocity as an image and 1500 steps did not recover). Load it with
``dlcourse.consistency.load_consistency``.

``flow_shapes16_unet_1step``: Liu et al.'s distillation with k = 1 (``dlcourse.rectified_flow.
one_step_distillation_loss``): one Euler step from each noise is trained to land where the 1-RF's 50-step ODE
took it. 40,000 pairs (two seeds of 20,000, labels in turn, no guidance; about 8 minutes of one thread per seed,
kept in ``WORK_DIR``), the 2-RF's EMA weights as the start (its paths are already nearly straight), 8000 steps of
128, AdamW 3e-4 cosine, EMA 0.999, no label dropout (it is sampled with its label, in one step, unguided). With
four seeds (80,000 pairs) the held-out loss is lower but the samples are blurrier (bench/README.md).

Each file records its recipe in its info and holds its weights in float16; after a run paste the printed SHA-256
into ``PRETRAINED`` in dlcourse/pretrained.py.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dlcourse.batches import drop_labels_transform, random_batches
from dlcourse.checkpoints import build_model, load_checkpoint, model_config, save_checkpoint
from dlcourse.consistency import ConsistencyModel, GuidanceInput, flow_teacher, train_consistency
from dlcourse.data import make_shapes
from dlcourse.data.shapes import SHAPE_NAMES
from dlcourse.files import atomic_write
from dlcourse.loop import TrainConfig, fit
from dlcourse.models import UNet, UNetConfig
from dlcourse.pretrained import ASSET_DIR, PRETRAINED, load_pretrained
from dlcourse.rectified_flow import flow_matching_loss, one_step_distillation_loss, sample_flow

IMAGE_SIZE = 16
TIME_SCALE = 1000
NUM_CLASSES = len(SHAPE_NAMES)
WORK_DIR = Path(tempfile.gettempdir()) / "dlcourse_fewstep"          # reflow pairs, kept between runs
UNET = dict(base_channels=16, channel_mults=(1, 2, 2), num_heads=2, groups=4, num_classes=NUM_CLASSES)


@dataclass(frozen=True)
class Recipe:
    """Everything that determines one checkpoint."""

    kind: str                          # "flow", "reflow", "consistency" or "distill"
    steps: int
    lr: float
    t_sampling: str = "logit_normal"   # flows: how t is drawn
    teacher: str | None = None         # reflow, consistency, distill: the 1-RF whose ODE they learn
    init: str | None = None            # distill: the flow whose weights it starts from
    n_pairs: int = 6000                # reflow, distill: pairs from the teacher's ODE, per seed
    pair_seeds: tuple | None = None    # distill: the noise seeds of the pairs (reflow: seed)
    pair_steps: int = 50               # reflow, distill: Euler steps of each pair's path
    N: int = 50                        # consistency: levels
    guidance_range: tuple = (1.0, 3.0)  # consistency: w per example (LCM)
    target_decay: float = 0.95         # consistency: mu of the target network
    lr_schedule: str = "cosine"
    batch_size: int = 128
    ema_decay: float = 0.999
    p_uncond: float = 0.1
    n_train: int = 20_000
    data_seed: int = 0
    seed: int = 0
    threads: int = 1


RECIPES = {
    "flow_shapes16_unet": Recipe(kind="flow", steps=6000, lr=1e-3),
    "flow_shapes16_unet_2rf": Recipe(kind="reflow", steps=2000, lr=3e-4, t_sampling="uniform", n_pairs=6000,
                                     teacher="flow_shapes16_unet", seed=1),
    "cm_shapes16_unet": Recipe(kind="consistency", steps=1500, lr=4e-4, lr_schedule="constant", N=20,
                               teacher="flow_shapes16_unet", seed=2),
    "flow_shapes16_unet_1step": Recipe(kind="distill", steps=8000, lr=3e-4, n_pairs=20_000,
                                       pair_seeds=(101, 102), teacher="flow_shapes16_unet",
                                       init="flow_shapes16_unet_2rf", p_uncond=0.0, seed=3),
}


def load_unregistered(name: str):
    """``(model, info)`` of a checkpoint in assets/: by its registry digest once registered, else by its sidecar."""
    if name in PRETRAINED:
        return load_pretrained(name, device="cpu")
    checkpoint = load_checkpoint(ASSET_DIR / f"{name}.pt")
    return build_model(checkpoint).eval(), dict(checkpoint["extra"])


def flow_loss(r: Recipe):
    def loss_fn(model, batch):
        return flow_matching_loss(model, batch["x_0"], eps=batch.get("eps"), cond=batch["labels"],
                                  time_scale=TIME_SCALE, t_sampling=r.t_sampling)
    return loss_fn


@torch.no_grad()
def reflow_pairs_with_labels(flow, n: int, steps: int, seed: int):
    """(eps, x_0, labels): each x_0 where the flow's ODE takes eps with its label (shapes in turn, no guidance)."""
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(n, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g)          # (n, 3, 16, 16)
    labels = torch.arange(n) % NUM_CLASSES                               # (n,)
    x_0 = torch.cat([sample_flow(flow, e, steps, cond=c, time_scale=TIME_SCALE)
                     for e, c in zip(eps.split(1000), labels.split(1000))])
    return eps, x_0, labels


def one_step_loss(model, batch):
    return one_step_distillation_loss(model, batch["eps"], batch["x_0"], cond=batch["labels"], time_scale=TIME_SCALE)


def cached_pairs(teacher: str, flow, n: int, steps: int, seed: int):
    """``reflow_pairs_with_labels``, kept in ``WORK_DIR`` (8 minutes of one thread per 20,000 pairs) under the
    teacher's digest: a second run, or one started in parallel per seed, finds them there."""
    digest = PRETRAINED[teacher].sha256[:12] if teacher in PRETRAINED else "unregistered"
    path = WORK_DIR / f"{teacher}_{digest}_pairs_n{n}_steps{steps}_seed{seed}.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
        print(f"pairs of seed {seed} from {path}", flush=True)
        return saved["eps"], saved["x_0"], saved["labels"]
    eps, x_0, labels = reflow_pairs_with_labels(flow, n, steps, seed=seed)
    atomic_write(path, lambda f: torch.save(dict(eps=eps, x_0=x_0, labels=labels), f))
    return eps, x_0, labels


def pair_batches(eps, x_0, labels, batch_size: int, p_uncond: float):
    """Endless random batches of the pairs, rows kept together, labels dropped with probability p_uncond."""
    drop = drop_labels_transform(p_uncond, NUM_CLASSES)
    while True:
        idx = torch.randint(0, x_0.shape[0], (batch_size,))
        yield drop({"x_0": x_0[idx], "eps": eps[idx], "labels": labels[idx]})


def train_one(name: str) -> None:
    r = RECIPES[name]
    torch.set_num_threads(r.threads)
    shapes = make_shapes(r.n_train, size=IMAGE_SIZE, seed=r.data_seed)
    config = TrainConfig(steps=r.steps, lr=r.lr, lr_schedule=r.lr_schedule, ema_decay=r.ema_decay, seed=r.seed,
                         device="cpu", precision="fp32", progress=True)
    extra = dict(dataclasses.asdict(r), guidance_range=list(r.guidance_range),
                 pair_seeds=list(r.pair_seeds) if r.pair_seeds else None, data="shapes", image_size=IMAGE_SIZE,
                 num_classes=NUM_CLASSES, time_scale=TIME_SCALE, prediction_type="velocity",
                 torch_version=str(torch.__version__), command=f"python scripts/train_fewstep.py {name}")
    start = time.perf_counter()
    if r.kind == "flow":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(r.seed)
            model = UNet(UNetConfig(**UNET))
        batches = random_batches(shapes.images, shapes.labels, batch_size=r.batch_size,
                                 transform=drop_labels_transform(r.p_uncond, NUM_CLASSES))
        result = fit(model, batches, flow_loss(r), config)
        saved = result.ema_model
    elif r.kind == "reflow":
        flow, _ = load_unregistered(r.teacher)
        eps, x_0, labels = reflow_pairs_with_labels(flow, r.n_pairs, r.pair_steps, seed=r.seed)
        extra["pairs_seconds"] = round(time.perf_counter() - start, 1)
        print(f"[{name}] {r.n_pairs} pairs in {extra['pairs_seconds']:.0f} s", flush=True)
        model = copy.deepcopy(flow).train().requires_grad_(True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(r.seed)
            batches = pair_batches(eps, x_0, labels, r.batch_size, r.p_uncond)
            result = fit(model, batches, flow_loss(r), config)
        saved = result.ema_model
    elif r.kind == "distill":
        flow, _ = load_unregistered(r.teacher)
        parts = [cached_pairs(r.teacher, flow, r.n_pairs, r.pair_steps, seed) for seed in r.pair_seeds]
        eps, x_0, labels = (torch.cat(p) for p in zip(*parts))
        extra["pairs_seconds"] = round(time.perf_counter() - start, 1)
        print(f"[{name}] {len(x_0)} pairs in {extra['pairs_seconds']:.0f} s", flush=True)
        model = copy.deepcopy(load_unregistered(r.init)[0]).float().train().requires_grad_(True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(r.seed)
            batches = pair_batches(eps, x_0, labels, r.batch_size, r.p_uncond)
            result = fit(model, batches, one_step_loss, config)
        saved = result.ema_model
    else:
        flow, _ = load_unregistered(r.teacher)
        flow.requires_grad_(False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(r.seed)                                  # w's embedding's first layer is random
            student = ConsistencyModel(GuidanceInput(copy.deepcopy(flow).train().requires_grad_(True)),
                                       time_scale=TIME_SCALE, guidance_input=True, parametrization="velocity")
        result = train_consistency(student, flow_teacher(flow, time_scale=TIME_SCALE), shapes.images,
                                   labels=shapes.labels, guidance_range=r.guidance_range, N=r.N,
                                   target_decay=r.target_decay, distance="pseudo_huber", steps=r.steps,
                                   batch_size=r.batch_size, lr=r.lr, lr_schedule=r.lr_schedule,
                                   ema_decay=r.ema_decay, seed=r.seed, device="cpu", precision="fp32")
        cm = result.ema_model
        saved = cm.net
        extra["consistency"] = dict(t_min=cm.t_min, sigma_data=cm.sigma_data, time_scale=cm.time_scale,
                                    guidance_input=True, parametrization=cm.parametrization)
    tail = result.losses[-200:]
    extra.update(seconds=round(time.perf_counter() - start, 1), final_loss=round(sum(tail) / len(tail), 5))
    print(f"[{name}] {result.steps} steps in {result.seconds:.0f} s ({result.steps_per_second:.2f} steps/s); "
          f"mean loss of the last 200 steps {extra['final_loss']:.4f}", flush=True)
    save(name, saved, extra)


def save(name: str, model, extra: dict) -> None:
    """Write ``name``'s checkpoint with its weights in float16 (half the bytes; the assets stay under 20 MB) and
    print its digest. It loads into a float32 network; the figures in bench/README.md are the stored weights'."""
    path = ASSET_DIR / f"{name}.pt"
    model = copy.deepcopy(model).float().cpu()
    digest = save_checkpoint(path, model.half(), model_config(model, prediction_type="velocity"),
                             extra={**extra, "stored_dtype": "float16"})
    print(f"[{name}] saved {path} ({path.stat().st_size / 1e6:.2f} MB)\n[{name}] SHA-256 {digest}\n"
          f"[{name}] paste it into PRETRAINED[{name!r}] in dlcourse/pretrained.py", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", choices=list(RECIPES), help="checkpoints to train, in order")
    for name in parser.parse_args().names:
        train_one(name)


if __name__ == "__main__":
    main()
