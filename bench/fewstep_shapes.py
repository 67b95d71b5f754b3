"""Few-step generation on 16 px shapes: the shipped rectified flow, its reflow and its consistency model.

    .venv/bin/python bench/fewstep_shapes.py                 # n = 1000, ~4 min on 1 CPU thread
    .venv/bin/python bench/fewstep_shapes.py --n 500 --guidance 0

A script, not a test. It loads ``flow_shapes16_unet`` (1-RF), ``flow_shapes16_unet_2rf`` (2-RF, one reflow of
it), ``cm_shapes16_unet`` (consistency distillation of the 1-RF, w as an input) and ``flow_shapes16_unet_1step``
(the 2-RF's weights trained to land in one Euler step where the 1-RF's ODE lands: k = 1 distillation), all trained by
``scripts/train_fewstep.py``, and samples each from the same ``--n`` noises with the same labels (every shape
equally often) and no guidance: the flows with Euler's method at 1, 2, 4, 8 and 50 steps, the one-step model at 1,
the consistency model
at 1, 2 and 4 calls on even times (``multistep_times``) and at 4 on low re-noising times (1, 0.3, 0.1, 0.05) and
on (1, 0.7, 0.45, 0.2), chosen among a few for the earlier N = 50 model (notebook 08 samples the shipped
one at even times, its best).
Every row (clamped to [-1, 1]) is scored by ``dlcourse.metrics.quality_report`` against ``make_shapes(2 n, seed=1)`` (never trained
on): valid fraction, Frechet distance in the judge's features, and beside them the real-vs-real floor and
matched noise. Time per image: wall-clock of the sampler on one thread divided by n.

Then the straightness (``dlcourse.rectified_flow.straightness``, Liu et al.'s S, on 50-step Euler paths of the
first 200 noises) of both flows, and the issue's targets: the 2-RF's 1-step FD within 2x of its own 50-step FD
(beside it the 1-RF's ratio, and the one-step model's 1-step FD over the 2-RF's and over the 1-RF's 50 steps),
and the consistency model's 4-step FD within 25% of the teacher's 50-step FD.
With ``--guidance W`` (default 2) two rows more: the teacher with classifier-free guidance at W (two calls per
step) and the consistency model given w = W (one call per step).
"""

from __future__ import annotations

import argparse
import time

import torch

from dlcourse.checkpoints import build_model, load_checkpoint
from dlcourse.consistency import ConsistencyModel, load_consistency, multistep_sample, multistep_times
from dlcourse.data import make_shapes
from dlcourse.judge import load_judge
from dlcourse.metrics import quality_report
from dlcourse.pretrained import ASSET_DIR, PRETRAINED, load_pretrained
from dlcourse.rectified_flow import sample_flow, straightness, trajectories

EVAL_SEED = 1
LOW_TIMES = [1.0, 0.3, 0.1, 0.05]
TUNED_TIMES = [1.0, 0.7, 0.45, 0.2]        # best for the N = 50 model; the shipped N = 20 one does best at even times


def load(name: str):
    """``(model, info)`` from the registry; a file not registered yet is read by its sidecar digest (noted)."""
    if name in PRETRAINED:
        if name.startswith("cm_"):
            return load_consistency(name, device="cpu")
        return load_pretrained(name, device="cpu")
    print(f"note: {name} is not in PRETRAINED yet; checked against its .sha256 sidecar")
    checkpoint = load_checkpoint(ASSET_DIR / f"{name}.pt")
    model, info = build_model(checkpoint).eval(), dict(checkpoint["extra"])
    if "consistency" in info:
        model = ConsistencyModel(model, **info["consistency"]).eval()
    return model, info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="samples per row (and images in each real set)")
    p.add_argument("--guidance", type=float, default=2.0, help="w of the two guided rows; 0 for none")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    n = args.n
    flow, info = load("flow_shapes16_unet")
    flow2, _ = load("flow_shapes16_unet_2rf")
    cm, _ = load("cm_shapes16_unet")
    one_step, _ = load("flow_shapes16_unet_1step")
    ts, C, K = info["time_scale"], info["image_size"], info["num_classes"]
    judge = load_judge(C)
    reference = make_shapes(2 * n, size=C, seed=EVAL_SEED).images
    x_T = torch.randn(n, 3, C, C, generator=torch.Generator().manual_seed(10))
    labels = torch.arange(n) % K                                        # every shape equally often

    rows = {}

    def row(name, sample):
        start = time.perf_counter()
        with torch.no_grad():
            x = sample()
        ms = 1000 * (time.perf_counter() - start) / n
        r = quality_report(judge, x.clamp(-1, 1), reference, seed=EVAL_SEED)
        rows[name] = r
        print(f"{name:34s} {r.fd:8.2f} {r.valid_fraction:7.3f} {r.fd / r.fd_floor:9.2f} {ms:9.2f}", flush=True)

    print(f"n = {n} samples per row, labels in turn, no guidance unless stated; {torch.get_num_threads()} thread(s)")
    print(f"{'model, sampler':34s} {'FD':>8s} {'valid':>7s} {'FD/floor':>9s} {'ms/image':>9s}")
    for name, model in (("1-RF", flow), ("2-RF", flow2)):
        for steps in (1, 2, 4, 8, 50):
            row(f"{name} Euler {steps}", lambda: sample_flow(model, x_T, steps, cond=labels, time_scale=ts))
    row("1-step distilled Euler 1", lambda: sample_flow(one_step, x_T, 1, cond=labels, time_scale=ts))
    for steps in (1, 2, 4):
        row(f"CM {steps} (even times)", lambda: multistep_sample(cm, x_T, multistep_times(steps), cond=labels,
                                                               generator=torch.Generator().manual_seed(11)))
    row("CM 4 (times 1, .3, .1, .05)", lambda: multistep_sample(cm, x_T, LOW_TIMES, cond=labels,
                                                                generator=torch.Generator().manual_seed(11)))
    row("CM 4 (times 1, .7, .45, .2)", lambda: multistep_sample(cm, x_T, TUNED_TIMES, cond=labels,
                                                                generator=torch.Generator().manual_seed(11)))
    w = args.guidance
    if w:
        row(f"1-RF Euler 50, CFG w = {w:g}", lambda: sample_flow(flow, x_T, 50, cond=labels, guidance_scale=w,
                                                                 time_scale=ts))
        row(f"CM 4 (even), w = {w:g} as input", lambda: multistep_sample(
            cm, x_T, multistep_times(4), cond=labels, w=w, generator=torch.Generator().manual_seed(11)))
    r = next(iter(rows.values()))
    print(f"reference points (n = {n}): real-vs-real floor FD {r.fd_floor:.2f} (valid {r.real_valid_fraction:.3f}), "
          f"matched noise FD {r.noise_fd:.1f} (valid {r.noise_valid_fraction:.3f})")

    m = min(200, n)
    for name, model in (("1-RF", flow), ("2-RF", flow2)):
        with torch.no_grad():
            path = trajectories(model, x_T[:m], 50, cond=labels[:m], time_scale=ts)
        print(f"straightness S of {name} (50-step Euler paths, {m} noises): {straightness(path):.3f}")

    fd = {k: v.fd for k, v in rows.items()}
    ratio2 = fd["2-RF Euler 1"] / fd["2-RF Euler 50"]
    print(f"target, 2-RF 1-step FD within 2x of its 50-step FD: {ratio2:.2f}x "
          f"({'met' if ratio2 <= 2 else 'missed'}); 1-RF beside it: {fd['1-RF Euler 1'] / fd['1-RF Euler 50']:.2f}x")
    one = fd["1-step distilled Euler 1"]
    print(f"  after k = 1 distillation, 1 step over the 2-RF's 50 steps: {one / fd['2-RF Euler 50']:.2f}x "
          f"({'met' if one <= 2 * fd['2-RF Euler 50'] else 'missed'}); over the 1-RF's 50 steps (whose ODE it "
          f"learnt): {one / fd['1-RF Euler 50']:.2f}x")
    for key in ("CM 4 (even times)", "CM 4 (times 1, .3, .1, .05)", "CM 4 (times 1, .7, .45, .2)"):
        ratio = fd[key] / fd["1-RF Euler 50"]
        print(f"target, {key} within 25% of the teacher's 50-step FD: {ratio:.2f}x "
              f"({'met' if ratio <= 1.25 else 'missed'})")


if __name__ == "__main__":
    main()
